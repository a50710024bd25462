package devserver

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

type sessionState struct {
	id       string
	agent    *agentState
	owner    string
	key      []byte // AES session key; nil when sessions are unencrypted
	created  time.Time
	lastPoll time.Time
	polls    int // long polls in flight
	queue    []*queuedMessage
	notify   chan struct{} // closed and replaced when the queue or session changes
	ended    bool
}

type queuedMessage struct {
	id        int64
	msgType   string
	body      string
	iv        []byte // nil: plaintext body
	job       *jobState
	delivered int
}

// wake tells held polls to look again.
func (ss *sessionState) wake() {
	close(ss.notify)
	ss.notify = make(chan struct{})
}

// SessionInfo describes an open session.
type SessionInfo struct {
	ID        string
	AgentID   int
	PoolID    int
	OwnerName string
	Created   time.Time
	LastPoll  time.Time
	Queued    int // undeleted messages
	Polls     int // long polls being held now
}

// Sessions lists the open sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SessionInfo
	for _, ss := range s.sessions {
		out = append(out, SessionInfo{
			ID: ss.id, AgentID: ss.agent.id, PoolID: ss.agent.pool.id, OwnerName: ss.owner,
			Created: ss.created, LastPoll: ss.lastPoll, Queued: len(ss.queue), Polls: ss.polls,
		})
	}
	return out
}

// ExpireSession ends a session as the service does when it times one out:
// its polls answer TaskAgentSessionExpiredException and a job it had not
// started goes back to the pool.
func (s *Server) ExpireSession(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[strings.ToLower(id)]
	if ss == nil {
		return fmt.Errorf("expire session %s: no such session", id)
	}
	s.endSessionLocked(ss, time.Now(), "expired")
	return nil
}

// handleSessions serves POST …/sessions and DELETE …/sessions/{sessionId}
// (listener.md §4.1, §4.8).
func (s *Server) handleSessions(q *request) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.agentForListener(q)
	if err != nil {
		return err
	}
	sid, hasID := q.vals["sessionId"]
	switch q.r.Method {
	case http.MethodPost:
		if hasID {
			return methodNotAllowed(q.r)
		}
		return s.createSession(q, a)
	case http.MethodDelete:
		if !hasID {
			return methodNotAllowed(q.r)
		}
		ss := s.sessions[strings.ToLower(sid)]
		if ss == nil {
			return notFound(exSessionExpired, "The session %s has expired or does not exist.", sid)
		}
		if ss.agent != a {
			s.violation(nil, "agent %d tried to delete the session of agent %d", a.id, ss.agent.id)
			return accessDenied("Access denied. The session %s belongs to another agent.", sid)
		}
		s.endSessionLocked(ss, q.now, "deleted")
		q.noContent()
		return nil
	}
	return methodNotAllowed(q.r)
}

func (s *Server) createSession(q *request, a *agentState) *apiError {
	var in taskagent.TaskAgentSession
	if err := decodeJSON(q, &in); err != nil {
		return err
	}
	if in.Agent == nil || in.Agent.Id == nil {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: session.Agent")
	}
	if *in.Agent.Id != a.id {
		s.violation(nil, "agent %d opened a session for agent %d", a.id, *in.Agent.Id)
		return accessDenied("Access denied. Agent %d cannot open a session for agent %d.", a.id, *in.Agent.Id)
	}
	if in.OwnerName == nil || *in.OwnerName == "" {
		s.violation(nil, "agent %d opened a session without ownerName (the official agent sends the machine name)", a.id)
	}
	if ss := a.session; ss != nil {
		if ss.polls == 0 && q.now.Sub(ss.lastPoll) > s.opts.SessionIdle {
			s.endSessionLocked(ss, q.now, "expired")
		} else {
			return errf(http.StatusConflict, exSessionConflict, "A session for agent %s already exists.", a.name)
		}
	}
	ss := &sessionState{
		id: newGUID(), agent: a, created: q.now, lastPoll: q.now, notify: make(chan struct{}),
	}
	if in.OwnerName != nil {
		ss.owner = *in.OwnerName
	}
	if in.Agent.Version != nil && *in.Agent.Version != "" {
		a.version = *in.Agent.Version
	}
	if in.Agent.OsDescription != nil && *in.Agent.OsDescription != "" {
		a.osDescription = *in.Agent.OsDescription
	}
	if in.SystemCapabilities != nil {
		a.systemCaps = copyMap(*in.SystemCapabilities)
	}
	out := taskagent.TaskAgentSession{Agent: a.ref(), OwnerName: ptr(ss.owner)}
	if !s.opts.NoEncryption {
		ss.key = make([]byte, s.opts.SessionKeyBits/8)
		if _, err := rand.Read(ss.key); err != nil {
			return errf(http.StatusInternalServerError, exService, "The session key could not be generated.")
		}
		wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, a.pub, ss.key, nil)
		if err != nil {
			return errf(http.StatusInternalServerError, exService, "The session key could not be encrypted to the agent's key.")
		}
		out.EncryptionKey = &taskagent.TaskAgentSessionKey{Encrypted: ptr(true), Value: &wrapped}
	}
	a.session = ss
	a.statusChanged = q.now.UTC()
	s.sessions[ss.id] = ss
	id, _ := uuid.Parse(ss.id)
	out.SessionId = &id
	out.Agent = a.ref()
	s.emit(Event{Kind: EventSessionChange, AgentID: a.id})
	s.assignLocked(q.now)
	q.reply(http.StatusCreated, out)
	return nil
}

// endSessionLocked closes a session: polls see it expired, the agent goes
// offline, and a job assigned through it but never renewed returns to the
// pool queue (so a --once agent that leaves a second job alone does not
// strand it).
func (s *Server) endSessionLocked(ss *sessionState, now time.Time, why string) {
	if ss.ended {
		return
	}
	ss.ended = true
	ss.wake()
	delete(s.sessions, ss.id)
	a := ss.agent
	if a.session == ss {
		a.session = nil
		a.statusChanged = now.UTC()
	}
	if j := a.job; j != nil && j.state == JobAssigned && j.session == ss {
		s.requeueLocked(j)
	}
	ss.queue = nil
	s.log.Debug("session ended", "agent", a.name, "reason", why)
	s.emit(Event{Kind: EventSessionChange, AgentID: a.id})
	s.assignLocked(now)
}

// sessionForPoll finds the caller's session named by ?sessionId=.
func (s *Server) sessionForPoll(q *request, a *agentState) (*sessionState, *apiError) {
	sid := queryValue(q.r, "sessionId")
	if sid == "" {
		return nil, errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: sessionId")
	}
	if _, err := uuid.Parse(sid); err != nil {
		return nil, badRequest("The value '%s' is not valid for sessionId.", sid)
	}
	ss := s.sessions[strings.ToLower(sid)]
	if ss == nil {
		return nil, notFound(exSessionExpired, "The session %s has expired or does not exist.", sid)
	}
	if ss.agent != a {
		s.violation(nil, "agent %d used the session of agent %d", a.id, ss.agent.id)
		return nil, accessDenied("Access denied. The session %s belongs to another agent.", sid)
	}
	return ss, nil
}

// handleMessages serves the long poll GET …/messages?sessionId=&lastMessageId=
// and DELETE …/messages/{messageId}?sessionId= (listener.md §4.3–§4.6).
func (s *Server) handleMessages(q *request) *apiError {
	s.mu.Lock()
	a, err := s.agentForListener(q)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	ss, err := s.sessionForPoll(q, a)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	mid, hasID := q.vals["messageId"]
	switch {
	case q.r.Method == http.MethodDelete && hasID:
		defer s.mu.Unlock()
		id, perr := strconv.ParseInt(mid, 10, 64)
		if perr != nil {
			return badRequest("The message id '%s' is not a valid integer.", mid)
		}
		for i, m := range ss.queue {
			if m.id == id {
				ss.queue = append(ss.queue[:i], ss.queue[i+1:]...)
				break
			}
		}
		q.noContent()
		return nil
	case q.r.Method == http.MethodGet && !hasID:
		last := int64(-1)
		if v := queryValue(q.r, "lastMessageId"); v != "" {
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil {
				s.mu.Unlock()
				return badRequest("The value '%s' is not valid for lastMessageId.", v)
			}
			last = n
		}
		return s.poll(q, ss, last)
	}
	s.mu.Unlock()
	return methodNotAllowed(q.r)
}

// poll holds the request until a message is queued, the hold time passes,
// the session ends or the server closes. s.mu is held on entry and released.
//
// lastMessageId semantics (listener.md §11 item 5 is UNCONFIRMED): a message
// stays queued until DELETE; a poll returns the oldest queued message with an
// id greater than lastMessageId, or the oldest queued message when it is
// absent. So the main loop never gets back the message it last received
// (even if its DELETE failed), while the keep-alive poll, which sends no
// lastMessageId, may see a message again; it discards it and the main loop
// still receives it.
func (s *Server) poll(q *request, ss *sessionState, last int64) *apiError {
	ss.polls++
	ss.lastPoll = q.now
	hold := time.NewTimer(s.opts.PollHold)
	defer hold.Stop()
	done := func() {
		ss.polls--
		ss.lastPoll = time.Now()
	}
	for {
		if ss.ended {
			done()
			s.mu.Unlock()
			return notFound(exSessionExpired, "The session %s has expired or does not exist.", ss.id)
		}
		for _, m := range ss.queue {
			if m.id <= last {
				continue
			}
			m.delivered++
			if j := m.job; j != nil && m.delivered == 1 && j.receiveTime.IsZero() {
				j.receiveTime = time.Now().UTC()
			}
			out := taskagent.TaskAgentMessage{
				MessageId: ptr(uint64(m.id)), MessageType: ptr(m.msgType), Body: ptr(m.body),
			}
			if m.iv != nil {
				iv := m.iv
				out.Iv = &iv
			}
			done()
			s.mu.Unlock()
			q.reply(http.StatusOK, out)
			return nil
		}
		ch := ss.notify
		s.mu.Unlock()
		select {
		case <-ch:
		case <-hold.C:
			s.mu.Lock()
			done()
			s.mu.Unlock()
			q.w.WriteHeader(http.StatusAccepted)
			return nil
		case <-q.ctx.Done():
			s.mu.Lock()
			done()
			s.mu.Unlock()
			return nil
		case <-s.closing:
			s.mu.Lock()
			done()
			s.mu.Unlock()
			q.w.WriteHeader(http.StatusAccepted)
			return nil
		}
		s.mu.Lock()
	}
}

// InjectMode selects how InjectMessage encodes a body.
type InjectMode int

const (
	InjectEncrypted InjectMode = iota // as the service sends it
	InjectPlaintext                   // no iv: plain JSON even on an encrypted session
	InjectGarbage                     // an iv and a body no key can decrypt
)

// InjectMessage queues a message of any type for an agent's open session.
func (s *Server) InjectMessage(agentID int, messageType string, body []byte, mode InjectMode) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agentsByID[agentID]
	if a == nil {
		return 0, fmt.Errorf("inject %s message: no agent %d", messageType, agentID)
	}
	if a.session == nil {
		return 0, fmt.Errorf("inject %s message: agent %s has no session", messageType, a.name)
	}
	m, err := s.enqueueLocked(a.session, messageType, body, mode, nil)
	if err != nil {
		return 0, fmt.Errorf("inject %s message for agent %s: %w", messageType, a.name, err)
	}
	return m.id, nil
}

// enqueueLocked encrypts (per the mode and session) and queues a message.
func (s *Server) enqueueLocked(ss *sessionState, msgType string, plain []byte, mode InjectMode, job *jobState) (*queuedMessage, error) {
	m := &queuedMessage{id: s.nextMessageID, msgType: msgType, job: job}
	switch {
	case mode == InjectGarbage:
		m.iv = make([]byte, aes.BlockSize)
		junk := make([]byte, 3*aes.BlockSize-1) // not a whole number of blocks
		rand.Read(m.iv)
		rand.Read(junk)
		m.body = base64.StdEncoding.EncodeToString(junk)
	case mode == InjectPlaintext || ss.key == nil:
		m.body = string(plain)
	default:
		iv, ct, err := encryptCBC(ss.key, plain)
		if err != nil {
			return nil, err
		}
		m.iv, m.body = iv, base64.StdEncoding.EncodeToString(ct)
	}
	s.nextMessageID++
	ss.queue = append(ss.queue, m)
	ss.wake()
	return m, nil
}

// encryptCBC encrypts with AES-CBC and PKCS#7 padding under a fresh random iv.
func encryptCBC(key, plain []byte) (iv, ct []byte, err error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	copy(buf[len(plain):], bytes.Repeat([]byte{byte(pad)}, pad))
	iv = make([]byte, aes.BlockSize)
	if _, err := rand.Read(iv); err != nil {
		return nil, nil, err
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	return iv, buf, nil
}

package listener

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/pause"
	"github.com/goagent-dev/goagent/internal/wire"
)

// ErrIdle is returned by Run when --once waited --idle-timeout without a job.
var ErrIdle = errors.New("no job arrived within the idle timeout")

// session is an open message session. The keep-alive poll reads it while
// the main loop may replace it after an expiry.
type session struct {
	mu     sync.Mutex
	id     string
	aesKey []byte
}

func (s *session) get() (string, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id, s.aesKey
}

func (s *session) set(id string, key []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.aesKey = id, key
}

// Run registers (or reuses the registration), opens a session and serves
// jobs until ctx ends, or after one job with Once. With Placeholder it
// registers and returns. With Once it removes the agent before returning.
func (a *Agent) Run(ctx context.Context) (err error) {
	s, err := a.Register(ctx)
	if err != nil {
		return err
	}
	if a.cfg.Placeholder {
		a.log.Info("placeholder registered; no session is opened and this agent stays registered until `goagent remove`", "agent", s.AgentName, "agentId", s.AgentID, "pool", s.PoolName)
		return nil
	}
	if a.cfg.Once {
		// Leave nothing behind, whatever happens from here on.
		defer func() {
			if errors.Is(err, identity.ErrAgentCredentialRejected) {
				// The registration is no longer ours (deleted, or replaced by
				// another agent of the same name): deleting the agent now
				// would remove the other machine's registration.
				a.log.Warn("not removing the agent from the pool: it no longer accepts this agent's key", "agent", s.AgentName, "agentId", s.AgentID)
				if rerr := a.removeState(); rerr != nil {
					a.log.Error("could not remove the local state after --once", "error", rerr)
				}
				return
			}
			if rerr := a.unregister(context.WithoutCancel(ctx), s); rerr != nil {
				a.log.Error("could not remove the agent after --once", "error", rerr)
				if err == nil {
					err = rerr
				}
			}
		}()
	}
	key, ts, err := a.agentCredential()
	if err != nil {
		return err
	}
	c, err := a.client(s.ServerURL, ts)
	if err != nil {
		return err
	}
	sess, err := a.createSession(ctx, c, s, key)
	if err != nil {
		return err
	}
	a.log.Info("listening for jobs", "agent", s.AgentName, "pool", s.PoolName, "once", a.cfg.Once)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		id, _ := sess.get()
		if derr := c.DeleteSession(dctx, s.PoolID, id); derr != nil {
			a.log.Warn("could not delete the session", "error", derr)
		} else {
			a.log.Info("session deleted")
		}
	}()
	return a.loop(ctx, c, s, key, sess)
}

// unregister deletes the agent with the registration credential and
// removes the state (--once).
func (a *Agent) unregister(ctx context.Context, s Settings) error {
	c, err := a.registrationClient()
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := c.DeleteAgent(dctx, s.PoolID, s.AgentID); err != nil && !errors.Is(err, azdo.ErrNotFound) && !errors.Is(err, azdo.ErrAgentNotFound) {
		return a.explain(err, fmt.Sprintf("remove agent %q (id %d) from pool %q", s.AgentName, s.AgentID, s.PoolName))
	}
	a.log.Info("agent removed", "agent", s.AgentName, "agentId", s.AgentID)
	return a.removeState()
}

// createSession opens a session with the official retry policy
// (listener.md §4.2): conflicts retried up to 4 minutes, other transient
// errors every 30 s, fatal ones returned.
func (a *Agent) createSession(ctx context.Context, c *azdo.Client, s Settings, key *rsa.PrivateKey) (*session, error) {
	owner, _ := os.Hostname()
	if owner == "" {
		owner = "AGENT"
	}
	caps := SystemCapabilities(a.cfg.Env, a.cfg.UserCapabilities, s.AgentName, a.cfg.AgentVersion, a.cfg.GoagentVersion)
	id, name, ver, osd := s.AgentID, s.AgentName, a.cfg.AgentVersion, osDescription()
	req := &taskagent.TaskAgentSession{
		OwnerName:          &owner,
		Agent:              &taskagent.TaskAgentReference{Id: &id, Name: &name, Version: &ver, OsDescription: &osd},
		SystemCapabilities: &caps,
	}
	var conflictWait time.Duration
	for attempt := 1; ; attempt++ {
		out, err := c.CreateSession(ctx, s.PoolID, req)
		if err == nil {
			if out.SessionId == nil {
				return nil, errors.New("create session: the server returned no sessionId")
			}
			k, err := sessionKey(key, out.EncryptionKey)
			if err != nil {
				return nil, fmt.Errorf("create session: %w", err)
			}
			a.log.Info("session created", "sessionId", out.SessionId.String(), "encrypted", k != nil)
			return &session{id: out.SessionId.String(), aesKey: k}, nil
		}
		switch {
		case errors.Is(err, azdo.ErrSessionConflict) || isConflict(err):
			if conflictWait >= a.cfg.SessionConflict {
				return nil, fmt.Errorf("create session for agent %q: %w\n  cause: another process holds a session for this agent (a second goagent with the same name, or a crashed one whose session has not expired yet).\n  fix: give each agent its own --agent name; a stale session expires on the server after a few minutes", s.AgentName, err)
			}
			a.log.Warn("another session exists for this agent; retrying", "wait", a.cfg.SessionRetry, "error", err)
			conflictWait += a.cfg.SessionRetry
		case errors.Is(err, identity.ErrAgentCredentialRejected):
			a.forgetRegistration()
			return nil, fmt.Errorf("create session for agent %q in pool %q: %w\n  %s", s.AgentName, s.PoolName, err, rejectedAdvice)
		case errors.Is(err, azdo.ErrAgentNotFound), errors.Is(err, azdo.ErrPoolNotFound), errors.Is(err, azdo.ErrAccessDenied), errors.Is(err, azdo.ErrUnauthorized), errors.Is(err, azdo.ErrTokenExpired):
			if errors.Is(err, azdo.ErrAgentNotFound) {
				// The registration is gone: forget it so the next start registers again.
				a.forgetRegistration()
			}
			return nil, fmt.Errorf("create session for agent %q in pool %q: %w", s.AgentName, s.PoolName, err)
		default:
			if !azdo.IsTransient(err) && !isTimeout(err) {
				return nil, fmt.Errorf("create session for agent %q in pool %q: %w", s.AgentName, s.PoolName, err)
			}
			a.log.Warn("create session failed; retrying", "attempt", attempt, "wait", a.cfg.SessionRetry, "error", err)
		}
		if err := pause.Sleep(ctx, a.cfg.SessionRetry); err != nil {
			return nil, err
		}
	}
}

// rejectedAdvice explains identity.ErrAgentCredentialRejected.
const rejectedAdvice = "cause: the service no longer accepts this agent's key: the agent was deleted from the pool, or another agent registered with the same name and replaced it.\n  fix: give every agent its own --agent name; the next start registers this one again"

// forgetRegistration drops the registration from the state directory so
// that the next start registers again.
func (a *Agent) forgetRegistration() {
	_ = os.Remove(a.cfg.StateDir + "/" + settingsFile)
}

func isConflict(err error) bool {
	var e *azdo.Error
	return errors.As(err, &e) && e.StatusCode == 409
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded)
}

// loop long-polls and dispatches until ctx ends (or one job with Once).
func (a *Agent) loop(ctx context.Context, c *azdo.Client, s Settings, key *rsa.PrivateKey, sess *session) error {
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()

	// Keep-alive poll (MessageListener.KeepAlive): every 30 s, without
	// lastMessageId, result discarded; keeps the agent online.
	kaDone := make(chan struct{})
	sessID := func() string { id, _ := sess.get(); return id }
	go func() {
		defer close(kaDone)
		t := time.NewTicker(a.cfg.KeepAlivePeriod)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
				if _, err := c.GetMessage(pollCtx, s.PoolID, sessID(), -1, a.cfg.PollTimeout); err != nil && pollCtx.Err() == nil {
					a.log.Debug("keep-alive poll failed", "error", err)
				}
			}
		}
	}()
	defer func() { stopPolling(); <-kaDone }()

	var idle <-chan time.Time
	if a.cfg.Once && a.cfg.IdleTimeout > 0 {
		t := time.NewTimer(a.cfg.IdleTimeout)
		defer t.Stop()
		idle = t.C
	}
	idleCtx, idleCancel := context.WithCancelCause(pollCtx)
	defer idleCancel(nil)
	if idle != nil {
		go func() {
			select {
			case <-idle:
				if !a.busy() && !a.tookJob() {
					idleCancel(ErrIdle)
				}
			case <-idleCtx.Done():
			}
		}()
	}

	lastID := int64(-1)
	errCount := 0
	fastEmpty := 0
	for {
		pctx, done := idleCtx, func() {}
		if a.cfg.Once && a.tookJob() {
			// One job only: keep polling while it runs (a cancellation may
			// come), never take another, and stop when it has ended.
			jobDone := a.jobDone()
			select {
			case <-jobDone:
				return nil
			default:
			}
			var cancel context.CancelFunc
			pctx, cancel = context.WithCancel(idleCtx)
			go func() {
				select {
				case <-jobDone:
					cancel()
				case <-pctx.Done():
				}
			}()
			done = cancel
		}
		start := time.Now()
		m, err := c.GetMessage(pctx, s.PoolID, sessID(), lastID, a.cfg.PollTimeout)
		done()
		if err != nil {
			if cause := context.Cause(idleCtx); errors.Is(cause, ErrIdle) {
				a.log.Info("no job arrived within the idle timeout; leaving", "idleTimeout", a.cfg.IdleTimeout)
				return nil
			}
			if ctx.Err() != nil {
				a.waitJob(context.WithoutCancel(ctx))
				return nil
			}
			if a.cfg.Once && a.tookJob() && !a.busy() {
				return nil // the poll was cut short because the job ended
			}
			if errors.Is(err, azdo.ErrSessionExpired) {
				a.log.Warn("the session expired; creating a new one", "error", err)
				ns, cerr := a.createSession(ctx, c, s, key)
				if cerr != nil {
					return cerr
				}
				sess.set(ns.get())
				continue
			}
			if errors.Is(err, azdo.ErrTokenExpired) {
				a.log.Warn("the agent's access token was revoked or the agent deleted; stopping", "error", err)
				a.waitJob(context.WithoutCancel(ctx))
				return nil
			}
			if errors.Is(err, identity.ErrAgentCredentialRejected) {
				// The official listener stops on VssUnauthorizedException; a
				// rejected key never recovers by polling again.
				a.forgetRegistration()
				a.waitJob(context.WithoutCancel(ctx))
				return fmt.Errorf("poll for messages: %w\n  %s", err, rejectedAdvice)
			}
			if errors.Is(err, azdo.ErrAgentNotFound) || errors.Is(err, azdo.ErrPoolNotFound) || errors.Is(err, azdo.ErrAccessDenied) || errors.Is(err, azdo.ErrUnauthorized) {
				a.waitJob(context.WithoutCancel(ctx))
				return fmt.Errorf("poll for messages: %w", err)
			}
			errCount++
			d := a.errorBackoff(errCount)
			a.log.Warn("poll for messages failed; retrying", "attempt", errCount, "wait", d.Round(time.Millisecond), "error", err)
			_ = pause.Sleep(idleCtx, d)
			continue
		}
		errCount = 0
		if m == nil {
			// An empty poll normally took the server's whole hold (~50 s);
			// poll again at once. One that came back suspiciously fast
			// (a proxy cutting long polls, a misbehaving server) backs off.
			if time.Since(start) < time.Second {
				fastEmpty++
				d := azdo.RandomBetween(time.Duration(min(fastEmpty, 15))*500*time.Millisecond, time.Duration(min(fastEmpty, 15))*time.Second)
				_ = pause.Sleep(idleCtx, d)
			} else {
				fastEmpty = 0
			}
			continue
		}
		fastEmpty = 0
		if m.MessageId != nil {
			lastID = int64(*m.MessageId)
		}
		a.handle(ctx, c, s, sess, m)
	}
}

func (a *Agent) errorBackoff(n int) time.Duration {
	// The official agent waits 15–30 s after each of the first 5 errors and
	// 30–60 s after that. goagent starts lower (2 s doubling) so a short
	// outage does not delay a queued job by half a minute, and reaches the
	// official ranges after a few failures.
	base := a.cfg.ErrorBackoffBase << min(n-1, 5)
	switch {
	case n > 5:
		return azdo.RandomBetween(max(base, 30*time.Second)/2, max(base, 30*time.Second))
	case base >= 15*time.Second:
		return azdo.RandomBetween(15*time.Second, 30*time.Second)
	}
	return azdo.RandomBetween(base/2, base)
}

// handle processes one message and acknowledges it.
func (a *Agent) handle(ctx context.Context, c *azdo.Client, s Settings, sess *session, m *taskagent.TaskAgentMessage) {
	typ := ""
	if m.MessageType != nil {
		typ = *m.MessageType
	}
	var id uint64
	if m.MessageId != nil {
		id = *m.MessageId
	}
	ack := true
	defer func() {
		if !ack {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		sid, _ := sess.get()
		if err := c.DeleteMessage(dctx, s.PoolID, sid, id); err != nil {
			a.log.Warn("could not acknowledge a message", "messageId", id, "type", typ, "error", err)
		}
	}()
	_, key := sess.get()
	body, err := decryptBody(key, m)
	if err != nil {
		a.log.Error("could not decrypt a message; acknowledging and ignoring it", "messageId", id, "type", typ, "error", err)
		return
	}
	switch {
	case strings.EqualFold(typ, wire.MessageJobRequest):
		var job wire.JobRequestMessage
		if err := json.Unmarshal(body, &job); err != nil {
			a.log.Error("could not read a job request message; acknowledging and ignoring it", "messageId", id, "error", err)
			return
		}
		if a.cfg.Once && a.tookJob() {
			// --once took its job: leave this one in the queue for others.
			a.log.Info("--once: leaving a second job request to other agents", "requestId", job.RequestID)
			ack = false
			return
		}
		a.ensureDispatchFinished(ctx)
		a.dispatch(ctx, s, &job)
	case strings.EqualFold(typ, wire.MessageJobCancellation):
		var cm wire.JobCancelMessage
		if err := json.Unmarshal(body, &cm); err != nil {
			a.log.Error("could not read a cancellation message", "messageId", id, "error", err)
			return
		}
		if !a.cancelJob(cm.JobID, parseTimeSpan(cm.Timeout)) {
			a.log.Info("cancellation for a job that is not running", "jobId", cm.JobID)
		}
	case strings.EqualFold(typ, wire.MessageAgentRefresh):
		var rm wire.AgentRefreshMessage
		_ = json.Unmarshal(body, &rm)
		a.log.Warn("the server asked the agent to update itself; goagent does not self-update (the image is immutable) — ignoring. If jobs demand a newer Agent.Version, set --agent-version", "targetVersion", rm.TargetVersion, "reportedVersion", a.cfg.AgentVersion)
	case strings.EqualFold(typ, wire.MessageJobMetadata):
		var mm wire.JobMetadataMessage
		if err := json.Unmarshal(body, &mm); err == nil && mm.PostLinesFrequencyMillis > 0 {
			a.setFeedInterval(mm.JobID, time.Duration(mm.PostLinesFrequencyMillis)*time.Millisecond)
		}
	default:
		a.log.Warn("unsupported message type; acknowledging and ignoring it", "messageId", id, "type", typ)
	}
}

// parseTimeSpan reads a .NET TimeSpan ("00:05:00", "1.02:03:04"); zero if
// it cannot.
func parseTimeSpan(s string) time.Duration {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	days := 0
	if i := strings.IndexByte(s, '.'); i >= 0 && i < strings.IndexByte(s, ':') {
		fmt.Sscan(s[:i], &days)
		s = s[i+1:]
	}
	var h, m int
	var sec float64
	if n, _ := fmt.Sscanf(s, "%d:%d:%g", &h, &m, &sec); n < 2 {
		return 0
	}
	return time.Duration(days)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec*float64(time.Second))
}

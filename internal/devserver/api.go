package devserver

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// newPAT makes a PAT in the service's classic shape: 52 characters of
// lower-case base32.
func newPAT() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := make([]byte, 52)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// AddUser adds an identity. A user needs a PAT or an Entra object id.
func (s *Server) AddUser(u User) error {
	if u.PAT == "" && u.ObjectID == "" {
		return fmt.Errorf("add user %q: give it a PAT or an Entra object id", u.Name)
	}
	if u.ObjectID != "" {
		if _, err := uuid.Parse(u.ObjectID); err != nil {
			return fmt.Errorf("add user %q: object id %q is not a GUID", u.Name, u.ObjectID)
		}
	}
	if u.Name == "" {
		u.Name = "user " + u.ObjectID
	}
	if u.TenantID == "" {
		u.TenantID = s.opts.TenantID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.users {
		if u.PAT != "" && x.PAT == u.PAT {
			return fmt.Errorf("add user %q: the PAT is already in use", u.Name)
		}
		if u.ObjectID != "" && strings.EqualFold(x.ObjectID, u.ObjectID) && strings.EqualFold(x.TenantID, u.TenantID) {
			return fmt.Errorf("add user %q: object id %s is already in use", u.Name, u.ObjectID)
		}
	}
	s.users = append(s.users, &userState{User: u, identityID: newGUID()})
	return nil
}

// TenantID is the organization's Entra tenant.
func (s *Server) TenantID() string { return s.opts.TenantID }

// TrustEntraKey makes the emulator accept Entra tokens signed with pub (kid
// may be empty to match any token), for tests that run their own fake Entra.
func (s *Server) TrustEntraKey(kid string, pub *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entraKeys = append(s.entraKeys, entraKey{kid: kid, pub: pub})
}

// Agents lists the agents of a pool ("" for every pool).
func (s *Server) Agents(pool string) []taskagent.TaskAgent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []taskagent.TaskAgent
	for _, a := range s.sortedAgents(nil) {
		if pool == "" || strings.EqualFold(a.pool.name, pool) {
			out = append(out, s.agentJSON(a, true))
		}
	}
	return out
}

// RevokeAgent revokes an agent's OAuth client: its tokens answer
// TaskAgentAccessTokenExpiredException and the token endpoint invalid_client.
func (s *Server) RevokeAgent(agentID int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agentsByID[agentID]
	if a == nil {
		return fmt.Errorf("revoke agent %d: no such agent", agentID)
	}
	a.revoked = true
	return nil
}

// ExpireAgentTokens makes every agent OAuth token issued so far expire now,
// so agents must fetch new ones.
func (s *Server) ExpireAgentTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, it := range s.tokens {
		if it.kind == kindAgent && it.expires.After(now) {
			it.expires = now
		}
	}
}

func (s *Server) attach(p *planState, a *Attachment) {
	for i, x := range p.atts {
		if x.TimelineID == a.TimelineID && x.RecordID == a.RecordID && x.Type == a.Type && x.Name == a.Name {
			p.atts[i] = a
			return
		}
	}
	p.atts = append(p.atts, a)
}

func (s *Server) attachments(p *planState) []*Attachment { return p.atts }

// Timeline returns the job's records: its Job record first, then the
// records below it in creation order.
func (h *Job) Timeline() []taskagent.TimelineRecord {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	tl := h.j.plan.timelines[h.j.msg.Timeline.ID]
	var out []taskagent.TimelineRecord
	for _, r := range tl.subtree(h.j.id) {
		out = append(out, r.decode())
	}
	return out
}

// DetailTimeline returns the detail timeline a record of the job's timeline
// names in its details (a step's ##vso[task.logdetail] records): the
// timeline's id and its records in creation order. ok is false when the
// record names none; records is nil when the agent never created it.
func (h *Job) DetailTimeline(recordID string) (timelineID string, records []taskagent.TimelineRecord, ok bool) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	u, err := uuid.Parse(recordID)
	if err != nil {
		return "", nil, false
	}
	main := h.j.plan.timelines[h.j.msg.Timeline.ID]
	r := main.records[u.String()]
	if r == nil {
		return "", nil, false
	}
	var ref struct {
		ID string `json:"id"`
	}
	if v, has := r.fields["details"]; !has || json.Unmarshal(v, &ref) != nil || ref.ID == "" {
		return "", nil, false
	}
	d, err := uuid.Parse(ref.ID)
	if err != nil {
		return ref.ID, nil, true
	}
	tl := h.j.plan.timelines[d.String()]
	if tl == nil {
		return d.String(), nil, true
	}
	for _, id := range tl.order {
		records = append(records, tl.records[id].decode())
	}
	return d.String(), records, true
}

// RecordJSON returns a timeline record exactly as stored (merged fields).
func (h *Job) RecordJSON(recordID string) (map[string]json.RawMessage, bool) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	u, err := uuid.Parse(recordID)
	if err != nil {
		return nil, false
	}
	for _, tl := range h.j.plan.timelines {
		if r := tl.records[u.String()]; r != nil {
			out := make(map[string]json.RawMessage, len(r.fields))
			for k, v := range r.fields {
				out[k] = v
			}
			return out, true
		}
	}
	return nil, false
}

// LogLines returns the lines of the log a record links (through its log
// field), or nil when it links none.
func (h *Job) LogLines(recordID string) []string {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	u, err := uuid.Parse(recordID)
	if err != nil {
		return nil
	}
	for _, tl := range h.j.plan.timelines {
		r := tl.records[u.String()]
		if r == nil {
			continue
		}
		var ref struct {
			ID int `json:"id"`
		}
		if v, ok := r.fields["log"]; !ok || json.Unmarshal(v, &ref) != nil {
			return nil
		}
		if l := h.j.plan.logs[ref.ID]; l != nil {
			return splitLines(l.content.Bytes())
		}
	}
	return nil
}

// Logs returns every log of the job's plan by id, as text.
func (h *Job) Logs() map[int]string {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	out := map[int]string{}
	for id, l := range h.j.plan.logs {
		out[id] = l.content.String()
	}
	return out
}

// Feed returns the live console lines posted for a step, in line order.
func (h *Job) Feed(stepID string) []string {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	u, err := uuid.Parse(stepID)
	if err != nil {
		return nil
	}
	if f := h.j.plan.feeds[u.String()]; f != nil {
		return f.ordered()
	}
	return nil
}

// Attachments returns copies of the attachments of the job's plan.
func (h *Job) Attachments() []Attachment {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	var out []Attachment
	for _, a := range h.j.plan.atts {
		c := *a
		c.Data = append([]byte(nil), a.Data...)
		out = append(out, c)
	}
	return out
}

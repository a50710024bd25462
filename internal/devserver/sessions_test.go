package devserver_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

func TestSessionLifecycle(t *testing.T) {
	for _, bits := range []int{256, 128} {
		t.Run(strconv.Itoa(bits), func(t *testing.T) {
			s := startServer(t, devserver.Options{SessionKeyBits: bits, PollHold: 20 * time.Millisecond})
			c := httpClient(t, s)
			a := newAgent(t, s, c, "sess")
			sess := a.openSession()
			if len(a.aesKey) != bits/8 || *sess.EncryptionKey.Encrypted != true || *sess.Agent.Id != a.reg.ID {
				t.Fatalf("session: key %d bytes, %+v", len(a.aesKey), sess)
			}
			if got := s.Agents("Default"); len(got) != 1 || *got[0].Status != "online" {
				t.Fatalf("agent with a session: %+v", got)
			}
			r := a.call("POST", "sessions", "5.1-preview.1", map[string]any{"ownerName": "x", "agent": map[string]any{"id": a.reg.ID}})
			wantError(t, r, 409, "TaskAgentSessionConflictException")
			wantError(t, a.call("POST", "sessions", "5.1-preview.1", map[string]any{"ownerName": "x"}), 400, "ArgumentNullException")
			if r := a.call("DELETE", "sessions/"+a.session, "5.1-preview.1", nil); r.status != http.StatusNoContent {
				t.Fatalf("delete session: %s", r)
			}
			if got := s.Agents("Default"); *got[0].Status != "offline" {
				t.Fatal("agent still online without a session")
			}
			wantError(t, a.poll(-1), 404, "TaskAgentSessionExpiredException")
			wantError(t, a.call("DELETE", "sessions/"+a.session, "5.1-preview.1", nil), 404, "TaskAgentSessionExpiredException")
			a.openSession()
		})
	}
}

func TestSessionExpiry(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond, SessionIdle: 100 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "idle")
	a.openSession()
	if err := s.ExpireSession(a.session); err != nil {
		t.Fatal(err)
	}
	wantError(t, a.poll(-1), 404, "TaskAgentSessionExpiredException")
	if err := s.ExpireSession(a.session); err == nil {
		t.Fatal("expiring an unknown session succeeded")
	}
	// An idle session (no polls) lapses on its own, so a crashed agent's
	// successor can open a new one.
	a.openSession()
	eventually(t, "the idle session to lapse", func() bool { return len(s.Sessions()) == 0 })
	wantError(t, a.poll(-1), 404, "TaskAgentSessionExpiredException")
	a.openSession()
}

func TestMessages(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 30 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "poller")
	a.openSession()

	if r := a.poll(-1); r.status != http.StatusAccepted || len(r.body) != 0 {
		t.Fatalf("empty poll: %s", r)
	}
	wantError(t, a.call("GET", "messages", "6.0-preview.1", nil), 400, "ArgumentNullException")
	wantError(t, a.call("GET", "messages?sessionId=nope", "6.0-preview.1", nil), 400, "ArgumentException")

	id1, err := s.InjectMessage(a.reg.ID, wire.MessageAgentRefresh, []byte(`{"agentId":1,"targetVersion":"4.276.0"}`), devserver.InjectEncrypted)
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := s.InjectMessage(a.reg.ID, wire.MessageJobMetadata, []byte(`{"jobId":"x","postLinesFrequencyMillis":500}`), devserver.InjectEncrypted)
	m1 := a.next(-1)
	if m1.ID != id1 || m1.Type != wire.MessageAgentRefresh || string(m1.Body) != `{"agentId":1,"targetVersion":"4.276.0"}` {
		t.Fatalf("first message: %+v %s", m1, m1.Body)
	}
	// Not deleted: a poll without lastMessageId (the keep-alive) sees it again,
	// one with lastMessageId moves on.
	if again := a.next(-1); again.ID != id1 {
		t.Fatalf("undeleted message not redelivered: got %d", again.ID)
	}
	m2 := a.next(m1.ID)
	if m2.ID != id2 || bytes.Equal(m1.IV, m2.IV) {
		t.Fatalf("second message %d (want %d); ivs %x %x", m2.ID, id2, m1.IV, m2.IV)
	}
	a.ack(m1.ID)
	a.ack(m2.ID)
	if r := a.poll(-1); r.status != http.StatusAccepted {
		t.Fatalf("poll after acknowledging everything: %s", r)
	}

	// Plaintext and garbage bodies.
	if _, err := s.InjectMessage(a.reg.ID, "Custom", []byte(`{"plain":true}`), devserver.InjectPlaintext); err != nil {
		t.Fatal(err)
	}
	p := a.next(-1)
	if p.IV != nil || string(p.Body) != `{"plain":true}` {
		t.Fatalf("plaintext message: iv %x body %s", p.IV, p.Body)
	}
	a.ack(p.ID)
	if _, err := s.InjectMessage(a.reg.ID, "Custom", []byte(`{}`), devserver.InjectGarbage); err != nil {
		t.Fatal(err)
	}
	r := a.poll(-1)
	var raw taskagent.TaskAgentMessage
	decode(t, r, &raw)
	if raw.Iv == nil {
		t.Fatal("garbage message has no iv")
	}
	if _, err := aesCBCDecrypt(a.aesKey, *raw.Iv, *raw.Body); err == nil {
		t.Fatal("the garbage body decrypted")
	}
	if _, err := s.InjectMessage(99, "x", nil, devserver.InjectEncrypted); err == nil {
		t.Fatal("inject for an unknown agent succeeded")
	}
}

func TestLongPollIsWokenByAJob(t *testing.T) {
	// A long hold: the poll must return the job, not the hold's 202.
	s := startServer(t, devserver.Options{PollHold: time.Minute})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "waiter")
	a.openSession()
	got := make(chan answer, 1)
	go func() { got <- a.poll(-1) }()
	eventually(t, "the poll to be held", func() bool {
		ss := s.Sessions()
		return len(ss) == 1 && ss[0].Polls == 1
	})
	job, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var r answer
	select {
	case r = <-got:
	case <-time.After(hangGuard):
		t.Fatal("the held poll was not woken")
	}
	if r.status != 200 {
		t.Fatalf("woken poll: %s", r)
	}
	var m taskagent.TaskAgentMessage
	decode(t, r, &m)
	pt, err := aesCBCDecrypt(a.aesKey, *m.Iv, *m.Body)
	if err != nil {
		t.Fatal(err)
	}
	var jm wire.JobRequestMessage
	if err := json.Unmarshal(pt, &jm); err != nil || jm.JobID != job.ID() {
		t.Fatalf("job message: %v %s", err, jm.JobID)
	}
	if job.Request().ReceiveTime == nil {
		t.Fatal("receiveTime not set when the message was delivered")
	}
}

func TestUnencryptedSessions(t *testing.T) {
	s := startServer(t, devserver.Options{NoEncryption: true, PollHold: 20 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "plain")
	sess := a.openSession()
	if sess.EncryptionKey != nil {
		t.Fatalf("encryption key sent although sessions are unencrypted: %+v", sess.EncryptionKey)
	}
	job, _ := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	m := a.next(-1)
	if m.IV != nil {
		t.Fatal("iv on an unencrypted session")
	}
	var jm wire.JobRequestMessage
	if err := json.Unmarshal(m.Body, &jm); err != nil || jm.JobID != job.ID() {
		t.Fatalf("plain job message: %v", err)
	}
}

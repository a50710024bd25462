package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// TestSurvivesFaults: the service failing or dropping calls on every route
// the agent uses does not kill the agent, and the job still completes.
func TestSurvivesFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault devserver.Fault
	}{
		{"5xx on long polls", devserver.Fault{Method: "GET", Resource: "messages", Status: 503, Times: 3}},
		{"dropped long polls", devserver.Fault{Method: "GET", Resource: "messages", Drop: true, Times: 3}},
		{"5xx on connection data", devserver.Fault{Resource: "connectionData", Status: 503, Times: 2}},
		{"5xx on the agent token endpoint", devserver.Fault{Resource: "token", Status: 503, Times: 2}},
		{"5xx on session creation", devserver.Fault{Method: "POST", Resource: "sessions", Status: 503, Times: 3}},
		{"dropped session creation", devserver.Fault{Method: "POST", Resource: "sessions", Drop: true, Times: 2}},
		{"5xx on message acknowledgement", devserver.Fault{Method: "DELETE", Resource: "messages", Status: 500, Times: 1}},
		{"5xx on lock renewal", devserver.Fault{Method: "PATCH", Resource: "jobrequests", Status: 503, Times: 2}},
		{"5xx on timeline records", devserver.Fault{Method: "PATCH", Resource: "records", Status: 503, Times: 3}},
		{"5xx on the live console", devserver.Fault{Method: "POST", Resource: "feed", Status: 502, Times: 3}},
		{"5xx on log upload", devserver.Fault{Method: "POST", Resource: "logs", Status: 503, Times: 3}},
		{"5xx on the job completed event", devserver.Fault{Method: "POST", Resource: "events", Status: 503, Times: 2}},
		{"5xx on session deletion", devserver.Fault{Method: "DELETE", Resource: "sessions", Status: 503, Times: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			h := w.srv.Faults().Add(tc.fault)
			j := w.queue(t, scriptJob("resilient", "echo line one\necho line two"))
			a := w.newAgent("resilient").set("GOAGENT_SESSION_RETRY", "200ms")
			p := a.start("run", "--once")
			expectResult(t, j, "succeeded", p)
			p.expectExit(t, 0)
			want := tc.fault.Times
			if got := h.Hits(); got != want {
				t.Errorf("the fault fired %d times, want %d: the test did not exercise what it names", got, want)
			}
			if _, ok := w.agentByName("resilient"); ok {
				t.Error("the agent stayed registered")
			}
			expectGone(t, a.stateDir())
			if lines := j.Logs()[stepLog(t, j)]; !strings.Contains(lines, "line two") {
				t.Errorf("the step's log lost output: %q", lines)
			}
		})
	}
}

// stepLog returns the log id of the job's CmdLine step.
func stepLog(t *testing.T, j *devserver.Job) int {
	t.Helper()
	for _, r := range j.Timeline() {
		if deref(r.Name) == "Run a script" && r.Log != nil && r.Log.Id != nil {
			return *r.Log.Id
		}
	}
	t.Fatal("the step record links no log")
	return 0
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	for _, midJob := range []bool{false, true} {
		t.Run(fmt.Sprintf("mid-job=%v", midJob), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("expiring")
			p := a.start("run", "--once")
			old := w.waitListening(t, "expiring")
			g := newGate(t)
			var j *devserver.Job
			if midJob {
				j = w.queue(t, scriptJob("across sessions", g.wait()))
				eventually(t, "the job to start", func() bool { return j.State() == devserver.JobRunning })
			}
			if err := w.srv.ExpireSession(old.ID); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a new session", func() bool {
				s, ok := w.sessionOf("expiring")
				return ok && s.ID != old.ID && s.Polls > 0
			})
			if midJob {
				g.open(t)
			} else {
				j = w.queue(t, scriptJob("after expiry", "echo hello"))
			}
			expectResult(t, j, "succeeded", p)
			p.expectExit(t, 0)
			if n := len(w.exchanges("POST", "sessions")); n != 2 {
				t.Errorf("%d sessions created, want 2", n)
			}
			if _, ok := w.agentByName("expiring"); ok || len(w.srv.Sessions()) != 0 {
				t.Error("the agent did not clean up")
			}
		})
	}
}

// TestSessionConflict: a second process with the same registration finds
// the session taken; it retries (listener.md §4.2) and takes over when the
// first one leaves, instead of failing or stealing the session.
func TestSessionConflict(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	first := w.newAgent("twin")
	p1 := first.start("run")
	w.waitListening(t, "twin")

	// Same home: same registration, same key, same agent.
	second := &agent{w: w, name: first.name, home: first.home, env: map[string]string{}}
	for k, v := range first.env {
		second.env[k] = v
	}
	second.set("GOAGENT_SESSION_RETRY", "200ms")
	p2 := second.start("run", "--once")
	eventually(t, "the second agent to meet the conflict twice", func() bool {
		n := 0
		for _, e := range w.exchanges("POST", "sessions") {
			if e.Status == 409 {
				n++
			}
		}
		return n >= 2
	})
	if p2.exited() {
		t.Fatalf("the second agent gave up at the first conflicts:\n%s", p2.output())
	}
	if !strings.Contains(p2.output(), "another session") {
		t.Errorf("the second agent did not explain the conflict:\n%s", p2.output())
	}

	p1.signal(t, syscall.SIGTERM)
	p1.expectExit(t, 143)
	out := t.TempDir() + "/ppid"
	j := w.queue(t, scriptJob("taken over", "echo $PPID > "+out))
	expectResult(t, j, "succeeded", p2)
	p2.expectExit(t, 0)
	if got := readPID(t, out); got != p2.cmd.Process.Pid {
		t.Errorf("the job ran under process %d, want the second agent %d", got, p2.cmd.Process.Pid)
	}
}

// TestUnexpectedMessages: undecryptable, malformed and unknown messages and
// AgentRefresh are logged and acknowledged; none is fatal and none consumes
// the --once job.
func TestUnexpectedMessages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		typ     string
		body    string
		mode    devserver.InjectMode
		logSays string
	}{
		{"undecryptable job request", wire.MessageJobRequest, `{}`, devserver.InjectGarbage, "decrypt"},
		{"malformed job request", wire.MessageJobRequest, `{"jobId": 42`, devserver.InjectEncrypted, "job request"},
		{"unknown message type", "BrokerMigration", `{"brokerBaseUrl":"https://127.0.0.1:1/"}`, devserver.InjectEncrypted, "unsupported message type"},
		{"cancellation of an unknown job", wire.MessageJobCancellation, `{"jobId":"6f0a3c1e-4f65-4b7e-8d0e-2b1c9a7d5e43","timeout":"00:05:00"}`, devserver.InjectEncrypted, "not running"},
		{"AgentRefresh", wire.MessageAgentRefresh, `{"agentId":1,"targetVersion":"4.999.0","timeout":"00:15:00"}`, devserver.InjectEncrypted, "self-update"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("robust")
			p := a.start("run", "--once")
			w.waitListening(t, "robust")
			ag, _ := w.agentByName("robust")
			id, err := w.srv.InjectMessage(*ag.Id, tc.typ, []byte(tc.body), tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			ackPath := "/messages/" + strconv.FormatInt(id, 10)
			eventually(t, "the message to be acknowledged", func() bool {
				for _, e := range w.exchanges("DELETE", "messages") {
					if strings.HasSuffix(e.Path, ackPath) {
						return true
					}
				}
				return false
			})
			if p.exited() {
				t.Fatalf("the agent exited on the message:\n%s", p.output())
			}
			// The log line may follow the acknowledgement.
			eventually(t, "the log to mention "+strconv.Quote(tc.logSays), func() bool {
				return strings.Contains(p.output(), tc.logSays)
			})
			j := w.queue(t, scriptJob("after the message", "echo still here"))
			expectResult(t, j, "succeeded", p)
			p.expectExit(t, 0)
		})
	}
}

func TestLockRenewal(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	g := newGate(t)
	j := w.queue(t, scriptJob("long", g.wait()))
	a := w.newAgent("renewing").set("GOAGENT_RENEW_PERIOD", "100ms")
	p := a.start("run", "--once")
	eventually(t, "several lock renewals during the step", func() bool { return j.Renewals() >= 5 })
	if j.State() != devserver.JobRunning {
		t.Fatalf("job is %s while its step runs", j.State())
	}
	g.open(t)
	expectResult(t, j, "succeeded", p)
	p.expectExit(t, 0)
	for _, e := range w.exchanges("PATCH", "jobrequests") {
		if !strings.Contains(e.Query, "lockToken=00000000-0000-0000-0000-000000000000") {
			t.Errorf("renewal without the empty lock token: %s?%s", e.Path, e.Query)
		}
	}
}

// TestLostLockCancelsJob: when the service no longer holds the job for the
// agent (its lock lapsed and the job was abandoned), the job's processes are
// stopped instead of running on for nobody.
func TestLostLockCancelsJob(t *testing.T) {
	t.Parallel()
	// The lock lasts less than the renewal period, so the service abandons the
	// job between two renewals and answers the next one "job not found".
	w := newWorld(t, devserver.Options{LockDuration: 300 * time.Millisecond})
	script, stepFile, childFile := stepTree(t.TempDir())
	j := w.queue(t, scriptJob("lost", script))
	a := w.newAgent("lost").set("GOAGENT_RENEW_PERIOD", "2s")
	p := a.start("run", "--once")
	step, child := readPID(t, stepFile), readPID(t, childFile)
	if r := result(t, j); r != "abandoned" {
		t.Fatalf("job result %q, want abandoned (the emulator's lock expiry)", r)
	}
	for _, pid := range []int{step, child} {
		eventually(t, fmt.Sprintf("step process %d to be stopped", pid), func() bool { return !alive(pid) })
	}
	p.expectExit(t, 0)
	if !strings.Contains(p.output(), "lost the job request's lock") {
		t.Errorf("the agent did not say it lost the lock:\n%s", p.output())
	}
	if strings.Contains(p.output(), "the step was not interrupted") {
		t.Error("the step ran to its end")
	}
	if _, ok := w.agentByName("lost"); ok {
		t.Error("the --once agent stayed registered")
	}
}

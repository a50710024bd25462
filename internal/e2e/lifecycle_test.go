package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// checkState checks the state directory: 0700, every file 0600, and the
// registration it records is the emulator's agent.
func checkState(t *testing.T, a *agent, agentID int) {
	t.Helper()
	dir := a.stateDir()
	if m := fileMode(t, dir); m != 0o700 {
		t.Errorf("state directory %s has mode %o, want 700", dir, m)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) == 0 {
		t.Fatalf("state directory %s is empty", dir)
	}
	for _, e := range ents {
		if m := fileMode(t, filepath.Join(dir, e.Name())); m != 0o600 {
			t.Errorf("state file %s has mode %o, want 600", e.Name(), m)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, ".agent"))
	if err != nil {
		t.Fatalf("registration file: %v", err)
	}
	var s struct {
		AgentID   int    `json:"agentId"`
		AgentName string `json:"agentName"`
		ServerURL string `json:"serverUrl"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("registration file: %v", err)
	}
	if s.AgentID != agentID || s.AgentName != a.name || strings.TrimRight(s.ServerURL, "/") != a.w.srv.URL() {
		t.Errorf("registration file records %+v, want agent %d %q at %s", s, agentID, a.name, a.w.srv.URL())
	}
}

func expectGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(path)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s still exists (%v; holding %v)", path, err, names)
	}
}

func (w *world) countAgents(name string) int {
	n := 0
	for _, a := range w.srv.Agents("") {
		if a.Name != nil && strings.EqualFold(*a.Name, name) {
			n++
		}
	}
	return n
}

func TestRegisterReplaceRemove(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})

	first := w.newAgent("builder")
	first.run("register").expectExit(t, 0)
	ag, ok := w.agentByName("builder")
	if !ok {
		t.Fatal("register: no agent on the emulator")
	}
	if ag.Status == nil || *ag.Status != "offline" {
		t.Errorf("a registered agent that never listened is %v, want offline", ag.Status)
	}
	if len(w.srv.Sessions()) != 0 || len(w.exchanges("POST", "sessions")) != 0 {
		t.Error("register opened a session")
	}
	checkState(t, first, *ag.Id)
	key1 := *ag.Authorization.PublicKey.Modulus

	// The same name from another machine replaces the agent (--replace is on
	// by default): same id, the new machine's key.
	second := w.newAgent("builder")
	second.run("register").expectExit(t, 0)
	ag2, _ := w.agentByName("builder")
	if n := w.countAgents("builder"); n != 1 || *ag2.Id != *ag.Id {
		t.Fatalf("after a replace: %d agents named builder, id %d (was %d)", n, *ag2.Id, *ag.Id)
	}
	if bytes.Equal(*ag2.Authorization.PublicKey.Modulus, key1) {
		t.Error("the replaced agent still has the first machine's key")
	}
	if len(w.exchanges("PUT", "agents")) != 1 {
		t.Errorf("replace: %d PUT agents, want 1", len(w.exchanges("PUT", "agents")))
	}
	checkState(t, second, *ag.Id)

	// AZP_REPLACE=false refuses, names the cause and the fix, and leaves the
	// agent alone.
	third := w.newAgent("builder").set("AZP_REPLACE", "false")
	p := third.run("register")
	if p.code != 1 {
		t.Fatalf("register with AZP_REPLACE=false over an existing agent exited %d, want 1; output:\n%s", p.code, p.output())
	}
	for _, want := range []string{`"builder"`, "already exists", "--replace"} {
		if !strings.Contains(p.output(), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, p.output())
		}
	}
	if ag3, _ := w.agentByName("builder"); !bytes.Equal(*ag3.Authorization.PublicKey.Modulus, *ag2.Authorization.PublicKey.Modulus) {
		t.Error("the refused registration changed the agent's key")
	}

	// remove: the agent is gone from the pool and the state directory from
	// disk. No URL needed: the registration knows it.
	second.set("AZP_URL", "", "AZP_AGENT_NAME", "")
	second.run("remove").expectExit(t, 0)
	if _, ok := w.agentByName("builder"); ok {
		t.Error("remove left the agent in the pool")
	}
	expectGone(t, second.stateDir())

	// The first machine's registration points at an agent that no longer
	// exists: remove still cleans up locally and succeeds.
	first.run("remove").expectExit(t, 0)
	expectGone(t, first.stateDir())
}

func TestPlaceholder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"register --placeholder", nil, []string{"register", "--placeholder"}},
		{"AZP_PLACEHOLDER=1 run", []string{"AZP_PLACEHOLDER", "1"}, []string{"run"}},
		{"AZP_PLACEHOLDER=1 run --once", []string{"AZP_PLACEHOLDER", "1"}, []string{"run", "--once"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			ph := w.newAgent("keda-placeholder").set(tc.env...)
			ph.run(tc.args...).expectExit(t, 0)
			ag, ok := w.agentByName("keda-placeholder")
			if !ok {
				t.Fatal("no placeholder agent in the pool")
			}
			if *ag.Status != "offline" {
				t.Errorf("placeholder is %s, want offline", *ag.Status)
			}
			if n := len(w.exchanges("POST", "sessions")); n != 0 {
				t.Errorf("the placeholder opened %d sessions", n)
			}
			checkState(t, ph, *ag.Id)

			// A scaled-out --once agent runs a job and removes itself, never
			// the placeholder.
			worker := w.newAgent("keda-job")
			p := worker.start("run", "--once")
			expectResult(t, w.queue(t, scriptJob("scaled", "echo scaled")), "succeeded", p)
			p.expectExit(t, 0)
			if _, ok := w.agentByName("keda-job"); ok {
				t.Error("the --once agent stayed registered")
			}
			if _, ok := w.agentByName("keda-placeholder"); !ok {
				t.Error("the placeholder was deleted by another agent's --once run")
			}
			if n := len(w.exchanges("DELETE", "agents")); n != 1 {
				t.Errorf("%d agent deletions, want exactly the --once agent's", n)
			}
		})
	}
}

func TestOnceRunsOneJobAndLeavesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	out := t.TempDir()
	first := w.queue(t, scriptJob("first", "echo \"$AGENT_NAME\" > "+filepath.Join(out, "first")))
	second := w.queue(t, scriptJob("second", "echo \"$AGENT_NAME\" > "+filepath.Join(out, "second")))

	a := w.newAgent("ephemeral")
	p := a.start("run", "--once")
	expectResult(t, first, "succeeded", p)
	p.expectExit(t, 0)

	if b, err := os.ReadFile(filepath.Join(out, "first")); err != nil || strings.TrimSpace(string(b)) != "ephemeral" {
		t.Errorf("the first job's step did not run on the agent: %q %v", b, err)
	}
	if _, ok := w.agentByName("ephemeral"); ok {
		t.Error("--once left the agent registered")
	}
	if s := w.srv.Sessions(); len(s) != 0 {
		t.Errorf("--once left sessions open: %+v", s)
	}
	if n := len(w.exchanges("DELETE", "sessions")); n != 1 {
		t.Errorf("%d session deletions, want 1", n)
	}
	expectGone(t, a.stateDir())

	// The second job was not run, and went back to the pool for others.
	if _, err := os.Stat(filepath.Join(out, "second")); err == nil {
		t.Fatal("the --once agent ran a second job")
	}
	if st := second.State(); st != devserver.JobQueued || second.Renewals() != 0 {
		t.Fatalf("second job: state %s, %d renewals; want queued, never renewed", st, second.Renewals())
	}
	b := w.newAgent("next")
	pb := b.start("run", "--once")
	expectResult(t, second, "succeeded", pb)
	pb.expectExit(t, 0)
	if got, _ := os.ReadFile(filepath.Join(out, "second")); strings.TrimSpace(string(got)) != "next" {
		t.Errorf("the second job ran on %q, want the second agent", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"flag", nil, []string{"run", "--once", "--idle-timeout", "1s"}},
		{"AZP_IDLE_TIMEOUT", []string{"AZP_IDLE_TIMEOUT", "1"}, []string{"run", "--once"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("idle").set(tc.env...)
			p := a.run(tc.args...)
			if p.code != 0 {
				t.Fatalf("idle timeout: exit %d, want 0; output:\n%s", p.code, p.output())
			}
			if !strings.Contains(p.output(), "idle timeout") {
				t.Errorf("the agent did not say why it left:\n%s", p.output())
			}
			if len(w.exchanges("POST", "sessions")) != 1 || len(w.exchanges("DELETE", "sessions")) != 1 {
				t.Error("the agent did not open and then delete its session")
			}
			if _, ok := w.agentByName("idle"); ok || len(w.exchanges("DELETE", "agents")) != 1 {
				t.Error("the idle agent did not unregister")
			}
			expectGone(t, a.stateDir())
		})
	}
}

// TestReplacedWhileListening: a second machine registering the same agent
// name takes the registration over. The first agent, whose key the service
// no longer accepts, stops with the cause and the fix instead of polling
// forever, and never deletes the registration that is now the other
// machine's (not even with --once).
func TestReplacedWhileListening(t *testing.T) {
	t.Parallel()
	for _, once := range []bool{false, true} {
		t.Run(fmt.Sprintf("once=%v", once), func(t *testing.T) {
			t.Parallel()
			// A superseded agent cannot delete its session: let the
			// emulator expire it quickly.
			w := newWorld(t, devserver.Options{PollHold: 2 * time.Second, SessionIdle: 2 * time.Second})
			old := w.newAgent("pod")
			args := []string{"run"}
			if once {
				args = append(args, "--once")
			}
			p := old.start(args...)
			w.waitListening(t, "pod")

			newer := w.newAgent("pod").set("GOAGENT_SESSION_RETRY", "200ms")
			newer.run("register").expectExit(t, 0)
			p.expectExit(t, 1)
			for _, s := range []string{"no longer accepts this agent's key", "its own --agent name"} {
				if !strings.Contains(p.output(), s) {
					t.Errorf("the superseded agent does not say %q:\n%s", s, p.output())
				}
			}
			if n := len(w.exchanges("DELETE", "agents")); n != 0 {
				t.Fatalf("the superseded agent deleted the registration (%d DELETE agents)", n)
			}
			if _, err := os.Stat(filepath.Join(old.stateDir(), ".agent")); !os.IsNotExist(err) {
				t.Errorf("the superseded agent kept its stale registration: %v", err)
			}

			j := w.queue(t, scriptJob("on the new machine", "echo hello"))
			pn := newer.start("run", "--once")
			expectResult(t, j, "succeeded", pn)
			pn.expectExit(t, 0)
		})
	}
}

// TestOnceFailedJob: a failed pipeline is the pipeline's result, not the
// agent's: --once still cleans up and exits 0.
func TestOnceFailedJob(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	j := w.queue(t, scriptJob("failing", "echo about to fail\nexit 3"))
	a := w.newAgent("failing")
	p := a.start("run", "--once")
	expectResult(t, j, "failed", p)
	p.expectExit(t, 0)
	if _, ok := w.agentByName("failing"); ok || len(w.srv.Sessions()) != 0 {
		t.Error("the agent did not clean up after a failed job")
	}
	expectGone(t, a.stateDir())
}

// Jobs queued back to back reach a long-lived agent while the previous one
// may still be finishing (the service frees the agent at JobCompleted): each
// is run, none is dropped (JobDispatcher.EnsureDispatchFinished).
func TestBackToBackJobsOnOneAgent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	a := w.newAgent("steady")
	p := a.start("run")
	w.waitListening(t, "steady")
	var jobs []*devserver.Job
	for i := range 4 {
		jobs = append(jobs, w.queue(t, scriptJob(fmt.Sprintf("job %d", i), fmt.Sprintf("echo job %d", i))))
	}
	for _, j := range jobs {
		expectResult(t, j, "succeeded", p)
	}
	p.signal(t, syscall.SIGTERM)
	p.expectExit(t, 143)
}

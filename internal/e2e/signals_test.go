package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// exitBound is how long an agent may take from a signal (or a cancellation
// message) to its exit with the grace periods the tests configure. The
// official agent waits up to 30 s after SIGTERM (listener.md §5.4).
const exitBound = 30 * time.Second

// stepTree is a step that starts a background child and waits, recording
// both pids.
func stepTree(dir string) (script, stepPID, childPID string) {
	stepPID, childPID = filepath.Join(dir, "step.pid"), filepath.Join(dir, "child.pid")
	script = fmt.Sprintf("echo $$ > %q\nsleep 600 &\necho $! > %q\nwait\necho the step was not interrupted\n", stepPID, childPID)
	return script, stepPID, childPID
}

// stubbornStep is stepTree for a step that notes SIGINT in a file and goes
// on waiting, and whose processes ignore SIGTERM (and, being started in the
// background by a non-interactive shell, the child ignores SIGINT too).
func stubbornStep(dir string) (script, stepPID, childPID, interrupted string) {
	stepPID, childPID, interrupted = filepath.Join(dir, "step.pid"), filepath.Join(dir, "child.pid"), filepath.Join(dir, "interrupted")
	script = fmt.Sprintf("trap 'echo yes > %q' INT\ntrap '' TERM\necho $$ > %q\nsleep 600 &\nchild=$!\necho $child > %q\nwhile kill -0 $child 2>/dev/null; do wait; done\necho the step was not interrupted\n",
		interrupted, stepPID, childPID)
	return script, stepPID, childPID, interrupted
}

// expectCanceledAndClean checks what every cancellation path must leave: the
// step's processes gone and the job reported canceled with every record
// completed.
func expectCanceledAndClean(t *testing.T, j *devserver.Job, p *proc, pids ...int) {
	t.Helper()
	expectResult(t, j, "canceled", p)
	for _, pid := range pids {
		eventually(t, fmt.Sprintf("step process %d to be gone", pid), func() bool { return !alive(pid) })
	}
	recs := j.Timeline()
	if len(recs) < 2 {
		t.Fatalf("the job reported %d timeline records, want the job and its step", len(recs))
	}
	for _, r := range recs {
		if r.State == nil || *r.State != taskagent.TimelineRecordStateValues.Completed {
			t.Errorf("record %q is %v, want completed", deref(r.Name), r.State)
		}
	}
	if r := recs[0]; r.Result == nil || *r.Result != taskagent.TaskResultValues.Canceled {
		t.Errorf("job record result %v, want canceled", r.Result)
	}
	if v := j.Violations(); len(v) > 0 {
		t.Errorf("job violations: %v", v)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestCancelMidStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		once     bool
		signal   syscall.Signal // 0: a JobCancellation message
		wantExit int
	}{
		{"cancel message, --once", true, 0, 0},
		{"SIGTERM, --once", true, syscall.SIGTERM, 143},
		{"SIGINT, --once", true, syscall.SIGINT, 130},
		{"SIGTERM, run", false, syscall.SIGTERM, 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			script, stepFile, childFile := stepTree(t.TempDir())
			j := w.queue(t, scriptJob("long", script))
			a := w.newAgent("canceled")
			args := []string{"run"}
			if tc.once {
				args = append(args, "--once")
			}
			p := a.start(args...)
			step, child := readPID(t, stepFile), readPID(t, childFile)
			start := time.Now()
			if tc.signal == 0 {
				if err := w.srv.CancelJob(j.ID(), 0); err != nil {
					t.Fatal(err)
				}
			} else {
				p.signal(t, tc.signal)
			}
			expectCanceledAndClean(t, j, p, step, child)
			if tc.once || tc.signal != 0 {
				p.expectExit(t, tc.wantExit)
				if d := time.Since(start); d > exitBound {
					t.Errorf("the agent took %v to exit, more than %v", d, exitBound)
				}
			}
			if strings.Contains(p.output(), "the step was not interrupted") {
				t.Error("the step ran to its end")
			}
			if !tc.once && tc.signal == 0 {
				// A long-running agent survives a cancelled job and runs the next.
				expectResult(t, w.queue(t, scriptJob("next", "echo next")), "succeeded", p)
				p.signal(t, syscall.SIGTERM)
				p.expectExit(t, 143)
			}
			if len(w.srv.Sessions()) != 0 {
				t.Error("the session was not deleted")
			}
			_, registered := w.agentByName("canceled")
			if registered == tc.once {
				t.Errorf("after the run the agent is registered: %v, want %v", registered, !tc.once)
			}
			if tc.once {
				expectGone(t, a.stateDir())
			}
		})
	}
}

// TestSecondSignalKillsAtOnce: a step that ignores SIGINT and SIGTERM would
// keep the agent for the whole grace period; a second signal ends it now.
func TestSecondSignalKillsAtOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	script, stepFile, childFile, interrupted := stubbornStep(t.TempDir())
	j := w.queue(t, scriptJob("stubborn", script))
	a := w.newAgent("stubborn").set("AZP_KILL_GRACE", "10m")
	p := a.start("run", "--once")
	step, child := readPID(t, stepFile), readPID(t, childFile)
	p.signal(t, syscall.SIGTERM)
	// The first signal reached the step (SIGINT), which carries on.
	eventually(t, "the step to be interrupted", func() bool {
		_, err := os.Stat(interrupted)
		return err == nil
	})
	if !alive(step) || !alive(child) || p.exited() {
		t.Fatal("the step or the agent ended on the first signal; the test proves nothing")
	}
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	expectCanceledAndClean(t, j, p, step, child)
	p.expectExit(t, 143)
	if d := time.Since(start); d > exitBound {
		t.Errorf("after the second signal the agent took %v to exit", d)
	}
	if _, ok := w.agentByName("stubborn"); ok || len(w.srv.Sessions()) != 0 {
		t.Error("the agent did not clean up after the second signal")
	}
}

func TestSignalWhileIdle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		once     bool
		signal   syscall.Signal
		wantExit int
	}{
		{"SIGTERM, --once", true, syscall.SIGTERM, 143},
		{"SIGINT, --once", true, syscall.SIGINT, 130},
		{"SIGTERM, run", false, syscall.SIGTERM, 143},
		{"SIGINT, run", false, syscall.SIGINT, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("idle")
			args := []string{"run"}
			if tc.once {
				args = append(args, "--once")
			}
			p := a.start(args...)
			w.waitListening(t, "idle")
			p.signal(t, tc.signal)
			p.expectExit(t, tc.wantExit)
			if len(w.srv.Sessions()) != 0 || len(w.exchanges("DELETE", "sessions")) != 1 {
				t.Error("the session was not deleted")
			}
			if _, registered := w.agentByName("idle"); registered == tc.once {
				t.Errorf("registered after the signal: %v, want %v", registered, !tc.once)
			}
			if _, err := os.Stat(a.stateDir()); (err == nil) == tc.once {
				t.Errorf("state directory present after the signal: %v, want %v", err == nil, !tc.once)
			}
		})
	}
}

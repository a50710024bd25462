package jobs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(t *testing.T, pid int) bool {
	t.Helper()
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...: a zombie has exited.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %q", path, b)
	}
	return pid
}

// TestEmulatorCancel: a JobCancellation from the service ends the running
// step (its processes are gone), steps with always() and canceled() still
// run, the others are skipped, and the job is reported canceled.
func TestEmulatorCancel(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	dir := t.TempDir()
	env := map[string]string{"PIDDIR": dir}
	j := l.queue(emuMessage(nil,
		stepSpec{script: `echo $$ > "$PIDDIR/shell.tmp"; sleep 600 & echo $! > "$PIDDIR/child"; mv "$PIDDIR/shell.tmp" "$PIDDIR/shell"; echo started; wait`, env: env},
		stepSpec{script: "echo should-not-run"},
		stepSpec{script: "echo cleanup", condition: "always()"},
		stepSpec{script: "echo on-cancel", condition: "canceled()"},
		stepSpec{script: "echo sof", condition: "succeededOrFailed()"},
	))
	waitFor(t, "the first step to start", func() bool {
		_, err := os.Stat(filepath.Join(dir, "shell"))
		return err == nil
	})
	shell, child := readPID(t, filepath.Join(dir, "shell")), readPID(t, filepath.Join(dir, "child"))
	if err := l.srv.CancelJob(j.ID(), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if res := l.wait(j); res != "canceled" {
		t.Fatalf("result %s", res)
	}
	for _, pid := range []int{shell, child} {
		if alive(t, pid) {
			t.Errorf("process %d of the canceled step is still running", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	want := []string{"canceled", "skipped", "succeeded", "succeeded", "skipped"}
	for i, w := range want {
		if r := record(t, j, stepID(i)); result(r) != w {
			t.Errorf("step %d = %s, want %s\n%s", i, result(r), w, logText(j, stepID(i)))
		}
	}
	if e := issues(record(t, j, stepID(0)), "error"); len(e) == 0 || e[0] != "The Operation will be canceled. The next steps may not contain expected logs." {
		t.Errorf("running step's errors %q", e)
	}
	if r := record(t, j, j.ID()); result(r) != "canceled" {
		t.Errorf("job record %s", result(r))
	}
	if ev := j.Events(); len(ev) != 1 || ev[0].Result != "canceled" {
		t.Errorf("events %+v", ev)
	}
	l.checkViolations()
}

// TestEmulatorOrphanProcesses: a process a step leaves running (even in its
// own session) carries VSTS_PROCESS_LOOKUP_ID and is killed when the job
// ends; with process.clean=false it is left alone.
func TestEmulatorOrphanProcesses(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{agents: 2})
	// The step waits until the orphan runs sleep in its own session, so that only the
	// lookup id, not the step's process-group kill, can reach it.
	leave := `setsid sleep 600 </dev/null >/dev/null 2>&1 & p=$!; echo $p > "$PIDDIR/orphan"
until [ "$(cat /proc/$p/comm)" = sleep ] && [ "$(cut -d' ' -f6 /proc/$p/stat)" = "$p" ]; do sleep 0.01; done
echo "id=$VSTS_PROCESS_LOOKUP_ID"`
	dirs := []string{t.TempDir(), t.TempDir()}
	clean := l.queue(emuMessage(nil, stepSpec{script: leave, env: map[string]string{"PIDDIR": dirs[0]}}))
	keep := l.queue(emuMessage(map[string]wire.VariableValue{"process.clean": {Value: "false"}}, stepSpec{script: leave, env: map[string]string{"PIDDIR": dirs[1]}}))
	for _, j := range []*devserver.Job{clean, keep} {
		if res := l.wait(j); res != "succeeded" {
			t.Fatalf("result %s", res)
		}
	}
	killed := readPID(t, filepath.Join(dirs[0], "orphan"))
	kept := readPID(t, filepath.Join(dirs[1], "orphan"))
	t.Cleanup(func() { syscall.Kill(kept, syscall.SIGKILL) })
	if alive(t, killed) {
		syscall.Kill(killed, syscall.SIGKILL)
		t.Errorf("the orphan process outlived its job; Finalize Job:\n%s", logText(clean, taskRecords(clean)[len(taskRecords(clean))-1].Id.String()))
	}
	if !alive(t, kept) {
		t.Errorf("process.clean=false: the orphan process was killed\n%s", logText(keep, stepID(0)))
	}
	msgs := logMessages(clean, stepID(0))
	found := false
	for _, m := range msgs {
		found = found || strings.HasPrefix(m, "id=vsts_")
	}
	if !found {
		t.Errorf("VSTS_PROCESS_LOOKUP_ID not in the step environment:\n%s", strings.Join(msgs, "\n"))
	}
	fin := taskRecords(clean)
	if last := fin[len(fin)-1]; str(last.Name) != "Finalize Job" || !hasLine(logMessages(clean, last.Id.String()), "Terminated 1 orphan process(es) left running by the job's steps.") {
		t.Errorf("Finalize Job log:\n%s", logText(clean, last.Id.String()))
	}
}

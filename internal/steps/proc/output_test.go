package proc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/steps/proc"
)

// Output arrives whole and in order however the process writes it: a line
// per write(2) (the reader then waits between reads so that lines pile up),
// large writes, and both at once on two pipes.
func TestOutputWholeAndInOrder(t *testing.T) {
	const lines = 3000
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); done
head -c 300000 /dev/zero | tr '\0' 'z'; echo; echo last`, lines)
	var out, errb buffer
	res, err := run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", script}, Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 0 || res.OutputTimedOut {
		t.Fatalf("%+v %v", res, err)
	}
	var want, wantErr strings.Builder
	for i := range lines {
		fmt.Fprintf(&want, "line %d\n", i)
		fmt.Fprintf(&wantErr, "err %d\n", i)
	}
	want.WriteString(strings.Repeat("z", 300000) + "\nlast\n")
	if got := out.String(); got != want.String() {
		t.Errorf("stdout: %d bytes, want %d (first difference at %d)", len(got), want.Len(), firstDiff(got, want.String()))
	}
	if got := errb.String(); got != wantErr.String() {
		t.Errorf("stderr: %d bytes, want %d (first difference at %d)", len(got), wantErr.Len(), firstDiff(got, wantErr.String()))
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// A background child that keeps writing after the step exited does not hold
// Run past OutputDelay.
func TestOutputDelayWhileWriting(t *testing.T) {
	tag := "PROC_TEST=" + uuid.NewString()
	var out buffer
	res, err := run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "(while :; do echo more; done) & echo started"},
		Env: []string{tag, "PATH=" + os.Getenv("PATH")}, Stdout: &out, KeepBackground: true, OutputDelay: 200 * time.Millisecond})
	if _, kerr := proc.KillTagged(tag); kerr != nil {
		t.Error(kerr)
	}
	eventuallyNone(t, tag)
	if err != nil || res.ExitCode != 0 || !res.OutputTimedOut {
		t.Fatalf("%+v %v", res, err)
	}
	if !strings.Contains(out.String(), "started\n") || !strings.Contains(out.String(), "more\n") {
		t.Errorf("output %.100q", out.String())
	}
}

// Runs leave no descriptor open behind them, whatever their ending.
func TestNoDescriptorLeak(t *testing.T) {
	count := func() int {
		ents, err := os.ReadDir("/dev/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := count()
	for i := range 10 {
		var out, errb buffer
		run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "echo a; echo b >&2"}, Stdout: &out, Stderr: &errb})
		run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "echo a; echo b >&2"}, Stdout: &out, Stderr: &out})
		run(t, context.Background(), proc.Cmd{Path: filepath.Join(t.TempDir(), "missing"), Stdout: &out})
		tag := fmt.Sprintf("PROC_TEST=%s-%d", uuid.NewString(), i)
		run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "sleep 1000 & echo started"},
			Env: []string{tag, "PATH=" + os.Getenv("PATH")}, Stdout: &out, KeepBackground: true, OutputDelay: 10 * time.Millisecond})
		if _, err := proc.KillTagged(tag); err != nil {
			t.Fatal(err)
		}
	}
	if after := count(); after != before {
		t.Errorf("%d descriptors open after the runs, %d before", after, before)
	}
}

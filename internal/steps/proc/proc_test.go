package proc_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/steps/proc"
)

// buffer is a goroutine-safe writer that signals when it sees a string.
type buffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	sig chan struct{}
	at  string
}

func (w *buffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.sig != nil && strings.Contains(w.b.String(), w.at) {
		close(w.sig)
		w.sig = nil
	}
	return len(p), nil
}

func (w *buffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func waitingFor(s string) (*buffer, <-chan struct{}) {
	ch := make(chan struct{})
	return &buffer{sig: ch, at: s}, ch
}

func sh(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("the tests need sh")
	}
	return p
}

// run runs c with a hang guard.
func run(t *testing.T, ctx context.Context, c proc.Cmd) (proc.Result, error) {
	t.Helper()
	type out struct {
		r   proc.Result
		err error
	}
	ch := make(chan out, 1)
	go func() { r, err := proc.Run(ctx, c); ch <- out{r, err} }()
	select {
	case o := <-ch:
		return o.r, o.err
	case <-time.After(60 * time.Second):
		t.Fatal("proc.Run did not return")
		return proc.Result{}, nil
	}
}

func tagged(t *testing.T, tag string) []int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == tag {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func eventuallyNone(t *testing.T, tag string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); len(tagged(t, tag)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("tagged processes alive: %v", tagged(t, tag))
		}
	}
}

func TestExitCodesAndOutput(t *testing.T) {
	var out, errb buffer
	res, err := run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "echo out; echo err >&2; exit 3"}, Stdout: &out, Stderr: &errb})
	if err != nil || res.ExitCode != 3 || res.Signaled || res.OutputTimedOut {
		t.Fatalf("%+v %v", res, err)
	}
	if out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}

	// One writer for both streams.
	var both buffer
	if _, err := run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "echo a; echo b >&2; echo c"}, Stdout: &both, Stderr: &both}); err != nil {
		t.Fatal(err)
	}
	if both.String() != "a\nb\nc\n" {
		t.Errorf("combined %q", both.String())
	}

	res, err = run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "kill -TERM $$"}})
	if err != nil || !res.Signaled || res.Signal != syscall.SIGTERM || res.ExitCode != -1 {
		t.Errorf("signaled: %+v %v", res, err)
	}

	_, err = run(t, context.Background(), proc.Cmd{Path: filepath.Join(t.TempDir(), "missing")})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing executable: %v", err)
	}
}

func TestArgv0(t *testing.T) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	var out buffer
	if _, err := run(t, context.Background(), proc.Cmd{Path: cat, Argv0: "mycat", Args: []string{"/proc/self/cmdline"}, Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "mycat\x00/proc/self/cmdline\x00" {
		t.Errorf("cmdline %q", out.String())
	}
}

func TestCancelEscalation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   syscall.Signal
		output string
	}{
		{"SIGINT ends it", "trap 'echo int; exit 4' INT; echo ready; while :; do sleep 0.05; done", 0, "int\n"},
		{"SIGTERM ends it", "trap 'echo int' INT; echo ready; while :; do sleep 0.05; done", syscall.SIGTERM, "int\n"},
		{"SIGKILL ends it", "trap 'echo int' INT; trap 'echo term' TERM; echo ready; while :; do sleep 0.05; done", syscall.SIGKILL, "int\nterm\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag := "PROC_TEST=" + uuid.NewString()
			out, ready := waitingFor("ready")
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-ready; cancel() }()
			res, err := run(t, ctx, proc.Cmd{Path: sh(t), Args: []string{"-c", tc.script}, Env: []string{tag, "PATH=" + os.Getenv("PATH")},
				Stdout: out, Grace: [2]time.Duration{300 * time.Millisecond, 300 * time.Millisecond}})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v", err)
			}
			if tc.want == 0 && (res.Signaled || res.ExitCode != 4) || tc.want != 0 && (!res.Signaled || res.Signal != tc.want) {
				t.Errorf("result %+v", res)
			}
			if !strings.HasSuffix(out.String(), tc.output) {
				t.Errorf("output %q", out.String())
			}
			eventuallyNone(t, tag)
		})
	}
}

func TestHardKillsAtOnce(t *testing.T) {
	out, ready := waitingFor("ready")
	hard := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-ready; cancel(); close(hard) }()
	// Grace periods of an hour: only Hard can end this within the guard.
	res, err := run(t, ctx, proc.Cmd{Path: sh(t), Args: []string{"-c", "trap '' INT TERM; echo ready; while :; do sleep 0.05; done"},
		Stdout: out, Grace: [2]time.Duration{time.Hour, time.Hour}, Hard: hard})
	if !errors.Is(err, context.Canceled) || !res.Signaled || res.Signal != syscall.SIGKILL {
		t.Errorf("%+v %v", res, err)
	}

	// Hard without cancellation.
	out, ready = waitingFor("ready")
	hard = make(chan struct{})
	go func() { <-ready; close(hard) }()
	res, err = run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "echo ready; while :; do sleep 0.05; done"}, Stdout: out, Hard: hard})
	if err != nil || res.Signal != syscall.SIGKILL {
		t.Errorf("%+v %v", res, err)
	}
}

func TestBackgroundProcesses(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run("keep="+strconv.FormatBool(keep), func(t *testing.T) {
			tag := "PROC_TEST=" + uuid.NewString()
			var out buffer
			// The background sleep holds stdout open.
			res, err := run(t, context.Background(), proc.Cmd{Path: sh(t), Args: []string{"-c", "sleep 1000 & echo started"},
				Env: []string{tag, "PATH=" + os.Getenv("PATH")}, Stdout: &out, KeepBackground: keep, OutputDelay: 200 * time.Millisecond})
			if err != nil || res.ExitCode != 0 || out.String() != "started\n" {
				t.Fatalf("%+v %v %q", res, err, out.String())
			}
			if res.OutputTimedOut != keep {
				t.Errorf("OutputTimedOut %v", res.OutputTimedOut)
			}
			if keep {
				if n := len(tagged(t, tag)); n != 1 {
					t.Fatalf("%d tagged processes, want the background sleep", n)
				}
				n, err := proc.KillTagged(tag)
				if err != nil || n != 1 {
					t.Errorf("KillTagged: %d %v", n, err)
				}
			}
			eventuallyNone(t, tag)
		})
	}
	if _, err := proc.KillTagged(""); err == nil {
		t.Error("KillTagged accepted an empty tag")
	}
}

func TestLookPath(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	write := func(p string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "tool"), 0o755)
	write(filepath.Join(other, "tool"), 0o755)
	write(filepath.Join(dir, "plain"), 0o644)
	write(filepath.Join(other, "plain"), 0o755)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/nonexistent:" + dir + "::" + other}
	for name, want := range map[string]string{
		"tool":  filepath.Join(dir, "tool"),
		"plain": filepath.Join(other, "plain"), // not executable in dir
	} {
		if got, err := proc.LookPath(name, env); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
	if _, err := proc.LookPath("adir", env); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("a directory was found: %v", err)
	}
	// Empty entries do not mean the current directory.
	t.Chdir(dir)
	if p, err := proc.LookPath("tool", []string{"PATH=:" + t.TempDir()}); err == nil {
		t.Errorf("found %s through an empty PATH entry", p)
	}
	// The step's PATH, not the agent's.
	t.Setenv("PATH", dir)
	if _, err := proc.LookPath("tool", []string{"PATH=" + t.TempDir()}); err == nil {
		t.Error("the agent's PATH was searched although the step has one")
	}
	if got, err := proc.LookPath("tool", []string{"HOME=/"}); err != nil || got != filepath.Join(dir, "tool") {
		t.Errorf("fallback to the agent's PATH: %q %v", got, err)
	}
}

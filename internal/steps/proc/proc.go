// Package proc runs a step's child process in its own process group, so that
// cancellation reaches every process the step started: SIGINT to the group,
// then SIGTERM, then SIGKILL, with the official agent's grace periods
// (ProcessInvoker: PROCESS_SIGINT_TIMEOUT 7.5 s, PROCESS_SIGTERM_TIMEOUT 2.5 s).
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Default grace periods after SIGINT and after SIGTERM.
const (
	DefaultSIGINTGrace  = 7500 * time.Millisecond
	DefaultSIGTERMGrace = 2500 * time.Millisecond
)

// Cmd is one process to run.
type Cmd struct {
	Path   string
	Args   []string // without argv[0]
	Dir    string
	Env    []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Grace: wait after SIGINT, then after SIGTERM. Zero values take the defaults.
	Grace [2]time.Duration
	// OutputDelay bounds how long to wait for output pipes after the process
	// exited (background children may hold them open). Default 5 s.
	OutputDelay time.Duration
}

// Result of a run.
type Result struct {
	ExitCode int  // -1 when killed by a signal
	Signaled bool // ended by a signal (including our own escalation)
}

// Run starts c and waits for it. The error is non-nil when the process could
// not be started, or when ctx ended it (then it wraps ctx.Err()); a non-zero
// exit code alone is not an error.
func Run(ctx context.Context, c Cmd) (Result, error) {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	cmd.Stdin = c.Stdin
	cmd.Stdout = c.Stdout
	cmd.Stderr = c.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = c.OutputDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	grace := c.Grace
	if grace[0] <= 0 {
		grace[0] = DefaultSIGINTGrace
	}
	if grace[1] <= 0 {
		grace[1] = DefaultSIGTERMGrace
	}
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", c.Path, err)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	var waitErr error
	canceled := false
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		canceled = true
		waitErr = escalate(pgid, done, grace)
	}
	// Whatever the step left running in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)

	res := Result{ExitCode: cmd.ProcessState.ExitCode()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signaled = true
	}
	if canceled {
		return res, fmt.Errorf("%s: %w", c.Path, context.Cause(ctx))
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) && !errors.Is(waitErr, exec.ErrWaitDelay) {
		return res, fmt.Errorf("wait for %s: %w", c.Path, waitErr)
	}
	return res, nil
}

// escalate sends SIGINT, SIGTERM, SIGKILL to the group until the leader exits.
func escalate(pgid int, done <-chan error, grace [2]time.Duration) error {
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			break
		}
		t := time.NewTimer(grace[i])
		select {
		case err := <-done:
			t.Stop()
			return err
		case <-t.C:
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return <-done
}

// LookPath finds an executable on the PATH given in env (the step's PATH, not
// the agent's), falling back to the agent's own when env has none.
func LookPath(name string, env []string) (string, error) {
	path := ""
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			path = kv[5:]
		}
	}
	if path == "" {
		path = os.Getenv("PATH")
	}
	for _, dir := range filepathSplit(path) {
		if dir == "" {
			dir = "."
		}
		p := dir + string(os.PathSeparator) + name
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

func filepathSplit(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] == os.PathListSeparator {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

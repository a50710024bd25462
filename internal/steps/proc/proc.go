// Package proc runs a step's child process in its own process group, so that
// cancellation reaches every process the step started: SIGINT to the group,
// then SIGTERM, then SIGKILL, with the official agent's grace periods
// (ProcessInvoker: PROCESS_SIGINT_TIMEOUT 7.5 s, PROCESS_SIGTERM_TIMEOUT 2.5 s).
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Default grace periods after SIGINT and after SIGTERM.
const (
	DefaultSIGINTGrace  = 7500 * time.Millisecond
	DefaultSIGTERMGrace = 2500 * time.Millisecond
)

// DefaultOutputDelay bounds the wait for output after the process exited.
const DefaultOutputDelay = 5 * time.Second

// Cmd is one process to run.
type Cmd struct {
	Path string
	// Argv0, when set, is passed as argv[0] instead of Path (a shell passes
	// the name as typed; multi-call binaries such as busybox dispatch on it).
	Argv0  string
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
	// Hard, when closed, kills the whole group at once with SIGKILL, also in
	// the middle of a graceful cancellation.
	Hard <-chan struct{}
	// KeepBackground leaves the group's other processes running when the
	// leader exits by itself, as the official agent does: a step may start a
	// server for later steps. Whoever sets it must clean up at job end (see
	// KillTagged). After cancellation the group is always killed.
	KeepBackground bool
}

// Result of a run.
type Result struct {
	ExitCode int            // -1 when killed by a signal
	Signaled bool           // ended by a signal (including our own escalation)
	Signal   syscall.Signal // the signal, when Signaled
	// OutputTimedOut: the output pipes were still open OutputDelay after the
	// process exited (a background child inherited them); what it wrote
	// later was dropped.
	OutputTimedOut bool
}

// Run starts c and waits for it. The error is non-nil when the process could
// not be started, or when ctx ended it (then it wraps ctx.Err()); a non-zero
// exit code alone is not an error.
func Run(ctx context.Context, c Cmd) (Result, error) {
	cmd := exec.Command(c.Path, c.Args...)
	if c.Argv0 != "" {
		cmd.Args[0] = c.Argv0
	}
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	cmd.Stdin = c.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	delay := c.OutputDelay
	if delay <= 0 {
		delay = DefaultOutputDelay
	}
	// Stdin copying (a non-file reader) is bounded the same way.
	cmd.WaitDelay = delay
	grace := c.Grace
	if grace[0] <= 0 {
		grace[0] = DefaultSIGINTGrace
	}
	if grace[1] <= 0 {
		grace[1] = DefaultSIGTERMGrace
	}

	// Our own pipes instead of os/exec's: Wait then returns as soon as the
	// leader exits, so leftovers can be killed before waiting for output.
	var out outputs
	var err error
	if cmd.Stdout, cmd.Stderr, err = out.open(c.Stdout, c.Stderr); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", c.Path, err)
	}
	if err := cmd.Start(); err != nil {
		out.abort()
		return Result{ExitCode: -1}, fmt.Errorf("start %s: %w", c.Path, err)
	}
	exited := make(chan struct{})
	out.start(exited)
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		close(exited)
		done <- err
	}()

	var waitErr error
	canceled, killed := false, false
	select {
	case waitErr = <-done:
	case <-ctx.Done():
		canceled = true
		waitErr = escalate(pgid, done, grace, c.Hard)
	case <-c.Hard:
		killed = true
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		waitErr = <-done
	}
	if canceled || killed || !c.KeepBackground {
		// Whatever the step left running in its group goes with it.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	timedOut := out.wait(delay)

	res := Result{ExitCode: cmd.ProcessState.ExitCode(), OutputTimedOut: timedOut}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signaled = true
		res.Signal = ws.Signal()
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
func escalate(pgid int, done <-chan error, grace [2]time.Duration, hard <-chan struct{}) error {
signals:
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			break
		}
		t := time.NewTimer(grace[i])
		select {
		case err := <-done:
			t.Stop()
			return err
		case <-hard:
			t.Stop()
			break signals
		case <-t.C:
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return <-done
}

// outputs copies the child's stdout and stderr through pipes we own.
//
// The read ends are plain non-blocking descriptors that the copying
// goroutines wait on with poll(2), not files in Go's network poller: a
// process printing a line per write(2) would otherwise wake the poller once
// per line even while the reader is not waiting (see copy), which costs more
// CPU than handling the line.
type outputs struct {
	pipes []*outPipe
	// stop is closed when the rest of the output is to be dropped; closing
	// the write end of the wake pipe ends every poll on a read end.
	stop       chan struct{}
	wakeR      int
	wakeW      *os.File
	wakeClosed bool
}

type outPipe struct {
	r    int      // read end: ours, non-blocking
	w    *os.File // write end: the child's
	dst  io.Writer
	done chan struct{}
}

// open returns the files to hand the child. A destination that is already a
// file is passed through; one writer given for both streams gets one pipe,
// so its writes stay serialized.
func (o *outputs) open(stdout, stderr io.Writer) (io.Writer, io.Writer, error) {
	o.wakeR = -1
	so, err := o.pipeFor(stdout)
	if err != nil {
		o.abort()
		return nil, nil, err
	}
	if same(stdout, stderr) {
		return so, so, nil
	}
	se, err := o.pipeFor(stderr)
	if err != nil {
		o.abort()
		return nil, nil, err
	}
	return so, se, nil
}

func (o *outputs) pipeFor(w io.Writer) (io.Writer, error) {
	if w == nil {
		return nil, nil
	}
	if f, ok := w.(*os.File); ok {
		return f, nil
	}
	if o.stop == nil {
		r, w, err := pipe()
		if err != nil {
			return nil, err
		}
		o.stop, o.wakeR, o.wakeW = make(chan struct{}), r, w
	}
	r, pw, err := pipe()
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(r, true); err != nil {
		syscall.Close(r)
		pw.Close()
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	o.pipes = append(o.pipes, &outPipe{r: r, w: pw, dst: w, done: make(chan struct{})})
	return pw, nil
}

// pipe returns a pipe's read end as a descriptor and its write end as a
// blocking file, both close-on-exec (the child gets the write end by dup2).
func pipe() (int, *os.File, error) {
	var fd [2]int
	// ForkLock: no process started meanwhile may inherit the pipe (pipe2
	// with O_CLOEXEC is not on every Unix).
	syscall.ForkLock.RLock()
	err := syscall.Pipe(fd[:])
	if err == nil {
		syscall.CloseOnExec(fd[0])
		syscall.CloseOnExec(fd[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, nil, fmt.Errorf("output pipe: %w", err)
	}
	return fd[0], os.NewFile(uintptr(fd[1]), "|1"), nil
}

func same(a, b io.Writer) bool {
	if a == nil || b == nil {
		return false
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

func (o *outputs) abort() {
	for _, p := range o.pipes {
		syscall.Close(p.r)
		p.w.Close()
	}
	o.closeWake()
	if o.wakeR >= 0 {
		syscall.Close(o.wakeR)
	}
}

func (o *outputs) closeWake() {
	if o.wakeW != nil && !o.wakeClosed {
		o.wakeClosed = true
		close(o.stop)
		o.wakeW.Close()
	}
}

// start closes our copies of the write ends and copies until EOF. exited
// is closed when the process has exited.
func (o *outputs) start(exited <-chan struct{}) {
	for _, p := range o.pipes {
		p.w.Close()
		go func(p *outPipe) {
			defer close(p.done)
			p.copy(exited, o.stop, o.wakeR)
		}(p)
	}
}

const (
	// readSize is the pipe read buffer: a Linux pipe holds 64 KiB.
	readSize = 64 << 10
	// smallRead: a read this short means the process writes little at a
	// time, often one line per write(2). Reading again at once would take
	// the next line alone, a wake-up of the reader per line that costs more
	// CPU than handling the line; waiting coalesceDelay first lets lines
	// pile up in the pipe, so that they are handled a batch per wake-up.
	// A few hundred lines arrive in that time from a shell loop, and a
	// console line is late by at most that much.
	smallRead     = 4 << 10
	coalesceDelay = time.Millisecond
	// A read after the wait that fills half the buffer means the process
	// writes fast enough that waiting could leave it blocked on a full pipe:
	// the next this many short reads do not wait.
	noCoalesceReads = 256
)

// copy reads the pipe until EOF or stop and writes what it reads to dst.
func (p *outPipe) copy(exited, stop <-chan struct{}, wake int) {
	buf := make([]byte, readSize)
	waited, skip := false, 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := syscall.Read(p.r, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if !readable(p.r, wake) {
				return
			}
			continue
		case err != nil || n <= 0: // EOF
			return
		}
		if _, err := p.dst.Write(buf[:n]); err != nil {
			return
		}
		if waited && n >= readSize/2 {
			skip = noCoalesceReads
		}
		waited = false
		if n >= smallRead {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		t := time.NewTimer(coalesceDelay)
		select {
		case <-t.C:
			waited = true
		case <-exited:
			// Nothing more will come but what is in the pipe (and what a
			// background child writes): read it now and don't wait again.
			t.Stop()
			skip = math.MaxInt
		case <-stop:
			t.Stop()
			return
		}
	}
}

// readable waits until fd can be read (data, EOF or an error) and reports
// true, or until the wake pipe is closed and reports false.
func readable(fd, wake int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || fds[1].Revents != 0 {
			return false
		}
		if fds[0].Revents != 0 {
			return true
		}
	}
}

// wait waits for all output up to delay, then drops the rest. It reports
// whether it had to give up.
func (o *outputs) wait(delay time.Duration) bool {
	t := time.NewTimer(delay)
	defer t.Stop()
	timedOut := false
	for _, p := range o.pipes {
		select {
		case <-p.done:
		case <-t.C:
			timedOut = true
		}
		if timedOut {
			break
		}
	}
	o.closeWake() // ends a copy still waiting for output
	for _, p := range o.pipes {
		<-p.done
		syscall.Close(p.r) // only now: the copy no longer reads it
	}
	if o.wakeR >= 0 {
		syscall.Close(o.wakeR)
	}
	return timedOut
}

// LookPath finds an executable on the PATH given in env (the step's PATH, not
// the agent's), falling back to the agent's own when env has none. Empty
// entries are skipped, as the task library's which() does: the current
// directory is never searched implicitly.
func LookPath(name string, env []string) (string, error) {
	path, found := "", false
	for _, kv := range env {
		if len(kv) >= 5 && kv[:5] == "PATH=" {
			path, found = kv[5:], true
		}
	}
	if !found {
		path = os.Getenv("PATH")
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

// KillTagged sends SIGKILL to every process of this user whose environment
// holds the entry tag ("VSTS_PROCESS_LOOKUP_ID=vsts_<guid>"), the way the
// official worker ends what a job's steps left running (JobExtension
// FinalizeJob). It returns how many it signalled.
func KillTagged(tag string) (int, error) {
	if tag == "" {
		return 0, errors.New("kill tagged processes: empty tag")
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("kill processes tagged %q: %w", tag, err)
	}
	self := os.Getpid()
	want := []byte(tag)
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue // gone, or not ours
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					n++
				}
				break
			}
		}
	}
	return n, nil
}

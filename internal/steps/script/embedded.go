package script

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"mvdan.cc/sh/moreinterp/coreutils"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
)

// msgEmbedded is logged once per step that runs without bash.
const msgEmbedded = "bash was not found on this step's PATH, so goagent runs the script in its embedded POSIX shell interpreter (mvdan.cc/sh). " +
	"Its limits: besides the shell builtins it has only cat, ls, cp, mv, rm, mkdir, touch, chmod, find, xargs, base64, mktemp, shasum, tar and gzip built in (mvdan.cc/sh/moreinterp), and sleep; " +
	"every other command (grep, sed, curl, …) must exist in the image; " +
	"no job control; trap handles only EXIT and ERR (no signal traps); $$ and $! are not process ids; " +
	"some bash extensions are missing or differ. Use an image that has bash for full compatibility."

// shellNames are the interpreters the embedded shell stands in for, both
// for the step's script and for "bash file"/"sh -c …" inside it.
var shellNames = map[string]bool{"sh": true, "bash": true}

// runEmbedded runs the script file without a system shell. A script whose
// shebang names another interpreter that exists (python3, say) is executed
// by it, as "exec" would.
func runEmbedded(ctx context.Context, ex *steps.Exec, flags []string, file, wd string, env []string, failOnStderr bool) (outcome, error) {
	if interpPath, interpArgs, ok := shebangInterpreter(file, env); ok {
		return runTool(ctx, ex, interpPath, append(interpArgs, file), wd, env, failOnStderr)
	}
	ex.Console.Info(msgEmbedded)
	ex.Console.Info("[command](embedded shell) " + strings.Join(append(append([]string(nil), flags...), file), " "))

	var stderr io.Writer = ex.Stderr
	var sl *stderrLog
	if failOnStderr {
		sl = &stderrLog{dst: ex.Stderr}
		stderr = sl
	}
	// Real pipes, so that external commands write straight to them as they
	// would under bash, and writes from background jobs stay serialized.
	out, err := newPipeCopy(ex.Stdout)
	if err != nil {
		return outcome{}, fmt.Errorf("embedded shell: %w", err)
	}
	errp, err := newPipeCopy(stderr)
	if err != nil {
		out.close(0)
		return outcome{}, fmt.Errorf("embedded shell: %w", err)
	}
	devnull, err := emptyInput()
	if err != nil {
		out.close(0)
		errp.close(0)
		return outcome{}, fmt.Errorf("embedded shell: %w", err)
	}
	defer devnull.Close()

	sh := &shell{grace: ex.KillGrace, hard: make(chan struct{})}
	var hardOnce sync.Once
	killAll := func() { hardOnce.Do(func() { close(sh.hard) }) }
	scriptDone := make(chan struct{})
	defer close(scriptDone)
	go func() {
		select {
		case <-ex.Hard:
			killAll()
		case <-scriptDone:
		}
	}()
	runCtx, cancelRun := context.WithCancel(ctx)
	stdoutLW, stderrLW := &lineWriter{f: out.w}, &lineWriter{f: errp.w}
	code := sh.run(runCtx, shellInvocation{
		name:   "bash",
		args:   append(append([]string(nil), flags...), file),
		dir:    wd,
		env:    env,
		stdin:  devnull,
		stdout: stdoutLW,
		stderr: stderrLW,
	})
	if ctx.Err() == nil {
		// The script ended: what it left running goes with it (unlike
		// bash, whose background processes a tagged job may keep).
		killAll()
	}
	cancelRun()
	sh.end()
	stdoutLW.Flush()
	stderrLW.Flush()

	outTimedOut := out.close(stdioDelay)
	errTimedOut := errp.close(stdioDelay)
	_, _ = io.WriteString(ex.Stdout, "\n")
	if outTimedOut || errTimedOut {
		ex.Console.Info(fmt.Sprintf(msgStdioNotClose, int(stdioDelay/time.Second), "(embedded shell)"))
	}
	if ctx.Err() != nil {
		return outcome{}, canceled(ctx, "the embedded shell")
	}
	o := outcome{exitCode: code}
	if sl != nil {
		o.stderr, o.chunks = sl.result()
	}
	return o, nil
}

// shebangInterpreter reads the script's "#!" line and returns the program
// to run it with, when that is not a shell we emulate and it exists:
// "#!/usr/bin/python3 -u" → /usr/bin/python3 [-u]; "#!/usr/bin/env python3"
// → python3 looked up on the step's PATH (/usr/bin/env itself need not exist).
func shebangInterpreter(file string, env []string) (string, []string, bool) {
	f, err := os.Open(file)
	if err != nil {
		return "", nil, false
	}
	defer f.Close()
	line, err := bufio.NewReader(io.LimitReader(f, 4096)).ReadString('\n')
	if err != nil && line == "" {
		return "", nil, false
	}
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "#!")
	if !ok {
		return "", nil, false
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, false
	}
	prog, args := fields[0], []string(nil)
	if len(fields) > 1 {
		// Linux passes everything after the interpreter as one argument.
		args = []string{strings.Join(fields[1:], " ")}
	}
	if filepath.Base(prog) == "env" && len(fields) > 1 {
		envArgs := fields[1:]
		if envArgs[0] == "-S" {
			envArgs = envArgs[1:]
		}
		if len(envArgs) == 0 || shellNames[envArgs[0]] {
			return "", nil, false
		}
		p, err := proc.LookPath(envArgs[0], env)
		if err != nil {
			return "", nil, false
		}
		return p, envArgs[1:], true
	}
	if shellNames[filepath.Base(prog)] {
		return "", nil, false
	}
	if fi, err := os.Stat(prog); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", nil, false
	}
	return prog, args, true
}

// lineWriter hands the interpreter's builtins a line-buffered view of a
// pipe: they write a line in pieces ("bad", "\n"), and one write per line
// keeps failOnStderr's per-write issues as bash's would be. External
// commands get the pipe itself, after a flush.
type lineWriter struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
}

const lineWriterMax = 4096

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	n := bytes.LastIndexByte(w.buf, '\n') + 1
	if len(w.buf) > lineWriterMax {
		n = len(w.buf)
	}
	if n > 0 {
		_, err := w.f.Write(w.buf[:n])
		w.buf = append(w.buf[:0], w.buf[n:]...)
		if err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Flush writes out a pending partial line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		_, _ = w.f.Write(w.buf)
		w.buf = w.buf[:0]
	}
}

// direct flushes a lineWriter and returns its file, so a child process
// writes to the pipe in order with what the builtins wrote before.
func direct(w io.Writer) io.Writer {
	if lw, ok := w.(*lineWriter); ok {
		lw.Flush()
		return lw.f
	}
	return w
}

// pipeCopy is an os.Pipe whose read end is copied to a writer.
type pipeCopy struct {
	r, w *os.File
	done chan struct{}
}

func newPipeCopy(dst io.Writer) (*pipeCopy, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &pipeCopy{r: r, w: w, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_, _ = io.Copy(dst, r)
	}()
	return p, nil
}

// close closes the write end and waits up to delay for what is still in
// flight; it reports whether another process still held the pipe open.
func (p *pipeCopy) close(delay time.Duration) bool {
	p.w.Close()
	t := time.NewTimer(delay)
	defer t.Stop()
	timedOut := false
	select {
	case <-p.done:
	case <-t.C:
		timedOut = true
	}
	p.r.Close()
	<-p.done
	return timedOut
}

// shell runs scripts in mvdan.cc/sh and external commands in their own
// process groups through proc.
type shell struct {
	grace [2]time.Duration
	hard  chan struct{} // closed: kill every process at once

	mu    sync.Mutex
	ended bool // no new processes: the step is over
	procs sync.WaitGroup
}

// start registers a process about to start; false once the step is over
// (a background job of the interpreter may still be running).
func (s *shell) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.procs.Add(1)
	return true
}

// end refuses new processes and waits for the running ones.
func (s *shell) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
	s.procs.Wait()
}

// shellInvocation is one "bash [options] [file | -c string] [args]".
type shellInvocation struct {
	name           string // argv[0]: "bash" or "sh"
	args           []string
	dir            string
	env            []string
	stdin          io.Reader
	stdout, stderr io.Writer
}

// run interprets a bash/sh command line and returns its exit status.
func (s *shell) run(ctx context.Context, inv shellInvocation) int {
	var opts []string
	haveCommand := false
	args := inv.args
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if a == "-" || len(a) < 2 || (a[0] != '-' && a[0] != '+') {
			break
		}
		args = args[1:]
		if strings.HasPrefix(a, "--") {
			switch a {
			case "--noprofile", "--norc", "--login", "--posix", "--noediting":
				continue
			}
			fmt.Fprintf(inv.stderr, "%s: %s: invalid option\n", inv.name, a)
			return 2
		}
		for _, f := range a[1:] {
			switch {
			case f == 'c' && a[0] == '-':
				haveCommand = true
			case f == 'l' || f == 's' || f == 'i':
				// login/stdin/interactive: nothing to do without a terminal
			case f == 'o':
				if len(args) == 0 {
					fmt.Fprintf(inv.stderr, "%s: %co: option requires an argument\n", inv.name, a[0])
					return 2
				}
				opts = append(opts, string(a[0])+"o", args[0])
				args = args[1:]
			default:
				opts = append(opts, string(a[0])+string(f))
			}
		}
	}

	var src io.Reader
	name := inv.name
	switch {
	case haveCommand:
		if len(args) == 0 {
			fmt.Fprintf(inv.stderr, "%s: -c: option requires an argument\n", inv.name)
			return 2
		}
		src = strings.NewReader(args[0])
		args = args[1:]
		if len(args) > 0 {
			name, args = args[0], args[1:]
		}
	case len(args) > 0:
		name = args[0]
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(inv.dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(inv.stderr, "%s: %s: %v\n", inv.name, name, unwrapStart(err))
			return 127
		}
		src = bytes.NewReader(b)
		args = args[1:]
	default:
		src = inv.stdin
		if src == nil {
			src = strings.NewReader("")
		}
	}

	prog, err := syntax.NewParser().Parse(src, name)
	if err != nil {
		fmt.Fprintf(inv.stderr, "%s: %v\n", inv.name, err)
		return 2 // bash's status for a syntax error
	}
	params := append(append([]string(nil), opts...), "--")
	params = append(params, args...)
	r, err := interp.New(
		interp.Env(expand.ListEnviron(inv.env...)),
		interp.Dir(inv.dir),
		interp.StdIO(inv.stdin, inv.stdout, inv.stderr),
		interp.Params(params...),
		interp.ExecHandlers(func(interp.ExecHandlerFunc) interp.ExecHandlerFunc { return s.exec }),
	)
	if err != nil {
		fmt.Fprintf(inv.stderr, "%s: %v\n", inv.name, err)
		return 2
	}
	// A non-interactive bash first sources $BASH_ENV (Bash@3 bashEnvValue).
	if inv.name == "bash" {
		if v, _ := lookupEnv(inv.env, "BASH_ENV"); v != "" {
			if code, stop := s.source(ctx, r, inv.stderr); stop {
				return code
			}
		}
	}
	return exitCode(r.Run(ctx, prog), inv.stderr)
}

// source runs `. "$BASH_ENV"` in r; stop reports that it ended the shell.
func (s *shell) source(ctx context.Context, r *interp.Runner, stderr io.Writer) (int, bool) {
	f, err := syntax.NewParser().Parse(strings.NewReader(`. "$BASH_ENV"`), "BASH_ENV")
	if err != nil {
		return 2, true
	}
	err = r.Run(ctx, f.Stmts[0])
	if r.Exited() || ctx.Err() != nil {
		return exitCode(err, stderr), true
	}
	return 0, false
}

// exitCode maps interp.Runner.Run's result to a status.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if code, ok := interp.IsExitStatus(err); ok {
		return int(code)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 130
	}
	fmt.Fprintln(stderr, err)
	return 1
}

// exec is the interpreter's ExecHandler: every external command runs in its
// own process group through proc, so cancellation and the end of the script
// reach it and whatever it started.
func (s *shell) exec(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	if err := ctx.Err(); err != nil {
		return err
	}
	env := exportedEnv(hc.Env)
	stdin := hc.Stdin
	if f, ok := stdin.(*os.File); ok && f == nil {
		stdin = nil
	}
	path, err := interp.LookPathDir(hc.Dir, hc.Env, args[0])
	if err != nil {
		if !strings.Contains(args[0], "/") && shellNames[args[0]] {
			// "bash file" or "sh -c …" with no shell in the image.
			code := s.run(ctx, shellInvocation{name: args[0], args: args[1:], dir: hc.Dir, env: env, stdin: stdin, stdout: hc.Stdout, stderr: hc.Stderr})
			return statusOrCancel(ctx, code)
		}
		// Scratch images have no coreutils: the common ones are built in,
		// used only when the image has no such command.
		if args[0] == "sleep" {
			return sleepCommand(ctx, hc.Stderr, args[1:])
		}
		return coreutils.ExecHandler(func(ctx context.Context, args []string) error {
			fmt.Fprintf(hc.Stderr, "%s: command not found\n", args[0])
			return interp.ExitStatus(127)
		})(ctx, args)
	}
	if !s.start() {
		return interp.ExitStatus(137)
	}
	res, err := proc.Run(ctx, proc.Cmd{
		Path:   path,
		Argv0:  args[0],
		Args:   args[1:],
		Dir:    hc.Dir,
		Env:    env,
		Stdin:  stdin,
		Stdout: direct(hc.Stdout),
		Stderr: direct(hc.Stderr),
		Grace:  s.grace,
		Hard:   s.hard,
	})
	s.procs.Done()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, syscall.ENOEXEC) {
			// No shebang: like every shell, run it as a shell script.
			code := s.run(ctx, shellInvocation{name: "sh", args: append([]string{path}, args[1:]...), dir: hc.Dir, env: env, stdin: stdin, stdout: hc.Stdout, stderr: hc.Stderr})
			return statusOrCancel(ctx, code)
		}
		if res.ExitCode == -1 && !res.Signaled {
			fmt.Fprintf(hc.Stderr, "%s: %v\n", args[0], unwrapStart(err))
			return interp.ExitStatus(126)
		}
		return err
	}
	if res.Signaled {
		return interp.ExitStatus(128 + uint8(res.Signal))
	}
	if res.ExitCode != 0 {
		return interp.ExitStatus(uint8(res.ExitCode))
	}
	return nil
}

func statusOrCancel(ctx context.Context, code int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if code == 0 {
		return nil
	}
	return interp.ExitStatus(uint8(code))
}

// exportedEnv is the environment a child gets: the exported variables.
func exportedEnv(env expand.Environ) []string {
	var out []string
	for name, vr := range env.Each {
		if vr.Exported && vr.IsSet() && vr.Kind == expand.String {
			out = append(out, name+"="+vr.Str)
		}
	}
	return out
}

// emptyInput is the scripts' stdin: /dev/null, or, in an empty root with no
// /dev (a scratch image run without a runtime's devices), a pipe whose write
// end is closed — reading it gives EOF just the same.
func emptyInput() (*os.File, error) {
	if f, err := os.Open(os.DevNull); err == nil {
		return f, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	w.Close()
	return r, nil
}

// Command goagent is an Azure Pipelines self-hosted agent: one static binary
// that registers with an agent pool using a Microsoft Entra identity (or a
// PAT), listens for jobs, and runs script, bash, pwsh and checkout steps
// natively. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"

	// CA roots for scratch images with no system bundle.
	_ "golang.org/x/crypto/x509roots/fallback"
)

// Set with -ldflags by the Makefile.
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `goagent — an Azure Pipelines agent in one static binary

Usage:
  goagent run [--once] [flags]      register (or reuse the registration), listen, run jobs
  goagent register [--placeholder]  register only; --placeholder leaves an offline agent for KEDA
  goagent remove                    unregister and delete the local state
  goagent check                     resolve the identity, get a token, read the pool: "ready" or why not
  goagent exec FILE.yml [flags]     run a pipeline locally through the built-in Azure DevOps emulator
  goagent devserver [flags]         run the Azure DevOps emulator alone
  goagent version                   print version information

Run 'goagent COMMAND -h' for a command's flags. Configuration: flag > environment > default.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exit statuses (DESIGN.md)
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitSIGINT  = 130
	exitSIGTERM = 143
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	if len(cmd) > 1 && cmd[0] == '-' {
		// Bare flags imply run, as with the official agent.
		if cmd == "-h" || cmd == "--help" || cmd == "-help" {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		cmd, rest = "run", args
	}
	sig := newSignals()
	defer sig.stop()
	var err error
	switch cmd {
	case "run":
		err = cmdRun(sig, rest, stdout, stderr, false)
	case "register":
		err = cmdRun(sig, rest, stdout, stderr, true)
	case "remove":
		err = cmdRemove(sig.ctx, rest, stdout, stderr)
	case "check":
		err = cmdCheck(sig.ctx, rest, stdout, stderr)
	case "exec":
		err = cmdExec(sig, rest, stdout, stderr)
	case "devserver":
		err = cmdDevserver(sig.ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "goagent %s (commit %s, %s, %s/%s), reports agent version %s\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, DefaultAgentVersion)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "goagent: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	return exitStatus(err, sig, stderr)
}

func exitStatus(err error, sig *signals, stderr io.Writer) int {
	var ue usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "goagent: %v\n", err)
		return exitUsage
	case err != nil && !errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "goagent: %v\n", err)
		return exitFailure
	}
	switch sig.received() {
	case syscall.SIGINT:
		return exitSIGINT
	case syscall.SIGTERM:
		return exitSIGTERM
	}
	if err != nil {
		fmt.Fprintf(stderr, "goagent: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// signals turns the first SIGINT/SIGTERM into a cancelled context and the
// second into onSecond (clean up at once).
type signals struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	ch     chan os.Signal
	done   chan struct{}
	got    os.Signal
	gotCh  chan struct{}

	mu       sync.Mutex
	onSecond func()
	workDone bool // finished() was called before any signal
}

func (s *signals) setOnSecond(f func()) {
	s.mu.Lock()
	s.onSecond = f
	s.mu.Unlock()
}

func newSignals() *signals {
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &signals{ctx: ctx, cancel: cancel, ch: make(chan os.Signal, 2), done: make(chan struct{}), gotCh: make(chan struct{})}
	signal.Notify(s.ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for {
			select {
			case sg := <-s.ch:
				n++
				if n == 1 {
					s.got = sg
					close(s.gotCh)
					cancel(fmt.Errorf("received %v", sg))
				} else {
					s.mu.Lock()
					f := s.onSecond
					s.mu.Unlock()
					if f != nil {
						f()
					}
				}
			case <-s.done:
				return
			}
		}
	}()
	return s
}

func (s *signals) received() os.Signal {
	s.mu.Lock()
	done := s.workDone
	s.mu.Unlock()
	if done {
		return nil
	}
	select {
	case <-s.gotCh:
		return s.got
	default:
		return nil
	}
}

// finished marks the command's work as done: a signal that comes later (to
// close exec's web view, say) only ends the process and does not turn the
// exit status into 130/143.
func (s *signals) finished() {
	select {
	case <-s.gotCh:
		return // interrupted before the work was done
	default:
	}
	s.mu.Lock()
	s.workDone = true
	s.mu.Unlock()
}

func (s *signals) stop() {
	signal.Stop(s.ch)
	close(s.done)
}

// newLogger builds the agent's diagnostics logger (stderr).
func newLogger(w io.Writer, format string, debug bool, secrets []string) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(newRedactHandler(h, secrets))
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/goagent-dev/goagent/internal/localrun"
	"github.com/goagent-dev/goagent/internal/webui"
)

const execUsage = `usage: goagent exec FILE.yml [flags]

Runs a pipeline on this machine through the built-in Azure DevOps emulator,
with this agent, over HTTPS on 127.0.0.1 — no Azure account needed. The git
repository holding FILE.yml is the pipeline's self repository (its HEAD
commit is checked out); repositories under resources.repositories are looked
for beside it, named like the repository, unless --repo says where.

Flags (may come before or after FILE.yml):
  --var NAME=VALUE      set a variable, overriding the pipeline's (repeatable)
  --secret NAME=VALUE   set a secret variable, masked in all output (repeatable);
                        --secret NAME takes the value from the environment variable NAME
  --repo ALIAS=PATH     the local clone of repository resource ALIAS (repeatable)
  --work DIR            the agent's work directory (default: a temporary directory,
                        removed afterwards unless --keep)
  --keep                keep the temporary work directory
  --pool-dir DIR        a persistent home for the run's agents: DIR/local-agent/_work
                        is reused across runs, like a long-lived self-hosted agent
                        (incremental fetches; workspace clean applies); excludes --work
  --summary FILE        also write the run's summary as JSON to FILE
  --color WHEN          auto (default: when stdout is a terminal and NO_COLOR is unset),
                        always or never
  --debug               show the agent's and the emulator's diagnostics on stderr
  --ui                  serve a live web view of the run (timeline and console) and print its URL
  --ui-addr ADDR        where the web view listens (default 127.0.0.1:0; loopback unless you say otherwise)
  --ui-wait DURATION    after the run, keep the web view up this long (default: until Ctrl-C; 0: don't wait)

Exit status: 0 when the pipeline succeeded (with or without issues), 1 when it
failed or could not run, 2 for usage errors, 130 after Ctrl-C (the running job
is canceled and reported first; a second Ctrl-C stops its processes at once).
`

// keyValues is a repeatable NAME=VALUE flag.
type keyValues struct {
	flag    string
	m       map[string]string
	order   []string
	fromEnv bool // NAME alone reads the environment variable NAME
	// err is the first malformed value. Set does not return it: the flag
	// package would quote the raw value, which may be a secret.
	err error
}

func (k *keyValues) String() string { return strings.Join(k.order, ",") }

func (k *keyValues) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	name = strings.TrimSpace(name)
	if !ok && k.fromEnv {
		env, found := os.LookupEnv(name)
		if !found {
			k.fail(fmt.Errorf("%s %s: no environment variable %s to take the value from (or write %s=VALUE)", k.flag, name, name, name))
			return nil
		}
		value, ok = env, true
	}
	if !ok || name == "" {
		k.fail(fmt.Errorf("%s %q: want NAME=VALUE", k.flag, redactValue(v)))
		return nil
	}
	if k.m == nil {
		k.m = map[string]string{}
	}
	if _, dup := k.m[name]; !dup {
		k.order = append(k.order, name)
	}
	k.m[name] = value
	return nil
}

func (k *keyValues) fail(err error) {
	if k.err == nil {
		k.err = err
	}
}

// redactValue keeps a malformed flag's name for the message, never a value.
func redactValue(v string) string {
	if name, _, ok := strings.Cut(v, "="); ok {
		return name + "=…"
	}
	return v
}

// cmdExec runs a pipeline locally through the emulator.
func cmdExec(sig *signals, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("goagent exec", flag.ContinueOnError)
	// Errors are returned (and printed once, by exitStatus); -h prints the
	// usage below.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	vars := &keyValues{flag: "--var"}
	secrets := &keyValues{flag: "--secret", fromEnv: true}
	repos := &keyValues{flag: "--repo"}
	fs.Var(vars, "var", "")
	fs.Var(secrets, "secret", "")
	fs.Var(repos, "repo", "")
	work := fs.String("work", "", "")
	keep := fs.Bool("keep", false, "")
	poolDir := fs.String("pool-dir", "", "")
	summaryFile := fs.String("summary", "", "")
	color := fs.String("color", "auto", "")
	debug := fs.Bool("debug", false, "")
	ui := fs.Bool("ui", false, "")
	uiAddr := fs.String("ui-addr", "", "")
	uiWait := fs.String("ui-wait", "", "")

	// Flags may follow the file, as in `goagent exec hello.yml --var x=1`.
	var positional []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, execUsage)
				return err
			}
			return usageError{fmt.Errorf("exec: %w (see goagent exec -h)", err)}
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	for _, k := range []*keyValues{vars, secrets, repos} {
		if k.err != nil {
			return usageError{fmt.Errorf("exec: %w", k.err)}
		}
	}
	switch {
	case len(positional) == 0:
		return usageError{errors.New("exec: no pipeline file: goagent exec FILE.yml (see goagent exec -h)")}
	case len(positional) > 1:
		return usageError{fmt.Errorf("exec: one pipeline file at a time, got %q", positional)}
	case *work != "" && *poolDir != "":
		return usageError{errors.New("exec: --work and --pool-dir exclude each other: --work is this run's work directory, --pool-dir a persistent home for the agents")}
	}
	useColor := false
	switch *color {
	case "auto":
		if f, ok := stdout.(*os.File); ok && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb" {
			useColor = term.IsTerminal(int(f.Fd()))
		}
	case "always":
		useColor = true
	case "never":
	default:
		return usageError{fmt.Errorf("exec: --color %q: want auto, always or never", *color)}
	}
	if _, err := os.Stat(positional[0]); err != nil {
		return usageError{fmt.Errorf("exec: pipeline file: %w", err)}
	}

	var secretValues []string
	for _, v := range secrets.m {
		secretValues = append(secretValues, v)
	}
	log := newLogger(stderr, "text", *debug, secretValues)
	if !*debug {
		// The console is the run's output; diagnostics only when they matter.
		log = slog.New(minLevel{log.Handler(), slog.LevelWarn})
	}
	wait := time.Duration(-1) // until interrupted
	if *uiWait != "" {
		d, err := parseDuration(*uiWait)
		if err != nil || d < 0 {
			return usageError{fmt.Errorf("exec: --ui-wait %q: want a duration such as 30s, or 0", *uiWait)}
		}
		wait = d
	}
	if (*uiAddr != "" || *uiWait != "") && !*ui {
		*ui = true
	}
	var view *webui.UI
	var viewURL string
	var viewErr error
	onStart := func(ri localrun.RunInfo) {
		if !*ui {
			return
		}
		if view, viewErr = webui.New(ri.Server, webui.Options{Logger: log}); viewErr != nil {
			return
		}
		u, err := view.Serve(sig.ctx, *uiAddr)
		if err != nil {
			viewErr = err
			return
		}
		viewURL = u + "#/runs/" + ri.RunID
		fmt.Fprintf(stderr, "web view: %s\n", viewURL)
	}
	defer func() {
		if view != nil {
			view.Close()
		}
	}()
	kill := make(chan struct{})
	var killOnce sync.Once
	sig.setOnSecond(func() { killOnce.Do(func() { close(kill) }) })

	sum, err := localrun.Run(sig.ctx, localrun.Options{
		File:           positional[0],
		Vars:           vars.m,
		Secrets:        secrets.m,
		Repos:          repos.m,
		WorkDir:        *work,
		PoolDir:        *poolDir,
		Keep:           *keep,
		Registry:       registry(),
		Stdout:         stdout,
		Color:          useColor,
		Logger:         log,
		AgentVersion:   DefaultAgentVersion,
		GoagentVersion: version,
		Kill:           kill,
		OnStart:        onStart,
	})
	if viewErr != nil {
		fmt.Fprintf(stderr, "goagent: the web view could not start: %v\n", viewErr)
	}
	if view != nil && viewErr == nil && wait != 0 && sig.ctx.Err() == nil {
		sig.finished()
		if wait < 0 {
			fmt.Fprintf(stderr, "the web view stays up at %s — Ctrl-C to quit\n", viewURL)
			<-sig.ctx.Done()
		} else {
			fmt.Fprintf(stderr, "the web view stays up at %s for %s\n", viewURL, wait)
			select {
			case <-time.After(wait):
			case <-sig.ctx.Done():
			}
		}
	}
	if sum != nil && *summaryFile != "" {
		b, merr := json.MarshalIndent(sum, "", "  ")
		if merr == nil {
			merr = os.WriteFile(*summaryFile, append(b, '\n'), 0o644)
		}
		if merr != nil {
			return fmt.Errorf("write the summary to %s: %w", *summaryFile, merr)
		}
	}
	return err
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(as), m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.Handler.WithGroup(name), m.min}
}

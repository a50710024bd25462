// Package bench measures goagent against the physical limits of the machine
// it runs on, and writes the figures to BENCHMARKS.md (`make bench`).
//
// Every figure comes from whole runs of the built binary against the
// in-process Azure DevOps emulator (internal/devserver) over loopback HTTPS,
// repeated, with the limit or a peer (bash, git, the process start, RSA key
// generation, a loopback round trip) measured on the same machine in the
// same run. Times are read from the emulator's event stamps, the timeline
// records the agent reports, or timestamps the steps print; memory from the
// kernel's accounting (/proc/PID/status). Benchmarks report; they fail only
// when a figure cannot be obtained at all.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config says what to run and how much.
type Config struct {
	Binary  string // the goagent binary under test
	Out     string // where to write BENCHMARKS.md; "" writes none
	Command string // the command that reproduces the run, for the report
	Dir     string // scratch directory; default a temporary one, removed after

	StartRuns   int           // start → listening runs (≥ 20)
	LatencyJobs int           // jobs queued at random moments of the poll
	PollHold    time.Duration // the emulator's long-poll hold for the latency runs
	Steps       int           // steps in the per-step overhead job
	Reps        int           // repetitions of the heavier benchmarks
	LogLines    int           // lines the log benchmark's step prints
	SlowLines   int           // lines of the slow (bash loop) log producer; 0 skips it
	Secrets     int           // secret variables registered for the log benchmark
	Idle        time.Duration // how long the idle agent listens before its RSS is read
	Repo        repoShape     // the checkout benchmark's repository

	MaxLoad  float64       // wait (up to LoadWait) for the 1-minute load average to drop below this
	LoadWait time.Duration //
	Only     []string      // run only these benchmarks (names as in Names); empty: all

	Progress io.Writer // progress lines; nil discards
}

// Names are the benchmarks, in the order they run.
var Names = []string{"start", "latency", "steps", "logs", "checkout", "footprint"}

// Defaults is the configuration of `make bench`.
func Defaults() Config {
	return Config{
		StartRuns:   25,
		LatencyJobs: 24,
		PollHold:    5 * time.Second,
		Steps:       100,
		Reps:        5,
		LogLines:    1_000_000,
		SlowLines:   1_000_000,
		Secrets:     50,
		Idle:        60 * time.Second,
		Repo:        repoShape{Files: 10_000, Commits: 300, Seed: 1},
		MaxLoad:     1.0,
		LoadWait:    3 * time.Minute,
	}
}

// bencher is one run of the benchmarks.
type bencher struct {
	cfg    Config
	binary string // a private copy of the binary under test
	dir    string
	log    io.Writer
}

func (b *bencher) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

func (b *bencher) enabled(name string) bool {
	return len(b.cfg.Only) == 0 || slices.Contains(b.cfg.Only, name)
}

// Run runs the benchmarks, prints the table to stdout and writes the report.
// It returns an error when a benchmark could not be measured at all (after
// writing everything that was), never because a figure missed its goal.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	for _, n := range cfg.Only {
		if !slices.Contains(Names, n) {
			return fmt.Errorf("unknown benchmark %q (known: %s)", n, strings.Join(Names, ", "))
		}
	}
	b := &bencher{cfg: cfg, log: cfg.Progress}
	if b.log == nil {
		b.log = io.Discard
	}
	dir := cfg.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create the bench's scratch directory: %w", err)
		}
	} else {
		d, err := os.MkdirTemp(scratchRoot(), "goagent-bench-")
		if err != nil {
			return fmt.Errorf("create the bench's scratch directory: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	b.dir = dir
	b.progress("scratch directory %s", dir)
	// A private copy: another build of bin/goagent during the run must not
	// swap the binary under test.
	bin, err := copyExecutable(cfg.Binary, filepath.Join(dir, "goagent"))
	if err != nil {
		return err
	}
	b.binary = bin

	waited := b.waitForQuiet(ctx)
	rep := &report{Command: cfg.Command}
	rep.Machine = describeMachine(ctx, bin)
	rep.Machine.LoadWaited = waited
	rep.Machine.Scratch = describeScratch(dir)
	if busy := busyProcesses(); busy != "" {
		rep.Machine.Concurrently = busy
	}

	// The idle agent listens from the start, so its minute passes while the
	// other benchmarks run (it is idle: one long poll at a time).
	var idle *idleAgent
	if b.enabled("footprint") {
		idle = b.startIdle(ctx)
	}
	type bench struct {
		name string
		run  func(context.Context) []section
	}
	one := func(f func(context.Context) section) func(context.Context) []section {
		return func(ctx context.Context) []section { return []section{f(ctx)} }
	}
	for _, bn := range []bench{
		{"start", one(b.startToListening)},
		{"latency", b.latency},
		{"steps", one(b.perStep)},
		{"logs", b.logThroughput},
		{"checkout", one(b.checkout)},
	} {
		if !b.enabled(bn.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		b.progress("%s…", bn.name)
		start := time.Now()
		rep.Sections = append(rep.Sections, bn.run(ctx)...)
		b.progress("%s done in %s", bn.name, time.Since(start).Round(100*time.Millisecond))
	}
	if idle != nil {
		rep.Sections = append(rep.Sections, b.footprint(ctx, idle))
	}
	rep.Machine.LoadEnd = loadAverage()

	writeTable(stdout, rep.rows())
	if cfg.Out != "" {
		f, err := os.Create(cfg.Out)
		if err != nil {
			return fmt.Errorf("write %s: %w", cfg.Out, err)
		}
		rep.writeMarkdown(f)
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", cfg.Out, err)
		}
		b.progress("wrote %s", cfg.Out)
	}
	var errs []error
	for _, s := range rep.Sections {
		if s.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, s.Err))
		}
	}
	return errors.Join(errs...)
}

// waitForQuiet waits, up to LoadWait, for the one-minute load average to
// drop below MaxLoad: on a shared machine other work skews every figure.
func (b *bencher) waitForQuiet(ctx context.Context) time.Duration {
	if b.cfg.MaxLoad <= 0 || b.cfg.LoadWait <= 0 {
		return 0
	}
	start := time.Now()
	for l := load1(); l >= b.cfg.MaxLoad; l = load1() {
		if time.Since(start) >= b.cfg.LoadWait {
			b.progress("load average still %.2f after %s; measuring anyway (recorded in the report)", l, b.cfg.LoadWait)
			break
		}
		if time.Since(start) < time.Second {
			b.progress("load average %.2f ≥ %.2f: waiting up to %s for it to drop", l, b.cfg.MaxLoad, b.cfg.LoadWait)
		}
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(5 * time.Second):
		}
	}
	return time.Since(start).Truncate(time.Second)
}

func copyExecutable(src, dst string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("read the binary under test: %w (build it first: make build)", err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return "", fmt.Errorf("copy the binary under test: %w", err)
	}
	return dst, nil
}

// scratchRoot prefers tmpfs: agents, clones and log pages then cost what the
// programs do, not what a shared virtual disk happens to cost at the moment.
func scratchRoot() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", "goagent-bench-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return ""
}

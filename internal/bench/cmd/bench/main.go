// Command bench measures goagent against the limits of the machine and
// writes BENCHMARKS.md (`make bench`). It exits non-zero only when a figure
// could not be obtained, never because one missed its goal.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/goagent-dev/goagent/internal/bench"
)

func main() {
	cfg := bench.Defaults()
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.StringVar(&cfg.Binary, "binary", "bin/goagent", "the goagent binary under test")
	fs.StringVar(&cfg.Out, "out", "BENCHMARKS.md", `where to write the report ("" for none)`)
	fs.IntVar(&cfg.StartRuns, "start-runs", cfg.StartRuns, "start → listening runs")
	fs.IntVar(&cfg.LatencyJobs, "latency-jobs", cfg.LatencyJobs, "jobs queued at random moments of the long poll")
	fs.DurationVar(&cfg.PollHold, "poll-hold", cfg.PollHold, "the emulator's long-poll hold for the latency runs")
	fs.IntVar(&cfg.Reps, "reps", cfg.Reps, "repetitions of the heavier benchmarks")
	fs.IntVar(&cfg.Steps, "steps", cfg.Steps, "steps of the per-step overhead job")
	fs.IntVar(&cfg.LogLines, "log-lines", cfg.LogLines, "lines the log benchmark prints")
	fs.IntVar(&cfg.SlowLines, "slow-lines", cfg.SlowLines, "lines of the slow (bash loop) log producer; 0 skips it")
	fs.DurationVar(&cfg.Idle, "idle", cfg.Idle, "how long the idle agent listens before its RSS is read")
	fs.IntVar(&cfg.Repo.Files, "repo-files", cfg.Repo.Files, "files of the checkout benchmark's repository")
	fs.IntVar(&cfg.Repo.Commits, "repo-commits", cfg.Repo.Commits, "commits of the checkout benchmark's repository")
	fs.Float64Var(&cfg.MaxLoad, "max-load", cfg.MaxLoad, "wait for the 1-minute load average to drop below this first (0: don't)")
	fs.DurationVar(&cfg.LoadWait, "load-wait", cfg.LoadWait, "the longest wait for the load to drop")
	fs.StringVar(&cfg.Dir, "dir", "", "scratch directory, kept afterwards (default: a temporary one, removed)")
	only := fs.String("only", "", "comma-separated benchmarks to run: "+strings.Join(bench.Names, ","))
	fs.Parse(os.Args[1:])
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Command = "make bench"
	if len(os.Args) > 1 && !isDefaultInvocation(os.Args[1:]) {
		cfg.Command = "make build && go run ./internal/bench/cmd/bench " + strings.Join(os.Args[1:], " ")
	}
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// isDefaultInvocation reports whether the arguments are the Makefile's.
func isDefaultInvocation(args []string) bool {
	return strings.Join(args, " ") == "-binary bin/goagent -out BENCHMARKS.md"
}

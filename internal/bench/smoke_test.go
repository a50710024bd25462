package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunSmall runs every benchmark at a tiny scale against a freshly built
// goagent, so that `make bench` cannot rot unnoticed. It checks that each
// figure was obtained, not how fast anything was.
func TestRunSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds goagent and runs agents: not in -short mode")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "goagent")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/goagent-dev/goagent/cmd/goagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build goagent: %v\n%s", err, out)
	}
	cfg := Config{
		Binary: bin, Out: filepath.Join(dir, "BENCHMARKS.md"), Command: "go test ./internal/bench", Dir: filepath.Join(dir, "scratch"),
		StartRuns: 2, LatencyJobs: 2, PollHold: time.Second, Steps: 3, Reps: 1,
		LogLines: 3000, SlowLines: 1000, Secrets: 5, Idle: time.Second,
		Repo: repoShape{Files: 60, Commits: 3, Seed: 1},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var table bytes.Buffer
	if err := Run(ctx, cfg, &table); err != nil {
		t.Fatalf("Run: %v\n%s", err, table.String())
	}
	md, err := os.ReadFile(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	for _, metric := range []string{
		"start → listening", "queued → received", "received → first step running", "per-step time, 3 ×",
		"fast producer (awk)", "slow producer (bash loop)", "agent peak RSS", "checkout, go-git, fetchDepth 1",
		"checkout, go-git, full history", "checkout, git CLI, fetchDepth 1", "checkout, git CLI, full history",
		"idle RSS after 1 s listening", "binary size",
	} {
		if !strings.Contains(table.String(), metric) || !strings.Contains(string(md), metric) {
			t.Errorf("no %q row in the table or the report:\n%s", metric, table.String())
		}
	}
	if strings.Contains(string(md), metError) {
		t.Errorf("a figure could not be measured:\n%s", md)
	}
	for _, want := range []string{"## Machine", "logical cores", "Load average", "go version", "git version", "## How each figure is measured"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

func TestRunRejectsUnknownBenchmark(t *testing.T) {
	err := Run(context.Background(), Config{Only: []string{"nonsense"}}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "nonsense") || !strings.Contains(err.Error(), "checkout") {
		t.Errorf("err = %v; want one naming the unknown and the known benchmarks", err)
	}
}

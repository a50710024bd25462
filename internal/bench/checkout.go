package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver/pipeline"
)

const (
	goGitGoal = 2.0
	cliGoal   = 1.25 // "≈ 1.0×": the official command sequence, plus the step's own work
)

// checkoutVariant is one way of getting the sources.
type checkoutVariant struct {
	label   string
	shallow bool
	gogit   bool // goagent without git on PATH
	peer    bool // plain git clone
}

// checkout: goagent's checkout step (go-git and git CLI) against git clone,
// shallow and full, of a generated repository served over smart HTTP by the
// emulator.
func (b *bencher) checkout(ctx context.Context) section {
	const name = "Checkout"
	metric := "checkout"
	goal := "≤ 2.0× (go-git), ≈ 1.0× (CLI)"
	dir := filepath.Join(b.dir, "checkout")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failed(name, metric, goal, err)
	}
	b.progress("checkout: generating a repository of %d files and %d commits", b.cfg.Repo.Files, b.cfg.Repo.Commits)
	genStart := time.Now()
	repo, err := generateRepo(ctx, dir, b.cfg.Repo)
	if err != nil {
		return failed(name, metric, goal, err)
	}
	genTime := time.Since(genStart)
	em, err := startEmulator(ctx, dir, 50*time.Second, "checkout")
	if err != nil {
		return failed(name, metric, goal, err)
	}
	defer em.close()
	url, err := em.srv.AddRepository("bench", "big", repo.GitDir)
	if err != nil {
		return failed(name, metric, goal, err)
	}
	noGit, err := pathWithout(filepath.Join(dir, "nogit-bin"), "git")
	if err != nil {
		return failed(name, metric, goal, err)
	}
	backend := "git http-backend"
	for _, r := range em.srv.Repositories() {
		backend = string(r.Backend)
	}

	variants := []checkoutVariant{
		{label: "git clone --depth 1", shallow: true, peer: true},
		{label: "goagent, git CLI, fetchDepth 1", shallow: true},
		{label: "goagent, go-git, fetchDepth 1", shallow: true, gogit: true},
		{label: "git clone (full)", peer: true},
		{label: "goagent, git CLI, full history", shallow: false},
		{label: "goagent, go-git, full history", gogit: true},
	}
	times := make([][]float64, len(variants))
	for rep := range b.cfg.Reps {
		for i, v := range variants {
			var d time.Duration
			var err error
			if v.peer {
				d, err = gitClone(ctx, em, url, filepath.Join(dir, fmt.Sprintf("clone-%d-%d", rep, i)), v.shallow, repo.Files)
			} else {
				d, err = b.agentCheckout(ctx, em, dir, fmt.Sprintf("co-%d-%d", rep, i), url, repo, v, noGit)
			}
			if err != nil {
				return failed(name, metric, goal, fmt.Errorf("%s: %w", v.label, err))
			}
			times[i] = append(times[i], float64(d)/float64(time.Millisecond))
		}
	}
	sum := make([]summary, len(variants))
	for i := range variants {
		sum[i] = summarize(times[i])
	}
	mk := func(agent, peer int, g float64, goalText string) row {
		a, p := sum[agent], sum[peer]
		return row{
			Metric:  "checkout, " + strings.TrimPrefix(variants[agent].label, "goagent, "),
			Goagent: a.medianRange(fmtMS),
			Limit:   p.medianRange(fmtMS) + " (" + variants[peer].label + ")",
			Ratio:   ratio(a.Median, p.Median),
			Goal:    goalText,
			Met:     verdict(a.Median <= g*p.Median),
		}
	}
	var details []string
	for i, v := range variants {
		details = append(details, v.label+": "+sum[i].distribution(fmtMS))
	}
	details = append(details, fmt.Sprintf("repository: %d files (%.1f MB) in HEAD, %d commits, generated with git fast-import and repacked in %s; served by %s",
		repo.Files, float64(repo.Bytes)/1e6, repo.Commits, genTime.Round(100*time.Millisecond), backend))
	return section{
		Name: name,
		Rows: []row{
			mk(2, 0, goGitGoal, "≤ 2.0×"),
			mk(5, 3, goGitGoal, "≤ 2.0×"),
			mk(1, 0, cliGoal, "≈ 1.0× (≤ 1.25×)"),
			mk(4, 3, cliGoal, "≈ 1.0× (≤ 1.25×)"),
		},
		Method: fmt.Sprintf("The bench generates a repository (%d files, %d commits, a few edits a commit, text like source code) "+
			"and the emulator serves it as Azure Repos does, over smart HTTP on loopback HTTPS with the job's token "+
			"(git http-backend behind the emulator). goagent runs a job with one `checkout: self` step (`fetchDepth: 1`, or "+
			"`fetchDepth: 0` for the full history), each run with a fresh agent and work directory; its time is the step's "+
			"record, start to finish. The go-git path runs with a PATH that has everything but git; the CLI path runs the "+
			"official command sequence (init, fetch, checkout) with git %s. The peers are `git clone --depth 1` and "+
			"`git clone` of the same URL into an empty directory, whole-command time. Every clone goes to the scratch directory "+
			"(see Machine: tmpfs when the machine has one, so that a shared disk's hiccups do not drown the difference). The variants are interleaved, %d runs each; "+
			"every checkout is checked to have all %d files.", repo.Files, repo.Commits, strings.TrimPrefix(firstLine(command(ctx, "git", "--version")), "git version "), b.cfg.Reps, repo.Files),
		Details: details,
	}
}

// agentCheckout runs one checkout job with a fresh agent and returns the
// step's duration.
func (b *bencher) agentCheckout(ctx context.Context, em *emulator, dir, name, url string, repo *generatedRepo, v checkoutVariant, noGit string) (time.Duration, error) {
	o := agentOptions{}
	if v.gogit {
		o.Path = noGit
	}
	p, err := em.startAgent(b.binary, dir, name, "checkout", o)
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(p.home)
	defer p.stop()
	if _, err := em.waitSession(ctx, p); err != nil {
		return 0, err
	}
	depth := 0
	if v.shallow {
		depth = 1
	}
	j, err := em.queue(runSpec{
		Pool:  "checkout",
		YAML:  fmt.Sprintf("steps:\n- checkout: self\n  fetchDepth: %d\n", depth),
		Repos: map[string]pipeline.Repo{"self": {URL: url, Commit: repo.Head, Ref: "refs/heads/main", Name: "big"}},
	})
	if err != nil {
		return 0, err
	}
	if err := wait(ctx, j, p); err != nil {
		return 0, err
	}
	starts, finishes, err := stepTimes(j)
	if err != nil {
		return 0, err
	}
	logs := joinLogs(j)
	usedGoGit := strings.Contains(strings.ToLower(logs), "go-git")
	if v.gogit != usedGoGit {
		return 0, fmt.Errorf("the checkout did not take the %s path (go-git mentioned in the log: %v):\n%s", map[bool]string{true: "go-git", false: "git CLI"}[v.gogit], usedGoGit, tail(logs, 3000))
	}
	src := filepath.Join(p.home, "_work", "1", "s")
	n, err := countFiles(src)
	if err != nil {
		return 0, fmt.Errorf("count the checked-out files: %w", err)
	}
	if n != repo.Files {
		return 0, fmt.Errorf("the checkout in %s has %d files, want %d", src, n, repo.Files)
	}
	return finishes[0].Sub(starts[0]), nil
}

// gitClone times `git clone [--depth 1]` of the repository the emulator
// serves, authenticated the way a user would with a PAT.
func gitClone(ctx context.Context, em *emulator, url, dest string, shallow bool, files int) (time.Duration, error) {
	args := []string{"-c", "http.extraHeader=Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(":"+em.srv.PAT())), "clone", "--quiet"}
	if shallow {
		args = append(args, "--depth", "1")
	}
	args = append(args, url, dest)
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_SSL_CAINFO="+em.srv.CAFile(), "GIT_TERMINAL_PROMPT=0")
	t := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t)
	if err != nil {
		return 0, fmt.Errorf("git clone: %w: %s", err, out)
	}
	defer os.RemoveAll(dest)
	n, err := countFiles(dest)
	if err != nil {
		return 0, err
	}
	if n != files {
		return 0, fmt.Errorf("git clone produced %d files, want %d", n, files)
	}
	return d, nil
}

// pathWithout makes a directory of symbolic links to every program on PATH
// except those whose name starts with prefix, and returns it as a PATH.
func pathWithout(dir, prefix string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) || e.IsDir() {
				continue
			}
			link := filepath.Join(dir, e.Name())
			if _, err := os.Lstat(link); err == nil {
				continue // an earlier PATH entry wins, as in a lookup
			}
			if err := os.Symlink(filepath.Join(d, e.Name()), link); err != nil {
				return "", fmt.Errorf("make a PATH without %s: %w", prefix, err)
			}
		}
	}
	if _, err := exec.LookPath(filepath.Join(dir, "bash")); err != nil {
		return "", fmt.Errorf("make a PATH without %s: no bash in it: %w", prefix, err)
	}
	return dir, nil
}

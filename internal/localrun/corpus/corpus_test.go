package corpus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/testbin"

	"gopkg.in/yaml.v3"
)

// The sidecar NAME.expect.yaml of NAME.yml:
//
//	args: [--var, x=1]        # extra goagent exec arguments
//	path: empty               # run goagent with an empty PATH (no git, no shell)
//	runs: 2                   # run twice on one --work directory; the last run is checked
//	setup:                    # repositories, built before the run
//	  commits: 3              # commits in the self repository (the last adds the files)
//	  files: {path: content}  # files of the self repository besides the pipeline
//	  executable: [path]      # files to mark executable
//	  repos: {name: {path: content}}                # sibling repositories (name may have a /)
//	  branches: {repo: {branch: {path: content}}}   # a commit "<branch> commit" on a new branch
//	  submodules: {path: repo}                      # submodules of self with URL ../repo
//	summary: false            # no summary expected (the run did not start)
//	exit: 1                   # expected exit status
//	result: failed            # the run's result
//	jobs: {Job: {result: failed, steps: {Step name: failed}}}   # every job; the steps named
//	contains: [text]          # in the output
//	notContains: [text]       # not in the output
//	ordered: [text]           # in the output, in this order
//	slow: true                # waits out a timeout: started first
//	withoutPwsh: {...}        # exit/result/jobs/contains/notContains when pwsh is not installed

type expectation struct {
	Args        []string             `yaml:"args"`
	Path        string               `yaml:"path"`
	Runs        int                  `yaml:"runs"`
	Setup       setup                `yaml:"setup"`
	Summary     *bool                `yaml:"summary"`
	Exit        int                  `yaml:"exit"`
	Result      string               `yaml:"result"`
	Jobs        map[string]jobExpect `yaml:"jobs"`
	Contains    []string             `yaml:"contains"`
	NotContains []string             `yaml:"notContains"`
	Ordered     []string             `yaml:"ordered"`
	Slow        bool                 `yaml:"slow"`
	WithoutPwsh *expectation         `yaml:"withoutPwsh"`
}

type jobExpect struct {
	Result string            `yaml:"result"`
	Steps  map[string]string `yaml:"steps"`
}

type setup struct {
	Commits    int                                     `yaml:"commits"`
	Files      map[string]string                       `yaml:"files"`
	Executable []string                                `yaml:"executable"`
	Repos      map[string]map[string]string            `yaml:"repos"`
	Branches   map[string]map[string]map[string]string `yaml:"branches"`
	Submodules map[string]string                       `yaml:"submodules"`
}

// summary is what `goagent exec --summary` writes (localrun.Summary).
type summary struct {
	Result string `json:"result"`
	Jobs   []struct {
		Name   string `json:"name"`
		Result string `json:"result"`
		Steps  []struct {
			Name   string `json:"name"`
			Result string `json:"result"`
		} `json:"steps"`
	} `json:"jobs"`
}

// hangGuard bounds one goagent run; the slowest pipelines wait a one-minute
// timeout on purpose.
const hangGuard = 4 * time.Minute

var goagent string

func TestMain(m *testing.M) { testbin.Main(m.Run, &goagent, "corpus") }

func pipelinesDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "pipelines")
}

// concurrency is how many pipelines run at once. Most of a run is waiting
// (two pipelines sit out a one-minute timeout), so it is not tied to the
// CPU count as t.Parallel would be.
const concurrency = 6

func TestCorpus(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is needed to build the repositories the pipelines check out (make deps installs it)")
	}
	dir := pipelinesDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("the corpus has %d pipelines, want at least 15", len(files))
	}
	_, pwshErr := exec.LookPath("pwsh")
	exps := map[string]*expectation{}
	for _, f := range files {
		exp, err := readExpectation(strings.TrimSuffix(f, ".yml") + ".expect.yaml")
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		exps[f] = exp
	}
	// The slow ones first, so they do not wait for a slot at the end.
	sort.SliceStable(files, func(a, b int) bool {
		return exps[files[a]] != nil && exps[files[a]].Slow && (exps[files[b]] == nil || !exps[files[b]].Slow)
	})
	type pending struct {
		name string
		exp  *expectation
		done chan *outcome
	}
	var runs []pending
	sem := make(chan struct{}, concurrency)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yml")
		exp := exps[f]
		if exp == nil {
			continue
		}
		if exp.WithoutPwsh != nil && pwshErr != nil {
			w := exp.WithoutPwsh
			exp.Exit, exp.Result, exp.Jobs, exp.Contains, exp.NotContains, exp.Ordered = w.Exit, w.Result, w.Jobs, w.Contains, w.NotContains, w.Ordered
		}
		p := pending{name: name, exp: exp, done: make(chan *outcome, 1)}
		if exp.Slow && testing.Short() {
			t.Run(name, func(t *testing.T) { t.Skip("waits out a one-minute timeout; not in -short mode") })
			continue
		}
		runs = append(runs, p)
		root := t.TempDir()
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p.done <- runPipeline(root, f, exp)
		}()
	}
	for _, p := range runs {
		t.Run(p.name, func(t *testing.T) {
			check(t, <-p.done, p.exp)
		})
	}
}

func readExpectation(path string) (*expectation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("every pipeline needs a sidecar: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var e expectation
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &e, nil
}

// outcome is what a run produced.
type outcome struct {
	err     error // the test could not run the pipeline
	args    []string
	out     []byte
	code    int
	summary []byte // nil when none was written
	took    time.Duration
}

func runPipeline(root, file string, exp *expectation) *outcome {
	o := &outcome{}
	home := filepath.Join(root, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return &outcome{err: err}
	}
	g := &gitRunner{home: home}
	app := filepath.Join(root, "app")
	if err := build(g, root, app, file, exp.Setup); err != nil {
		return &outcome{err: fmt.Errorf("build the repositories: %w", err)}
	}

	env := append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "NO_COLOR=1")
	if exp.Path == "empty" {
		empty := filepath.Join(root, "empty-path")
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return &outcome{err: err}
		}
		env = append(env, "PATH="+empty)
	}
	start := time.Now()
	defer func() { o.took = time.Since(start) }()
	runs := max(exp.Runs, 1)
	sumFile := filepath.Join(root, "summary.json")
	o.args = append([]string{"exec", filepath.Base(file), "--color", "never", "--summary", sumFile}, exp.Args...)
	if runs > 1 {
		o.args = append(o.args, "--work", filepath.Join(root, "work"))
	}
	for i := 0; i < runs; i++ {
		os.Remove(sumFile)
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		cmd := exec.CommandContext(ctx, goagent, o.args...)
		cmd.Dir = app
		cmd.Env = env
		var err error
		o.out, err = cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		switch {
		case err == nil:
			o.code = 0
		case errors.As(err, &ee):
			o.code = ee.ExitCode()
		default:
			o.err = fmt.Errorf("run goagent: %w", err)
			return o
		}
		if i < runs-1 && o.code != exp.Exit {
			o.err = fmt.Errorf("run %d of %d exited %d, want %d", i+1, runs, o.code, exp.Exit)
			return o
		}
	}
	if b, err := os.ReadFile(sumFile); err == nil {
		o.summary = b
	}
	return o
}

// check judges a run by its sidecar.
func check(t *testing.T, o *outcome, exp *expectation) {
	failed := os.Getenv("CORPUS_SHOW") != ""
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		failed = true
	}
	defer func() {
		if failed {
			t.Logf("goagent %s\n%s", strings.Join(o.args, " "), o.out)
		}
	}()
	t.Logf("ran in %s", o.took.Round(time.Millisecond))
	if o.err != nil {
		fail("%v", o.err)
		return
	}
	if o.code != exp.Exit {
		fail("exit status %d, want %d", o.code, exp.Exit)
	}
	text := string(o.out)
	for _, s := range exp.Contains {
		if !strings.Contains(text, s) {
			fail("the output lacks %q", s)
		}
	}
	for _, s := range exp.NotContains {
		if strings.Contains(text, s) {
			fail("the output has %q", s)
		}
	}
	at := 0
	for _, s := range exp.Ordered {
		i := strings.Index(text[at:], s)
		if i < 0 {
			fail("the output lacks %q after position %d (ordered)", s, at)
			break
		}
		at += i + len(s)
	}

	if exp.Summary != nil && !*exp.Summary {
		if o.summary != nil {
			fail("a summary was written: %s", o.summary)
		}
		return
	}
	if o.summary == nil {
		fail("no summary was written")
		return
	}
	var sum summary
	if err := json.Unmarshal(o.summary, &sum); err != nil {
		fail("summary: %v", err)
		return
	}
	if sum.Result != exp.Result {
		fail("result %q, want %q", sum.Result, exp.Result)
	}
	var got, want []string
	for _, j := range sum.Jobs {
		got = append(got, j.Name)
		je, ok := exp.Jobs[j.Name]
		if !ok {
			continue
		}
		if j.Result != je.Result {
			fail("job %s: result %q, want %q", j.Name, j.Result, je.Result)
		}
		for step, res := range je.Steps {
			found := false
			for _, s := range j.Steps {
				if s.Name == step {
					found = true
					if s.Result != res {
						fail("job %s, step %q: result %q, want %q", j.Name, step, s.Result, res)
					}
				}
			}
			if !found {
				fail("job %s has no step %q", j.Name, step)
			}
		}
	}
	for n := range exp.Jobs {
		want = append(want, n)
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		fail("jobs %v, want %v", got, want)
	}
}

// gitRunner runs git isolated from the host's configuration.
type gitRunner struct {
	home string
}

func (g *gitRunner) run(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+g.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_AUTHOR_NAME=corpus", "GIT_AUTHOR_EMAIL=corpus@example.invalid",
		"GIT_COMMITTER_NAME=corpus", "GIT_COMMITTER_EMAIL=corpus@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// runAll runs git commands in order, stopping at the first error.
func (g *gitRunner) runAll(dir string, cmds ...[]string) error {
	for _, c := range cmds {
		if _, err := g.run(dir, c...); err != nil {
			return err
		}
	}
	return nil
}

func writeFiles(dir string, files map[string]string) error {
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// commit commits files (and whatever else changed) on the current branch.
func (g *gitRunner) commit(dir string, files map[string]string, message string) error {
	if err := writeFiles(dir, files); err != nil {
		return err
	}
	return g.runAll(dir, []string{"add", "-A"}, []string{"commit", "-q", "--allow-empty", "-m", message})
}

// build creates the self repository app (holding the pipeline) and the
// repositories the sidecar asks for beside it.
func build(g *gitRunner, root, app, pipeline string, s setup) error {
	src, err := os.ReadFile(pipeline)
	if err != nil {
		return err
	}
	for name, files := range s.Repos {
		dir := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if _, err := g.run(dir, "init", "-q", "-b", "main"); err != nil {
			return err
		}
		if err := g.commit(dir, files, "initial commit"); err != nil {
			return err
		}
	}
	for repo, branches := range s.Branches {
		dir := filepath.Join(root, filepath.FromSlash(repo))
		for branch, files := range branches {
			if _, err := g.run(dir, "checkout", "-q", "-b", branch); err != nil {
				return err
			}
			if err := g.commit(dir, files, branch+" commit"); err != nil {
				return err
			}
			if _, err := g.run(dir, "checkout", "-q", "main"); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(app, 0o755); err != nil {
		return err
	}
	if _, err := g.run(app, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	for i := 1; i < s.Commits; i++ {
		if err := g.commit(app, map[string]string{"history.txt": fmt.Sprintf("commit %d\n", i)}, fmt.Sprintf("history %d", i)); err != nil {
			return err
		}
	}
	files := map[string]string{filepath.Base(pipeline): string(src)}
	for p, c := range s.Files {
		files[p] = c
	}
	paths := make([]string, 0, len(s.Submodules))
	for p := range s.Submodules {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var modules strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&modules, "[submodule %q]\n\tpath = %s\n\turl = ../%s\n", p, p, s.Submodules[p])
	}
	if modules.Len() > 0 {
		files[".gitmodules"] = modules.String()
	}
	if err := writeFiles(app, files); err != nil {
		return err
	}
	for _, p := range s.Executable {
		if err := os.Chmod(filepath.Join(app, filepath.FromSlash(p)), 0o755); err != nil {
			return err
		}
	}
	if _, err := g.run(app, "add", "-A"); err != nil {
		return err
	}
	// Gitlinks go straight into the index: there is no work tree for them.
	for _, p := range paths {
		sha, err := g.run(filepath.Join(root, s.Submodules[p]), "rev-parse", "HEAD")
		if err != nil {
			return err
		}
		if _, err := g.run(app, "update-index", "--add", "--cacheinfo", "160000,"+sha+","+p); err != nil {
			return err
		}
	}
	_, err = g.run(app, "commit", "-q", "-m", "the pipeline")
	return err
}

// TestInterrupt sends the built binary SIGINT while a step runs: the job is
// canceled through the emulator, reported, and goagent exits 130.
func TestInterrupt(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "slow.yml")
	if err := os.WriteFile(file, []byte("steps:\n- checkout: none\n- bash: echo started; sleep 120; echo finished\n  displayName: Sleep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, goagent, "exec", file, "--color", "never", "--summary", filepath.Join(dir, "summary.json"))
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out := &watchWriter{watch: "\n  started\n", seen: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-out.seen:
	case <-ctx.Done():
		t.Fatalf("the step did not start:\n%s", out)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want status 130\n%s", err, out)
	}
	text := out.String()
	for _, s := range []string{"Canceling job Job", "Pipeline canceled"} {
		if !strings.Contains(text, s) {
			t.Errorf("the output lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "\n  finished\n") {
		t.Errorf("the step was not stopped:\n%s", text)
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sum summary
	if err := json.Unmarshal(b, &sum); err != nil || sum.Result != "canceled" || len(sum.Jobs) != 1 || sum.Jobs[0].Result != "canceled" {
		t.Errorf("summary %s (%v)", b, err)
	}
}

// watchWriter collects output and tells when a text appeared.
type watchWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	watch string
	seen  chan struct{}
	once  sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.watch) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

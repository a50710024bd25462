package checkout

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/gitserver"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/stepstest"
	"github.com/goagent-dev/goagent/internal/wire"
)

// recConsole adds the questions these tests ask to stepstest.Console.
type recConsole struct{ *stepstest.Console }

// all is every non-secret line as the log shows it.
func (c recConsole) all() []string {
	return strings.Split(strings.TrimSuffix(c.Log(), "\n"), "\n")
}

func (c recConsole) commands() []string { return c.Of(stepstest.KindCommand) }

func (c recConsole) hasSecret(v string) bool {
	for _, s := range c.Of(stepstest.KindSecret) {
		if s == v {
			return true
		}
	}
	return false
}

// lateSecret reports a secret registered after something was printed.
func (c recConsole) lateSecret() bool {
	printed := false
	for _, l := range c.Lines() {
		if l.Kind != stepstest.KindSecret {
			printed = true
		} else if printed {
			return true
		}
	}
	return false
}

func newVars(kv ...string) *stepstest.Vars {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return stepstest.NewVars(m)
}

// mode selects the implementation through the step's PATH.
type mode string

const (
	cliMode   mode = "cli"
	goGitMode mode = "go-git"
)

var modes = []mode{cliMode, goGitMode}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "tok" + hex.EncodeToString(b)
}

// world is one test's git server, repositories and agent directories.
type world struct {
	t     *testing.T
	ctx   context.Context
	root  string
	srv   *gitserver.Server
	token string
	work  string
	build string
	home  string
}

func newWorld(t *testing.T, opts ...func(*gitserver.Options)) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	w := &world{t: t, ctx: ctx, root: t.TempDir(), token: randomToken(t), work: t.TempDir(), home: t.TempDir()}
	w.build = filepath.Join(w.work, "1")
	if err := os.MkdirAll(filepath.Join(w.build, "s"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := gitserver.Options{Root: w.root, Credentials: []gitserver.Credential{gitserver.Bearer(w.token)}}
	for _, f := range opts {
		f(&o)
	}
	srv, err := gitserver.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	w.srv = srv
	return w
}

func (w *world) repo(name string) *gitserver.Repo {
	w.t.Helper()
	r, err := gitserver.CreateRepo(w.ctx, w.root, name)
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *world) commit(r *gitserver.Repo, branch, msg string, files map[string]string) string {
	w.t.Helper()
	sha, err := r.Commit(w.ctx, branch, msg, files)
	if err != nil {
		w.t.Fatal(err)
	}
	return sha
}

func props(kv map[string]any) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for k, v := range kv {
		b, _ := json.Marshal(v)
		out[k] = b
	}
	return out
}

// repoResource describes a repository of this world as the job message does.
func (w *world) repoResource(alias string, r *gitserver.Repo, repoType, version string, extra map[string]any) wire.RepositoryResource {
	p := map[string]any{
		"id":      "id-" + alias,
		"type":    repoType,
		"url":     w.srv.RepoURL(r.Name),
		"name":    strings.TrimSuffix(filepath.Base(r.Name), ".git"),
		"ref":     "refs/heads/main",
		"version": version,
	}
	for k, v := range extra {
		p[k] = v
	}
	return wire.RepositoryResource{
		Alias:      alias,
		Endpoint:   &wire.ResourceReference{ID: "00000000-0000-0000-0000-000000000000", Name: wire.SystemConnectionName},
		Properties: props(p),
	}
}

func (w *world) systemConnection(token string) wire.ServiceEndpoint {
	return wire.ServiceEndpoint{
		ID:   "00000000-0000-0000-0000-000000000000",
		Name: wire.SystemConnectionName,
		Type: "ExternalTfs",
		URL:  "http://127.0.0.1/org/",
		Authorization: wire.EndpointAuth{
			Scheme:     "OAuth",
			Parameters: map[string]string{"AccessToken": token},
		},
	}
}

// step is one checkout step's Exec plus what it recorded.
type step struct {
	*stepstest.Harness
	ex      *steps.Exec
	console recConsole
	vars    *stepstest.Vars
	stdout  *stepstest.Buffer
	stderr  *stepstest.Buffer
}

// pathFor is the step's PATH: the host's for the CLI, an empty directory
// (no git anywhere) for go-git.
func (w *world) pathFor(m mode) string {
	if m == goGitMode {
		return w.t.TempDir()
	}
	return os.Getenv("PATH")
}

func (w *world) newStep(m mode, job *steps.Job, inputs map[string]string, vars *stepstest.Vars) *step {
	return w.newStepPath(w.pathFor(m), job, inputs, vars)
}

// newStepPath builds the Exec the runner would: the definition's defaults
// overlaid with inputs, this world's directories, an isolated git config.
func (w *world) newStepPath(path string, job *steps.Job, inputs map[string]string, vars *stepstest.Vars) *step {
	h := stepstest.New(w.t, fastDef(), inputs)
	if vars != nil {
		h.Vars = vars
		h.Exec.Vars = vars
	}
	h.Exec.StepName = "checkout"
	h.Exec.DisplayName = "Checkout"
	h.Exec.Env = []string{
		"PATH=" + path,
		"HOME=" + w.home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
	}
	h.Exec.Dirs = steps.Dirs{
		Work:           w.work,
		Build:          w.build,
		Sources:        filepath.Join(w.build, "s"),
		Temp:           filepath.Join(w.work, "_temp"),
		DefaultWorking: filepath.Join(w.build, "s"),
	}
	h.Exec.Job = job
	h.Exec.KillGrace = [2]time.Duration{200 * time.Millisecond, 200 * time.Millisecond}
	return &step{Harness: h, ex: h.Exec, console: recConsole{h.Console}, vars: h.Vars, stdout: h.Stdout, stderr: h.Stderr}
}

// fastDef is the step with short retry delays.
func fastDef() *steps.Definition {
	return NewDefinition(Options{RetryDelay: func(int) time.Duration { return 10 * time.Millisecond }})
}

func (w *world) run(st *step) error {
	return fastDef().Run(w.ctx, st.ex)
}

// git runs the git CLI in dir to inspect results.
func (w *world) git(dir string, args ...string) string {
	w.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "HOME="+w.home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

// assertNoLeak checks that neither the token nor any encoding of it reached
// the console, the step's output or the given files.
func assertNoLeak(t *testing.T, st *step, secrets []string, files ...string) {
	t.Helper()
	var hay []string
	hay = append(hay, st.console.all()...)
	hay = append(hay, st.stdout.String(), st.stderr.String())
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			hay = append(hay, string(b))
		}
	}
	for _, s := range secrets {
		for _, h := range hay {
			if strings.Contains(h, s) {
				t.Fatalf("secret %q leaked into %q", s, h)
			}
		}
	}
}

func bearerSecrets(token string) []string {
	return []string{token, base64.StdEncoding.EncodeToString([]byte("OAuth:" + token))}
}

func (w *world) authHeaders() map[string]int {
	out := map[string]int{}
	for _, r := range w.srv.Requests() {
		out[r.Authorization]++
	}
	return out
}

func contains(list []string, sub string) bool {
	for _, l := range list {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

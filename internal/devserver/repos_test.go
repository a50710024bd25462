package devserver_test

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/gitserver"
)

// fixture is a repository with history, branches and both kinds of tags,
// served by an emulator.
type fixture struct {
	s       *devserver.Server
	url     string
	token   string   // a live job access token
	commits []string // main's history, oldest first
	feature string   // tip of branch feature (not an ancestor of main)
	ca      string
}

func newFixture(t *testing.T, backend devserver.RepositoryBackend) *fixture {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is needed to build the fixture repositories (make deps installs it)")
	}
	ctx := waitCtx(t)
	root := t.TempDir()
	r, err := gitserver.CreateRepo(ctx, root, "app.git")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	for i := 1; i <= 5; i++ {
		c, err := r.Commit(ctx, "main", "commit "+strconv.Itoa(i), map[string]string{
			"README.md":                       "version " + strconv.Itoa(i) + "\n",
			"src/deep/file" + strconv.Itoa(i): strings.Repeat("x", i*100),
		})
		if err != nil {
			t.Fatal(err)
		}
		f.commits = append(f.commits, c)
	}
	if err := r.Branch(ctx, "feature", f.commits[1]); err != nil {
		t.Fatal(err)
	}
	if f.feature, err = r.Commit(ctx, "feature", "feature work", map[string]string{"feature.txt": "feature\n"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Tag(ctx, "v1", f.commits[0], true); err != nil {
		t.Fatal(err)
	}
	if err := r.Tag(ctx, "light", f.commits[2], false); err != nil {
		t.Fatal(err)
	}
	f.s = startServer(t, devserver.Options{})
	f.ca = f.s.CAFile()
	if f.url, err = f.s.AddRepositoryWith("MyProject", "app", r.Dir, devserver.RepositoryOptions{Backend: backend}); err != nil {
		t.Fatal(err)
	}
	job, err := f.s.QueueJob(simpleJob(14), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.token = job.Token()
	return f
}

// gitCLI runs git isolated from the host, trusting the emulator's CA.
func (f *fixture) gitCLI(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0",
		"HOME="+dir, "GIT_SSL_CAINFO="+f.ca, "GIT_ASKPASS=", "SSH_ASKPASS=")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (f *fixture) mustGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := f.gitCLI(t, dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var backends = []devserver.RepositoryBackend{devserver.BackendGit, devserver.BackendNative}

// TestRepositoryGitCLI fetches the way the checkout step does (init, remote,
// fetch by commit with depth, then deepen and unshallow), clones with tags,
// over protocol v0 and v2, from both backends.
func TestRepositoryGitCLI(t *testing.T) {
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, backend)
			auth := "http.extraheader=AUTHORIZATION: bearer " + f.token
			for _, proto := range []string{"0", "2"} {
				t.Run("protocol v"+proto, func(t *testing.T) {
					pv := "protocol.version=" + proto
					tip := f.commits[4]

					// The checkout step's shallow fetch of the build's commit.
					dir := t.TempDir()
					f.mustGit(t, dir, "init", "-q", "-b", "main")
					f.mustGit(t, dir, "remote", "add", "origin", f.url)
					f.mustGit(t, dir, "-c", pv, "-c", auth, "fetch", "--force", "--no-tags", "--prune", "--no-recurse-submodules", "origin", "--depth=1", "+"+tip+":refs/remotes/origin/"+tip)
					f.mustGit(t, dir, "checkout", "--force", "-q", tip)
					if got := f.mustGit(t, dir, "rev-list", "--count", "HEAD"); got != "1" {
						t.Errorf("depth 1 fetch has %s commits", got)
					}
					if got := f.mustGit(t, dir, "rev-parse", "--is-shallow-repository"); got != "true" {
						t.Errorf("depth 1 fetch: shallow = %s", got)
					}
					if b, err := os.ReadFile(filepath.Join(dir, "README.md")); err != nil || string(b) != "version 5\n" {
						t.Errorf("README.md = %q, %v", b, err)
					}

					// Deepen, then unshallow: shallow/unshallow lines both ways.
					f.mustGit(t, dir, "-c", pv, "-c", auth, "fetch", "--no-tags", "origin", "--depth=3", "+"+tip+":refs/remotes/origin/"+tip)
					if got := f.mustGit(t, dir, "rev-list", "--count", "HEAD"); got != "3" {
						t.Errorf("after --depth=3: %s commits", got)
					}
					f.mustGit(t, dir, "-c", pv, "-c", auth, "fetch", "--no-tags", "--unshallow", "origin", "+refs/heads/*:refs/remotes/origin/*")
					if got := f.mustGit(t, dir, "rev-list", "--count", "HEAD"); got != "5" {
						t.Errorf("after --unshallow: %s commits", got)
					}
					if got := f.mustGit(t, dir, "rev-parse", "--is-shallow-repository"); got != "false" {
						t.Errorf("after --unshallow: shallow = %s", got)
					}
					if got := f.mustGit(t, dir, "rev-parse", "refs/remotes/origin/feature"); got != f.feature {
						t.Errorf("origin/feature = %s, want %s", got, f.feature)
					}

					// A commit no ref points at (allow-reachable-sha1-in-want).
					dir2 := t.TempDir()
					f.mustGit(t, dir2, "init", "-q")
					f.mustGit(t, dir2, "remote", "add", "origin", f.url)
					mid := f.commits[2]
					f.mustGit(t, dir2, "-c", pv, "-c", auth, "fetch", "--no-tags", "origin", "--depth=1", "+"+mid+":refs/remotes/origin/mid")
					if got := f.mustGit(t, dir2, "rev-parse", "refs/remotes/origin/mid"); got != mid {
						t.Errorf("fetched %s, want %s", got, mid)
					}
					// An object the repository does not have.
					out, err := f.gitCLI(t, dir2, "-c", pv, "-c", auth, "fetch", "--no-tags", "origin", "--depth=1", "+"+strings.Repeat("ab", 20)+":refs/x")
					if err == nil || !strings.Contains(out, "not our ref") {
						t.Errorf("fetch of an unknown object: %v\n%s", err, out)
					}

					// A full clone follows tags: annotated ones arrive as tag objects.
					dir3 := t.TempDir()
					f.mustGit(t, dir3, "-c", pv, "-c", auth, "clone", "-q", f.url, "c")
					c := filepath.Join(dir3, "c")
					if got := f.mustGit(t, c, "cat-file", "-t", "refs/tags/v1"); got != "tag" {
						t.Errorf("v1 is a %s, want an annotated tag", got)
					}
					if got := f.mustGit(t, c, "rev-parse", "refs/tags/light"); got != f.commits[2] {
						t.Errorf("light = %s, want %s", got, f.commits[2])
					}
					if got := f.mustGit(t, c, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
						t.Errorf("clone HEAD = %s", got)
					}
					f.mustGit(t, c, "fsck", "--no-progress")
					// An incremental fetch negotiates with haves.
					f.mustGit(t, c, "-c", pv, "-c", auth, "fetch", "--tags", "origin")
				})
			}
			// What protocol each client spoke: http-backend answers v2 when
			// asked; the native upload-pack answers v0 (git falls back).
			var sawV2Command bool
			for _, ex := range f.s.Recorder().Exchanges() {
				if ex.Resource == "git git-upload-pack" && bytes.Contains(ex.RequestBody, []byte("command=fetch")) {
					sawV2Command = true
				}
			}
			if want := backend == devserver.BackendGit; sawV2Command != want {
				t.Errorf("protocol v2 fetch command seen = %v, want %v", sawV2Command, want)
			}
		})
	}
}

// TestRepositoryGoGit fetches with go-git, the checkout step's client in
// images without git.
func TestRepositoryGoGit(t *testing.T) {
	for _, backend := range backends {
		t.Run(string(backend), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, backend)
			ca, err := os.ReadFile(f.ca)
			if err != nil {
				t.Fatal(err)
			}
			ctx := waitCtx(t)
			auth := &githttp.TokenAuth{Token: f.token}

			// Shallow single-branch clone.
			dir := t.TempDir()
			repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
				URL: f.url, Auth: auth, CABundle: ca, Depth: 1, SingleBranch: true,
				ReferenceName: plumbing.NewBranchReferenceName("main"), Tags: git.NoTags,
			})
			if err != nil {
				t.Fatalf("shallow clone: %v", err)
			}
			head, err := repo.Head()
			if err != nil || head.Hash().String() != f.commits[4] {
				t.Fatalf("HEAD = %v, %v; want %s", head, err, f.commits[4])
			}
			if b, err := os.ReadFile(filepath.Join(dir, "README.md")); err != nil || string(b) != "version 5\n" {
				t.Errorf("README.md = %q, %v", b, err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, ".git", "shallow")); err != nil || strings.TrimSpace(string(b)) != f.commits[4] {
				t.Errorf(".git/shallow = %q, %v", b, err)
			}

			// Fetch by commit id into an empty repository, as the checkout does.
			dir2 := t.TempDir()
			r2, err := git.PlainInit(dir2, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r2.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{f.url}}); err != nil {
				t.Fatal(err)
			}
			mid := f.commits[2]
			err = r2.FetchContext(ctx, &git.FetchOptions{
				RemoteName: "origin", Auth: auth, CABundle: ca, Depth: 1, Tags: git.NoTags,
				RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec("+" + mid + ":refs/remotes/origin/mid")},
			})
			if err != nil {
				t.Fatalf("fetch by commit: %v", err)
			}
			if ref, err := r2.Reference("refs/remotes/origin/mid", false); err != nil || ref.Hash().String() != mid {
				t.Errorf("origin/mid = %v, %v; want %s", ref, err, mid)
			}

			// Full clone with every tag.
			dir3 := t.TempDir()
			r3, err := git.PlainCloneContext(ctx, dir3, false, &git.CloneOptions{URL: f.url, Auth: auth, CABundle: ca, Tags: git.AllTags})
			if err != nil {
				t.Fatalf("full clone: %v", err)
			}
			v1, err := r3.Tag("v1")
			if err != nil {
				t.Fatalf("tag v1: %v", err)
			}
			if _, err := r3.TagObject(v1.Hash()); err != nil {
				t.Errorf("v1 is not an annotated tag object: %v", err)
			}
			iter, err := r3.Log(&git.LogOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			iter.ForEach(func(*object.Commit) error { n++; return nil })
			if n != 5 {
				t.Errorf("full clone has %d commits on main, want 5", n)
			}
		})
	}
}

// TestRepositoryAuth checks who may read a repository and what strangers
// are told, as Azure Repos answers git clients.
func TestRepositoryAuth(t *testing.T) {
	f := newFixture(t, devserver.BackendNative)
	c := httpClient(t, f.s)
	expired, err := f.s.QueueJob(simpleJob(14), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.s.ExpireJobToken(expired.ID()); err != nil {
		t.Fatal(err)
	}
	refs := f.url + "/info/refs?service=git-upload-pack"
	base := strings.TrimSuffix(f.url, "/app")
	for _, tc := range []struct {
		name, method, url, auth string
		want                    int
		body                    string
	}{
		{"job token", "GET", refs, "bearer " + f.token, 200, "# service=git-upload-pack"},
		{"PAT as Basic", "GET", refs, basic(f.s.PAT()), 200, "# service=git-upload-pack"},
		{"project and name ignore case", "GET", strings.Replace(refs, "MyProject/_git/app", "myproject/_git/APP", 1), "Bearer " + f.token, 200, "# service=git-upload-pack"},
		{"no credential", "GET", refs, "", 401, "Authentication failed"},
		{"unknown token", "GET", refs, "Bearer not-a-token", 401, "Authentication failed"},
		{"unknown PAT", "GET", refs, basic("wrongwrongwrong"), 401, "Authentication failed"},
		{"expired job token", "GET", refs, "Bearer " + expired.Token(), 401, "Authentication failed"},
		{"unknown repository, anonymous", "GET", base + "/nosuch/info/refs?service=git-upload-pack", "", 401, "Authentication failed"},
		{"unknown repository", "GET", base + "/nosuch/info/refs?service=git-upload-pack", "Bearer " + f.token, 404, "TF401019"},
		{"push advertisement", "GET", f.url + "/info/refs?service=git-receive-pack", "Bearer " + f.token, 403, "TF401027"},
		{"push", "POST", f.url + "/git-receive-pack", "Bearer " + f.token, 403, "TF401027"},
		{"dumb protocol", "GET", f.url + "/info/refs", "Bearer " + f.token, 403, "smart HTTP"},
		{"other path", "GET", f.url + "/HEAD", "Bearer " + f.token, 404, "not a git smart HTTP route"},
		{"upload-pack by GET", "GET", f.url + "/git-upload-pack", "Bearer " + f.token, 405, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(res.Body)
			if res.StatusCode != tc.want || !strings.Contains(b.String(), tc.body) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", tc.method, tc.url, res.StatusCode, b.String(), tc.want, tc.body)
			}
			if tc.want == 401 {
				ch := res.Header.Values("WWW-Authenticate")
				if len(ch) < 2 || !strings.HasPrefix(ch[0], "Bearer authorization_uri=https://login.microsoftonline.com/") || !strings.HasPrefix(ch[1], "Basic realm=") {
					t.Errorf("401 challenges = %q", ch)
				}
				if strings.Contains(b.String(), f.token) {
					t.Error("the 401 body repeats the token")
				}
			}
		})
	}
	if v := f.s.Violations(); len(v) > 0 {
		t.Errorf("violations: %v", v)
	}
	// A 401 makes git ask for credentials, which the checkout step reports as
	// a rejected credential.
	dir := t.TempDir()
	out, err := f.gitCLI(t, dir, "-c", "http.extraheader=AUTHORIZATION: bearer "+expired.Token(), "ls-remote", f.url)
	if err == nil || !strings.Contains(out, "could not read Username") {
		t.Errorf("ls-remote with an expired token: %v\n%s", err, out)
	}
}

// TestAddRepository covers what can be served and the clone URL's shape.
func TestAddRepository(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is needed to build the fixture repositories (make deps installs it)")
	}
	s := startServer(t, devserver.Options{Org: "contoso"})
	work := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "HOME="+work,
			"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.invalid", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "a.txt"), []byte("a"), 0o644)
	run("add", "a.txt")
	run("commit", "-q", "-m", "one")

	u, err := s.AddRepository("Fabrikam", "web", work) // a work tree
	if err != nil {
		t.Fatal(err)
	}
	if want := s.URL() + "/Fabrikam/_git/web"; u != want {
		t.Errorf("url = %s, want %s", u, want)
	}
	if _, err := s.AddRepository("fabrikam", "WEB", filepath.Join(work, ".git")); err == nil || !strings.Contains(err.Error(), "already has a repository") {
		t.Errorf("duplicate: %v", err)
	}
	for _, bad := range []struct{ project, name, dir string }{
		{"p", "a/b", work}, {"_p", "n", work}, {"p", "", work}, {"p", "n", t.TempDir()},
	} {
		if _, err := s.AddRepository(bad.project, bad.name, bad.dir); err == nil {
			t.Errorf("AddRepository(%q, %q, %q) succeeded", bad.project, bad.name, bad.dir)
		}
	}
	if _, err := s.AddRepositoryWith("p", "n", work, devserver.RepositoryOptions{Backend: "ftp"}); err == nil {
		t.Error("unknown backend accepted")
	}
	repos := s.Repositories()
	if len(repos) != 1 || repos[0].GitDir != filepath.Join(work, ".git") || repos[0].URL != u {
		t.Errorf("Repositories() = %+v", repos)
	}
}

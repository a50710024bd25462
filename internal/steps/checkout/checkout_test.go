package checkout

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/gitserver"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/stepstest"
	"github.com/goagent-dev/goagent/internal/wire"
)

// appRepo is a small repository: three commits on main, a tag on the first,
// a feature branch.
type appRepo struct {
	repo       *gitserver.Repo
	c1, c2, c3 string
}

func (w *world) appRepo(name string) appRepo {
	r := w.repo(name)
	a := appRepo{repo: r}
	a.c1 = w.commit(r, "main", "one", map[string]string{"README.md": "one\n", "src/main.go": "package main\n", ".gitignore": "*.log\n"})
	a.c2 = w.commit(r, "main", "two", map[string]string{"README.md": "two\n"})
	a.c3 = w.commit(r, "main", "three", map[string]string{"README.md": "three\n", "docs/x.txt": "x\n"})
	if err := r.Tag(w.ctx, "v1.0", a.c1, true); err != nil {
		w.t.Fatal(err)
	}
	w.commit(r, "feature", "feature", map[string]string{"f.txt": "f\n"})
	return a
}

func (w *world) singleJob(repos ...wire.RepositoryResource) *steps.Job {
	return &steps.Job{
		Repositories:  repos,
		Endpoints:     []wire.ServiceEndpoint{w.systemConnection(w.token)},
		CheckoutCount: 1,
		AgentVersion:  "4.260.0",
	}
}

func TestCheckout(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			cases := []struct {
				name      string
				inputs    map[string]string
				version   func(a appRepo) string
				wantHead  func(a appRepo) string
				shallow   bool
				wantTag   bool
				wantFiles map[string]string
			}{
				{
					name:      "full clone of the tip",
					inputs:    map[string]string{"repository": "self"},
					version:   func(a appRepo) string { return a.c3 },
					wantHead:  func(a appRepo) string { return a.c3 },
					wantTag:   true,
					wantFiles: map[string]string{"README.md": "three\n", "docs/x.txt": "x\n"},
				},
				{
					name:      "full clone of an older commit",
					inputs:    map[string]string{"repository": "self"},
					version:   func(a appRepo) string { return a.c2 },
					wantHead:  func(a appRepo) string { return a.c2 },
					wantTag:   true,
					wantFiles: map[string]string{"README.md": "two\n"},
				},
				{
					name:      "shallow fetch by commit",
					inputs:    map[string]string{"repository": "self", "fetchDepth": "1"},
					version:   func(a appRepo) string { return a.c2 },
					wantHead:  func(a appRepo) string { return a.c2 },
					shallow:   true,
					wantTag:   true,
					wantFiles: map[string]string{"README.md": "two\n"},
				},
				{
					name:      "no tags",
					inputs:    map[string]string{"repository": "self", "fetchTags": "false"},
					version:   func(a appRepo) string { return a.c3 },
					wantHead:  func(a appRepo) string { return a.c3 },
					wantTag:   false,
					wantFiles: map[string]string{"README.md": "three\n"},
				},
				{
					name:      "no version: the branch tip",
					inputs:    map[string]string{"repository": "self"},
					version:   func(appRepo) string { return "" },
					wantHead:  func(a appRepo) string { return a.c3 },
					wantTag:   true,
					wantFiles: map[string]string{"README.md": "three\n"},
				},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					w := newWorld(t)
					a := w.appRepo("app.git")
					job := w.singleJob(w.repoResource("self", a.repo, "Git", tc.version(a), nil))
					st := w.newStep(m, job, tc.inputs, nil)
					if err := w.run(st); err != nil {
						t.Fatalf("checkout: %v\n%s", err, strings.Join(st.console.all(), "\n"))
					}
					dir := filepath.Join(w.build, "s")
					if got := w.git(dir, "rev-parse", "HEAD"); got != tc.wantHead(a) {
						t.Fatalf("HEAD = %s, want %s", got, tc.wantHead(a))
					}
					for f, want := range tc.wantFiles {
						if got := readFile(t, filepath.Join(dir, f)); got != want {
							t.Fatalf("%s = %q, want %q", f, got, want)
						}
					}
					if got := w.git(dir, "rev-parse", "--is-shallow-repository"); got != map[bool]string{true: "true", false: "false"}[tc.shallow] {
						t.Fatalf("shallow = %s, want %t", got, tc.shallow)
					}
					if tc.shallow {
						if n := w.git(dir, "rev-list", "--count", "HEAD"); n != "1" {
							t.Fatalf("shallow history has %s commits, want 1", n)
						}
					}
					tags := w.git(dir, "tag", "--list")
					if (tags == "v1.0") != tc.wantTag {
						t.Fatalf("tags = %q, want v1.0 present: %t", tags, tc.wantTag)
					}
					// Every request carried exactly the job token as a bearer header.
					for h, n := range w.authHeaders() {
						if h != "bearer "+w.token {
							t.Fatalf("%d request(s) with Authorization %q", n, h)
						}
					}
					cfg := filepath.Join(dir, ".git", "config")
					assertNoLeak(t, st, bearerSecrets(w.token), cfg)
					if !st.console.hasSecret(w.token) || !st.console.hasSecret("bearer "+w.token) {
						t.Fatal("the token and the header were not registered as secrets")
					}
					if st.console.lateSecret() {
						t.Fatal("a secret was registered after the step printed something")
					}
					if got := readFile(t, cfg); strings.Contains(got, "extraheader") {
						t.Fatalf(".git/config holds an extraheader without persistCredentials:\n%s", got)
					}
					if got := w.git(dir, "remote", "get-url", "origin"); got != w.srv.RepoURL("app.git") {
						t.Fatalf("origin = %q", got)
					}
					for _, name := range []string{"build.sourcesDirectory", "build.repository.localpath", "system.defaultWorkingDirectory"} {
						if v, _ := st.vars.Get(name); v != dir {
							t.Fatalf("%s = %q, want %q", name, v, dir)
						}
					}
				})
			}
		})
	}
}

// The CLI path prints the official command sequence.
func TestCLICommandSequence(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c2, nil))
	st := w.newStep(cliMode, job, map[string]string{"repository": "self", "fetchDepth": "1"}, nil)
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(w.build, "s")
	url := w.srv.RepoURL("app.git")
	fetch := "--config-env=http.extraheader=env_var_http.extraheader fetch --force --tags --prune --prune-tags --progress --no-recurse-submodules origin --depth=1 "
	want := []string{
		"git version",
		`git init "` + dir + `"`,
		"git remote add origin " + url,
		"git config gc.auto 0",
		"git config --get-all http." + url + ".extraheader",
		"git config --get-all http.extraheader",
		"git config --get-regexp .*extraheader",
		"git config --get-all http.proxy",
		"git config http.version HTTP/1.1",
		"git " + fetch + "+" + a.c2 + ":refs/remotes/origin/" + a.c2,
		"git " + fetch + "+" + a.c2,
		"git checkout --progress --force refs/remotes/origin/" + a.c2,
	}
	if got := st.console.commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	lines := st.console.all()
	if !contains(lines, "Syncing repository: app (Git)") || !contains(lines, "git version 2.") {
		t.Fatalf("missing banner lines:\n%s", strings.Join(lines, "\n"))
	}
	// git's progress went to the step's stderr.
	if !strings.Contains(st.stderr.String(), "origin/"+a.c2) {
		t.Fatalf("fetch output not streamed: %q", st.stderr.String())
	}
	for _, r := range w.srv.Requests() {
		if !strings.HasPrefix(r.UserAgent, "git/") || !strings.HasSuffix(r.UserAgent, "(vsts-agent-git/4.260.0)") {
			t.Fatalf("user agent %q", r.UserAgent)
		}
	}
}

// With the secure-parameter knob off the header travels as -c, masked in the log.
func TestCLIInlineHeaderIsMasked(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	st := w.newStep(cliMode, job, map[string]string{"repository": "self"}, newVars("agent.GitUseSecureParameterPassing", "false"))
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	if !contains(st.console.commands(), `git -c http.extraheader="AUTHORIZATION: bearer ***" fetch --force --tags`) {
		t.Fatalf("commands:\n%s", strings.Join(st.console.commands(), "\n"))
	}
	assertNoLeak(t, st, bearerSecrets(w.token))
}

// A second checkout into a dirty directory: clean restores tracked files and
// removes untracked and ignored ones; without clean they stay.
func TestSecondCheckoutIntoDirtyDirectory(t *testing.T) {
	for _, m := range modes {
		for _, clean := range []bool{true, false} {
			name := string(m) + map[bool]string{true: "/clean", false: "/no-clean"}[clean]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				w := newWorld(t)
				a := w.appRepo("app.git")
				job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c2, nil))
				st := w.newStep(m, job, map[string]string{"repository": "self"}, nil)
				if err := w.run(st); err != nil {
					t.Fatal(err)
				}
				dir := filepath.Join(w.build, "s")
				mustWrite(t, filepath.Join(dir, "untracked.txt"), "u")
				mustWrite(t, filepath.Join(dir, "build.log"), "ignored")
				mustWrite(t, filepath.Join(dir, "newdir", "deep", "file"), "u")
				mustWrite(t, filepath.Join(dir, "src", "main.go"), "modified")

				w.srv.ResetRequests()
				job2 := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
				st2 := w.newStep(m, job2, map[string]string{"repository": "self", "clean": map[bool]string{true: "true", false: "false"}[clean]}, nil)
				if err := w.run(st2); err != nil {
					t.Fatalf("second checkout: %v\n%s", err, strings.Join(st2.console.all(), "\n"))
				}
				if got := w.git(dir, "rev-parse", "HEAD"); got != a.c3 {
					t.Fatalf("HEAD = %s, want %s", got, a.c3)
				}
				if got := readFile(t, filepath.Join(dir, "README.md")); got != "three\n" {
					t.Fatalf("README.md = %q", got)
				}
				for _, f := range []string{"untracked.txt", "build.log", "newdir"} {
					_, err := os.Stat(filepath.Join(dir, f))
					if clean && err == nil {
						t.Fatalf("%s survived clean", f)
					}
					if !clean && err != nil {
						t.Fatalf("%s was removed without clean: %v\n%s", f, err, strings.Join(st2.console.all(), "\n"))
					}
				}
				main := readFile(t, filepath.Join(dir, "src", "main.go"))
				if !clean && !t.Failed() {
					t.Log(strings.Join(st2.console.all(), "\n"))
				}
				if clean && main != "package main\n" {
					t.Fatalf("tracked file not restored: %q", main)
				}
				if init := contains(st2.console.commands(), "init "); init {
					t.Fatalf("the repository was re-initialised instead of reused:\n%s", strings.Join(st2.console.commands(), "\n"))
				}
				if clean != contains(st2.console.commands(), "clean -ffdx") {
					t.Fatalf("clean=%t but commands were:\n%s", clean, strings.Join(st2.console.commands(), "\n"))
				}
			})
		}
	}
}

func mustWrite(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A directory holding another repository (or no repository) is replaced.
func TestForeignDirectoryIsReplaced(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			a := w.appRepo("app.git")
			other := w.appRepo("other.git")
			dir := filepath.Join(w.build, "s")
			st := w.newStep(m, w.singleJob(w.repoResource("self", other.repo, "Git", other.c1, nil)), map[string]string{"repository": "self"}, nil)
			if err := w.run(st); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(dir, "stray.txt"), "x")
			st = w.newStep(m, w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil)), map[string]string{"repository": "self", "clean": "false"}, nil)
			if err := w.run(st); err != nil {
				t.Fatal(err)
			}
			if got := w.git(dir, "remote", "get-url", "origin"); got != w.srv.RepoURL("app.git") {
				t.Fatalf("origin = %s", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "stray.txt")); err == nil {
				t.Fatal("the other repository's files survived")
			}
		})
	}
}

func TestSubmodules(t *testing.T) {
	for _, m := range modes {
		for _, recursive := range []bool{false, true} {
			t.Run(string(m)+map[bool]string{true: "/recursive", false: "/top-level"}[recursive], func(t *testing.T) {
				t.Parallel()
				w := newWorld(t)
				leaf := w.repo("leaf.git")
				leafSHA := w.commit(leaf, "main", "leaf", map[string]string{"leaf.txt": "leaf\n"})
				lib := w.repo("lib.git")
				w.commit(lib, "main", "lib", map[string]string{"lib.txt": "lib\n"})
				libSHA, err := lib.AddSubmodules(w.ctx, "main", "nested", gitserver.Submodule{Path: "leaf", URL: "../leaf.git", Commit: leafSHA})
				if err != nil {
					t.Fatal(err)
				}
				app := w.repo("app.git")
				w.commit(app, "main", "app", map[string]string{"app.txt": "app\n"})
				appSHA, err := app.AddSubmodules(w.ctx, "main", "sub", gitserver.Submodule{Path: "ext/lib", URL: "../lib.git", Commit: libSHA})
				if err != nil {
					t.Fatal(err)
				}
				in := map[string]string{"repository": "self", "submodules": "true"}
				if recursive {
					in["submodules"] = "recursive"
				}
				st := w.newStep(m, w.singleJob(w.repoResource("self", app, "Git", appSHA, nil)), in, nil)
				if err := w.run(st); err != nil {
					t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
				}
				dir := filepath.Join(w.build, "s")
				if got := readFile(t, filepath.Join(dir, "ext", "lib", "lib.txt")); got != "lib\n" {
					t.Fatalf("lib.txt = %q", got)
				}
				if got := w.git(filepath.Join(dir, "ext", "lib"), "rev-parse", "HEAD"); got != libSHA {
					t.Fatalf("submodule HEAD = %s, want %s", got, libSHA)
				}
				_, err = os.Stat(filepath.Join(dir, "ext", "lib", "leaf", "leaf.txt"))
				if recursive && err != nil {
					t.Fatalf("nested submodule missing: %v", err)
				}
				if !recursive && err == nil {
					t.Fatal("nested submodule checked out without recursive")
				}
				for h, n := range w.authHeaders() {
					if h != "bearer "+w.token {
						t.Fatalf("%d request(s) with Authorization %q", n, h)
					}
				}
				if m == cliMode {
					key := "http." + strings.TrimSuffix(w.srv.URL, "/") + ".extraheader"
					want := "git --config-env=" + key + "=env_var_" + key + " submodule update --init --force"
					if recursive {
						want += " --recursive"
					}
					if !contains(st.console.commands(), want) {
						t.Fatalf("want %q in\n%s", want, strings.Join(st.console.commands(), "\n"))
					}
				}
				assertNoLeak(t, st, bearerSecrets(w.token), filepath.Join(dir, ".git", "config"))
			})
		}
	}
}

// Two checkout steps: each repository goes to s/<name>, the variables
// follow the worker's rules.
func TestMultiRepositoryLayout(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			a := w.appRepo("app.git")
			tools := w.repo("tools.git")
			toolsSHA := w.commit(tools, "main", "tools", map[string]string{"tool.sh": "echo\n"})
			job := &steps.Job{
				Repositories: []wire.RepositoryResource{
					w.repoResource("self", a.repo, "Git", a.c3, nil),
					w.repoResource("tools", tools, "Git", toolsSHA, nil),
				},
				Endpoints:     []wire.ServiceEndpoint{w.systemConnection(w.token)},
				CheckoutCount: 2,
			}
			vars := newVars("build.sourcesDirectory", filepath.Join(w.build, "s"))
			st := w.newStep(m, job, map[string]string{"repository": "self"}, vars)
			if err := w.run(st); err != nil {
				t.Fatal(err)
			}
			st2 := w.newStep(m, job, map[string]string{"repository": "tools", "workspaceRepo": "true"}, vars)
			if err := w.run(st2); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(w.build, "s", "app", "README.md")); got != "three\n" {
				t.Fatalf("app README = %q", got)
			}
			if got := readFile(t, filepath.Join(w.build, "s", "tools", "tool.sh")); got != "echo\n" {
				t.Fatalf("tool.sh = %q", got)
			}
			if v, _ := vars.Get("build.sourcesDirectory"); v != filepath.Join(w.build, "s") {
				t.Fatalf("build.sourcesDirectory changed to %q", v)
			}
			if _, ok := vars.Get("build.repository.localpath"); ok {
				t.Fatal("build.repository.localpath set although self is at its default s/<name>")
			}
			if v, _ := vars.Get("system.defaultWorkingDirectory"); v != filepath.Join(w.build, "s", "tools") {
				t.Fatalf("system.defaultWorkingDirectory = %q, want the workspaceRepo", v)
			}
			if got := DisplayName(map[string]string{"repository": "tools"}, job); got != "Checkout tools@main to s/tools" {
				t.Fatalf("display name %q", got)
			}
		})
	}
}

// `path` places the repository under the build directory; escaping it fails
// with the official message before anything is fetched.
func TestPathInput(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))

	st := w.newStep(cliMode, job, map[string]string{"repository": "self", "path": "src/app"}, nil)
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(w.build, "src", "app")
	if got := w.git(dir, "rev-parse", "HEAD"); got != a.c3 {
		t.Fatalf("HEAD = %s", got)
	}
	for _, name := range []string{"build.sourcesDirectory", "build.repository.localpath", "system.defaultWorkingDirectory"} {
		if v, _ := st.vars.Get(name); v != dir {
			t.Fatalf("%s = %q, want %q", name, v, dir)
		}
	}

	for _, tc := range []struct{ path, want string }{
		{"../outside", "Input path '../outside' should resolve to a directory under '" + w.build + "', current resolved path '" + filepath.Join(w.work, "outside") + "'."},
		{".", "Input path '.' should resolve to a directory under '" + w.build + "', current resolved path '" + w.build + "'."},
		{"s/../../1x", "should resolve to a directory under"},
		{"/etc/app", "/etc/app can not be a rooted path."},
		{"../../../../../../../../../../../../x", "is invalid"},
	} {
		for _, m := range modes {
			w.srv.ResetRequests()
			st := w.newStep(m, job, map[string]string{"repository": "self", "path": tc.path}, nil)
			err := w.run(st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s path %q: err = %v, want %q", m, tc.path, err, tc.want)
			}
			if n := len(w.srv.Requests()); n != 0 {
				t.Fatalf("%s path %q: %d requests made before rejecting", m, tc.path, n)
			}
		}
	}
}

// A rejected token fails fast with a message naming the cause and the fix.
func TestWrongToken(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			a := w.appRepo("app.git")
			bad := randomToken(t)
			job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
			job.Endpoints = []wire.ServiceEndpoint{w.systemConnection(bad)}
			st := w.newStep(m, job, map[string]string{"repository": "self"}, nil)
			err := w.run(st)
			want := "authentication failed for " + w.srv.RepoURL("app.git") + ": the job's access token was rejected — "
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("err = %v, want prefix %q", err, want)
			}
			if strings.Contains(err.Error(), bad) {
				t.Fatal("the token is in the error")
			}
			// Not retried: one rejected discovery request.
			reqs := w.srv.Requests()
			if len(reqs) != 1 || reqs[0].Status != http.StatusUnauthorized {
				t.Fatalf("requests: %+v", reqs)
			}
			assertNoLeak(t, st, bearerSecrets(bad), filepath.Join(w.build, "s", ".git", "config"))
		})
	}
}

// persistCredentials leaves the header in .git/config for later steps; the
// post-job step removes it.
func TestPersistCredentials(t *testing.T) {
	for _, m := range modes {
		for _, secure := range []string{"true", "false"} {
			t.Run(string(m)+"/secure="+secure, func(t *testing.T) {
				t.Parallel()
				w := newWorld(t)
				a := w.appRepo("app.git")
				job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
				vars := newVars("agent.GitUseSecureParameterPassing", secure)
				st := w.newStep(m, job, map[string]string{"repository": "self", "persistCredentials": "true"}, vars)
				st.ex.DisplayName = "Checkout app@main to s"
				if err := w.run(st); err != nil {
					t.Fatal(err)
				}
				dir := filepath.Join(w.build, "s")
				key := "http." + w.srv.RepoURL("app.git") + ".extraheader"
				if got := w.git(dir, "config", "--get", key); got != "AUTHORIZATION: bearer "+w.token {
					t.Fatalf("persisted header = %q", got)
				}
				// A later script step's plain `git fetch` authenticates with it.
				w.srv.ResetRequests()
				w.git(dir, "fetch", "origin")
				if reqs := w.srv.Requests(); len(reqs) == 0 || reqs[0].Authorization != "bearer "+w.token {
					t.Fatalf("script fetch did not use the persisted header: %+v", reqs)
				}
				assertNoLeak(t, st, bearerSecrets(w.token))

				if len(st.Posts) != 1 || st.Posts[0].DisplayName != "Checkout app@main to s" {
					t.Fatalf("post-job steps: %+v", st.Posts)
				}
				post := w.newStep(m, job, nil, vars)
				if err := st.Posts[0].Run(w.ctx, post.ex); err != nil {
					t.Fatalf("post-job: %v\n%s", err, strings.Join(post.console.all(), "\n"))
				}
				if cfg := readFile(t, filepath.Join(dir, ".git", "config")); strings.Contains(cfg, w.token) || strings.Contains(cfg, "extraheader") {
					t.Fatalf("credentials left after the post-job step:\n%s", cfg)
				}
				if !contains(post.console.all(), "Cleaning any cached credential from repository: app (Git)") {
					t.Fatalf("post-job output:\n%s", strings.Join(post.console.all(), "\n"))
				}
				assertNoLeak(t, post, bearerSecrets(w.token))
			})
		}
	}
}

// Without persistCredentials the post-job step still runs and changes nothing.
func TestPostJobWithoutPersistedCredentials(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	st := w.newStep(cliMode, job, map[string]string{"repository": "self"}, nil)
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(w.build, "s", ".git", "config")
	before := readFile(t, cfgPath)
	if len(st.Posts) != 1 {
		t.Fatalf("post-job steps: %d", len(st.Posts))
	}
	post := w.newStep(cliMode, job, nil, nil)
	if err := st.Posts[0].Run(w.ctx, post.ex); err != nil {
		t.Fatal(err)
	}
	if len(post.console.commands()) != 0 {
		t.Fatalf("post-job ran commands: %v", post.console.commands())
	}
	if after := readFile(t, cfgPath); after != before {
		t.Fatal("post-job changed .git/config")
	}
}

// Cancelling the step while the server holds the fetch stops the client:
// its connection goes away and Run returns the cancellation.
func TestCancelMidFetch(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			a := w.appRepo("app.git")
			held := make(chan struct{})
			gone := make(chan struct{})
			w.srv.SetBefore(func(r *http.Request) {
				if r.Method != http.MethodPost {
					return
				}
				select {
				case held <- struct{}{}:
				default:
					return
				}
				// The server notices a closed connection only once the
				// request body has been read.
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				select {
				case <-r.Context().Done():
					close(gone)
				case <-time.After(time.Minute):
				}
			})
			job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
			st := w.newStep(m, job, map[string]string{"repository": "self"}, nil)
			ctx, cancel := context.WithCancel(w.ctx)
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- fastDef().Run(ctx, st.ex) }()
			select {
			case <-held:
			case err := <-errc:
				t.Fatalf("finished before the fetch was held: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("fetch never reached the server")
			}
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Run did not return after cancellation")
			}
			select {
			case <-gone:
			case <-time.After(time.Minute):
				t.Fatal("the client kept its connection open after cancellation")
			}
		})
	}
}

// Basic auth from a PAT service connection: the base64 is a secret too.
func TestPersonalAccessTokenEndpoint(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			pat := "pat" + randomToken(t)
			w := newWorld(t, func(o *gitserver.Options) {
				o.Credentials = []gitserver.Credential{gitserver.Basic("PersonalAccessToken", pat)}
			})
			a := w.appRepo("app.git")
			res := w.repoResource("self", a.repo, "GitHub", a.c3, nil)
			res.Endpoint = &wire.ResourceReference{ID: "5e1f0b4c-0000-4000-8000-000000000001", Name: "github-conn"}
			job := w.singleJob(res)
			job.Endpoints = append(job.Endpoints, wire.ServiceEndpoint{
				ID: "5e1f0b4c-0000-4000-8000-000000000001", Name: "github-conn", Type: "github",
				Authorization: wire.EndpointAuth{Scheme: "PersonalAccessToken", Parameters: map[string]string{"accessToken": pat}},
			})
			st := w.newStep(m, job, map[string]string{"repository": "self", "fetchDepth": "1"}, nil)
			if err := w.run(st); err != nil {
				t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
			}
			b64 := base64.StdEncoding.EncodeToString([]byte("PersonalAccessToken:" + pat))
			if !st.console.hasSecret(b64) {
				t.Fatal("basic credential not registered as a secret")
			}
			for h := range w.authHeaders() {
				if h != "basic "+b64 {
					t.Fatalf("Authorization %q", h)
				}
			}
			assertNoLeak(t, st, []string{pat, b64}, filepath.Join(w.build, "s", ".git", "config"))
		})
	}
}

// system.selfmanagegitcreds: no header at all.
func TestSelfManagedCredentials(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, func(o *gitserver.Options) { o.Credentials = nil })
			a := w.appRepo("app.git")
			job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
			st := w.newStep(m, job, map[string]string{"repository": "self"}, newVars("system.selfmanagegitcreds", "true"))
			if err := w.run(st); err != nil {
				t.Fatal(err)
			}
			for h := range w.authHeaders() {
				if h != "" {
					t.Fatalf("Authorization %q sent in self-managed mode", h)
				}
			}
			if !contains(st.console.all(), "You are in self manage git creds mode.") {
				t.Fatal("self-manage notice missing")
			}
		})
	}
}

// go-git against a server that refuses commits by id: it falls back to
// fetching branches and still checks out the requested commit.
func TestGoGitFetchByCommitFallback(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(o *gitserver.Options) { o.DenySHA1InWant = true })
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	st := w.newStep(goGitMode, job, map[string]string{"repository": "self", "fetchDepth": "1"}, nil)
	if err := w.run(st); err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
	}
	if got := w.git(filepath.Join(w.build, "s"), "rev-parse", "HEAD"); got != a.c3 {
		t.Fatalf("HEAD = %s", got)
	}
	if !contains(st.console.all(), "fetching its branches instead") {
		t.Fatalf("fallback not logged:\n%s", strings.Join(st.console.all(), "\n"))
	}
	if !contains(st.console.all(), "git was not found on the step's PATH") {
		t.Fatal("go-git notice missing")
	}
	if !contains(st.console.commands(), `go-git -c http.extraheader="AUTHORIZATION: bearer ***" fetch --force --tags --prune --progress --no-recurse-submodules origin --depth=1 +`+a.c3+":refs/remotes/origin/"+a.c3) {
		t.Fatalf("commands:\n%s", strings.Join(st.console.commands(), "\n"))
	}
}

// What go-git cannot do fails before touching the network, with the remedy.
func TestGoGitUnsupportedInputs(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	for _, tc := range []struct {
		inputs map[string]string
		vars   *stepstest.Vars
		want   string
	}{
		{map[string]string{"repository": "self", "lfs": "true"}, nil, "no Git LFS support: use an agent image with git and git-lfs installed"},
		{map[string]string{"repository": "self"}, newVars("agent.source.git.lfs", "true"), "no Git LFS support"},
		{map[string]string{"repository": "self", "fetchFilter": "blob:none"}, newVars("AGENT_USE_FETCH_FILTER_IN_CHECKOUT_TASK", "true"), "use an agent image with git installed, or remove fetchFilter"},
		{map[string]string{"repository": "self", "sparseCheckoutDirectories": "src"}, newVars("AGENT_USE_SPARSE_CHECKOUT_IN_CHECKOUT_TASK", "true"), "sparse checkout needs the git CLI"},
	} {
		w.srv.ResetRequests()
		st := w.newStep(goGitMode, job, tc.inputs, tc.vars)
		err := w.run(st)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: err = %v, want %q", tc.inputs, err, tc.want)
		}
		if n := len(w.srv.Requests()); n != 0 {
			t.Fatalf("%v: %d requests before failing", tc.inputs, n)
		}
	}
}

// LFS with the CLI: git-lfs must exist; when it does, the official LFS
// commands run (a recording git-lfs stands in for the real one).
func TestCLILfs(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	// A PATH with git but no git-lfs.
	bin := t.TempDir()
	realGit, err := lookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(realGit, filepath.Join(bin, "git")); err != nil {
		t.Fatal(err)
	}
	st := w.newStepPath(bin, job, map[string]string{"repository": "self", "lfs": "true"}, nil)
	err = w.run(st)
	if err == nil || !strings.Contains(err.Error(), "git-lfs is not on the step's PATH") {
		t.Fatalf("err = %v", err)
	}

	// A recording git-lfs.
	record := filepath.Join(t.TempDir(), "lfs.log")
	script := "#!/bin/sh\necho \"$@\" >> " + record + "\nif [ \"$1\" = version ]; then echo 'git-lfs/3.4.0 (fake)'; fi\nexit 0\n"
	mustWrite(t, filepath.Join(bin, "git-lfs"), script)
	if err := os.Chmod(filepath.Join(bin, "git-lfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	st = w.newStepPath(bin+":"+os.Getenv("PATH"), job, map[string]string{"repository": "self", "lfs": "true"}, nil)
	if err := w.run(st); err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
	}
	calls := readFile(t, record)
	for _, want := range []string{"version", "install --local", "fetch origin " + a.c3} {
		if !strings.Contains(calls, want) {
			t.Fatalf("git-lfs calls:\n%s\nmissing %q", calls, want)
		}
	}
	if !contains(st.console.all(), "git-lfs/3.4.0 (fake)") {
		t.Fatal("git lfs version not printed")
	}
	key := "http." + w.srv.URL + ".extraheader"
	if !contains(st.console.commands(), "git --config-env="+key+"=env_var_"+key+" lfs fetch origin "+a.c3) {
		t.Fatalf("commands:\n%s", strings.Join(st.console.commands(), "\n"))
	}
}

func lookPath(name string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New(name + " not found")
}

// Inputs and variables that stop or redirect the step.
func TestSkipAndInputErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	res := w.repoResource("self", a.repo, "Git", a.c3, nil)
	tfvc := w.repoResource("legacy", a.repo, "Tfvc", "", nil)
	job := w.singleJob(res, tfvc)
	for _, tc := range []struct {
		name    string
		inputs  map[string]string
		vars    *stepstest.Vars
		wantErr string
		wantOut string
	}{
		{"agent.source.skip", map[string]string{"repository": "self"}, newVars("agent.source.skip", "true"), "", "Skip sync source for repository."},
		{"build.syncSources=false", map[string]string{"repository": "self"}, newVars("build.syncSources", "false"), "", "Skip sync source for repository."},
		{"checkout none", map[string]string{"repository": "none"}, nil, "", "nothing to check out"},
		{"missing alias", map[string]string{"repository": "nope"}, nil, `repository alias "nope" is not among the job's repository resources [self, legacy]`, ""},
		{"empty alias", map[string]string{}, nil, "the required input 'repository' is empty", ""},
		{"tfvc", map[string]string{"repository": "legacy"}, nil, "it is a Tfvc repository: goagent checks out git repositories only", ""},
	} {
		w.srv.ResetRequests()
		st := w.newStep(cliMode, job, tc.inputs, tc.vars)
		err := w.run(st)
		if tc.wantErr == "" && err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Fatalf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
		if tc.wantOut != "" && !contains(st.console.all(), tc.wantOut) {
			t.Fatalf("%s: output %v", tc.name, st.console.all())
		}
		if len(st.console.commands()) != 0 || len(w.srv.Requests()) != 0 {
			t.Fatalf("%s: ran git anyway: %v", tc.name, st.console.commands())
		}
	}
}

// checkoutOptions on the repository fill inputs the step left empty, and
// agent.source.git.shallowFetchDepth overrides them all.
func TestCheckoutOptionsAndOverrides(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	opts := map[string]any{"checkoutOptions": map[string]any{"fetchDepth": "1"}}

	st := w.newStep(cliMode, w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, opts)), map[string]string{"repository": "self"}, nil)
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	if !contains(st.console.commands(), "--depth=1") {
		t.Fatalf("checkoutOptions.fetchDepth not applied:\n%s", strings.Join(st.console.commands(), "\n"))
	}

	st = w.newStep(cliMode, w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, opts)), map[string]string{"repository": "self"},
		newVars("agent.source.git.shallowFetchDepth", "0", "build.repository.clean", "false"))
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	cmds := st.console.commands()
	if contains(cmds, "--depth=") {
		t.Fatalf("shallowFetchDepth=0 did not win:\n%s", strings.Join(cmds, "\n"))
	}
	if !contains(cmds, "--unshallow") {
		t.Fatalf("a full fetch into the shallow clone should unshallow:\n%s", strings.Join(cmds, "\n"))
	}
	if contains(cmds, "clean -ffdx") {
		t.Fatal("build.repository.clean=false did not override clean")
	}
}

// A transient server error is retried with a back-off warning.
func TestFetchRetry(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			a := w.appRepo("app.git")
			w.srv.FailNext(1, http.StatusInternalServerError)
			st := w.newStep(m, w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil)), map[string]string{"repository": "self"}, nil)
			if err := w.run(st); err != nil {
				t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
			}
			if got := w.git(filepath.Join(w.build, "s"), "rev-parse", "HEAD"); got != a.c3 {
				t.Fatalf("HEAD = %s", got)
			}
			warnings := st.console.Of(stepstest.KindWarning)
			if len(warnings) != 1 || !strings.Contains(warnings[0], "back off 0.01 seconds before retry.") {
				t.Fatalf("warnings: %q", warnings)
			}
			if fetches := len(filterContains(st.console.commands(), " fetch ")); fetches < 2 {
				t.Fatalf("%d fetch commands, want a retry", fetches)
			}
		})
	}
}

func filterContains(list []string, sub string) []string {
	var out []string
	for _, l := range list {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// A checkout that failed leaves a silent post-job step (the official
// cleanup acts only on a finished checkout).
func TestPostJobAfterFailedCheckout(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	job.Endpoints = []wire.ServiceEndpoint{w.systemConnection("wrong")}
	st := w.newStep(cliMode, job, map[string]string{"repository": "self", "persistCredentials": "true"}, nil)
	if err := w.run(st); err == nil {
		t.Fatal("checkout with a wrong token succeeded")
	}
	if len(st.Posts) != 1 {
		t.Fatalf("post-job steps: %d", len(st.Posts))
	}
	post := w.newStep(cliMode, job, nil, nil)
	if err := st.Posts[0].Run(w.ctx, post.ex); err != nil {
		t.Fatal(err)
	}
	if l := post.Console.Lines(); len(l) != 0 {
		t.Fatalf("post-job output after a failed checkout: %+v", l)
	}
}

// fetchFilter (behind its knob) makes a partial clone; the checkout that
// fetches the missing blobs carries the credential too.
func TestCLIFetchFilter(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	st := w.newStep(cliMode, job, map[string]string{"repository": "self", "fetchFilter": "blob:none"}, newVars("AGENT_USE_FETCH_FILTER_IN_CHECKOUT_TASK", "true"))
	if err := w.run(st); err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
	}
	dir := filepath.Join(w.build, "s")
	if got := readFile(t, filepath.Join(dir, "README.md")); got != "three\n" {
		t.Fatalf("README.md = %q", got)
	}
	if got := w.git(dir, "config", "--get", "remote.origin.partialclonefilter"); got != "blob:none" {
		t.Fatalf("partialclonefilter = %q", got)
	}
	cmds := st.console.commands()
	if !contains(cmds, "--no-recurse-submodules origin --filter=blob:none") ||
		!contains(cmds, "git --config-env=http.extraheader=env_var_http.extraheader checkout --progress --force "+a.c3) {
		t.Fatalf("commands:\n%s", strings.Join(cmds, "\n"))
	}
	// Without the knob the input is ignored, as the official agent does.
	st = w.newStep(cliMode, job, map[string]string{"repository": "self", "fetchFilter": "blob:none"}, nil)
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	if contains(st.console.commands(), "--filter=") {
		t.Fatal("fetchFilter applied without AGENT_USE_FETCH_FILTER_IN_CHECKOUT_TASK")
	}
}

// Sparse checkout (behind its knob) with the CLI: cone mode for
// directories; a later checkout without it disables it again.
func TestCLISparseCheckout(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a := w.appRepo("app.git")
	job := w.singleJob(w.repoResource("self", a.repo, "Git", a.c3, nil))
	knob := newVars("AGENT_USE_SPARSE_CHECKOUT_IN_CHECKOUT_TASK", "true")
	st := w.newStep(cliMode, job, map[string]string{"repository": "self", "sparseCheckoutDirectories": "src"}, knob)
	if err := w.run(st); err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(st.console.all(), "\n"))
	}
	dir := filepath.Join(w.build, "s")
	if _, err := os.Stat(filepath.Join(dir, "src", "main.go")); err != nil {
		t.Fatal("src missing from the sparse checkout")
	}
	if _, err := os.Stat(filepath.Join(dir, "docs")); err == nil {
		t.Fatal("docs checked out despite sparse checkout")
	}
	cmds := st.console.commands()
	if !contains(cmds, "git sparse-checkout init --cone") || !contains(cmds, "git sparse-checkout set src") {
		t.Fatalf("commands:\n%s", strings.Join(cmds, "\n"))
	}
	st = w.newStep(cliMode, job, map[string]string{"repository": "self"}, knob)
	if err := w.run(st); err != nil {
		t.Fatal(err)
	}
	if !contains(st.console.commands(), "git sparse-checkout disable") {
		t.Fatalf("commands:\n%s", strings.Join(st.console.commands(), "\n"))
	}
	if _, err := os.Stat(filepath.Join(dir, "docs", "x.txt")); err != nil {
		t.Fatal("docs missing after sparse checkout was disabled")
	}
}

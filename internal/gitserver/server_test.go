package gitserver

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// git runs the git CLI isolated from the host's configuration.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func infoRefs(t *testing.T, s *Server, auth string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.RepoURL("app.git")+"/info/refs?service=git-upload-pack", nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

func TestAuthorization(t *testing.T) {
	root := t.TempDir()
	ctx := testCtx(t)
	r, err := CreateRepo(ctx, root, "app.git")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(ctx, "main", "one", map[string]string{"a": "a"}); err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{Root: root})
	basic := Basic("PersonalAccessToken", "pat-1")
	for _, tc := range []struct {
		name   string
		creds  []Credential
		header string
		want   int
	}{
		{"anonymous allowed", nil, "", http.StatusOK},
		{"bearer missing", []Credential{Bearer("t0k")}, "", http.StatusUnauthorized},
		{"bearer wrong", []Credential{Bearer("t0k")}, "Bearer nope", http.StatusUnauthorized},
		{"bearer right", []Credential{Bearer("t0k")}, "Bearer t0k", http.StatusOK},
		{"scheme case-insensitive", []Credential{Bearer("t0k")}, "bearer t0k", http.StatusOK},
		{"token case-sensitive", []Credential{Bearer("t0k")}, "bearer T0K", http.StatusUnauthorized},
		{"basic right", []Credential{basic}, "basic " + basic.Value, http.StatusOK},
		{"basic for bearer", []Credential{Bearer("t0k")}, "Basic " + basic.Value, http.StatusUnauthorized},
		{"either accepted", []Credential{Bearer("t0k"), basic}, basic.String(), http.StatusOK},
	} {
		s.SetCredentials(tc.creds...)
		s.ResetRequests()
		res := infoRefs(t, s, tc.header)
		if res.StatusCode != tc.want {
			t.Fatalf("%s: status %d, want %d", tc.name, res.StatusCode, tc.want)
		}
		if tc.want == http.StatusOK && res.Header.Get("Content-Type") != "application/x-git-upload-pack-advertisement" {
			t.Fatalf("%s: content type %q", tc.name, res.Header.Get("Content-Type"))
		}
		if tc.want == http.StatusUnauthorized && res.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s: 401 without a challenge", tc.name)
		}
		reqs := s.Requests()
		if len(reqs) != 1 || reqs[0].Authorization != tc.header || reqs[0].Status != tc.want ||
			reqs[0].Path != "/app.git/info/refs" || reqs[0].Query != "service=git-upload-pack" {
			t.Fatalf("%s: recorded %+v", tc.name, reqs)
		}
	}
}

func TestFailNext(t *testing.T) {
	root := t.TempDir()
	if _, err := CreateRepo(testCtx(t), root, "app.git"); err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{Root: root})
	s.FailNext(2, http.StatusBadGateway)
	for i, want := range []int{http.StatusBadGateway, http.StatusBadGateway, http.StatusOK} {
		if got := infoRefs(t, s, "").StatusCode; got != want {
			t.Fatalf("request %d: status %d, want %d", i, got, want)
		}
	}
}

func TestPushIsRefused(t *testing.T) {
	root := t.TempDir()
	if _, err := CreateRepo(testCtx(t), root, "app.git"); err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{Root: root})
	res, err := http.Get(s.RepoURL("app.git") + "/info/refs?service=git-receive-pack")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// Repositories built with the helpers clone over HTTP with the content,
// branches, tags and submodules they were given.
func TestRepositoriesCloneOverHTTP(t *testing.T) {
	ctx := testCtx(t)
	root := t.TempDir()
	lib, err := CreateRepo(ctx, root, "org/lib.git")
	if err != nil {
		t.Fatal(err)
	}
	libSHA, err := lib.Commit(ctx, "main", "lib", map[string]string{"lib.txt": "lib\n"})
	if err != nil {
		t.Fatal(err)
	}
	app, err := CreateRepo(ctx, root, "org/app.git")
	if err != nil {
		t.Fatal(err)
	}
	c1, err := app.Commit(ctx, "main", "one", map[string]string{"a.txt": "a\n", "dir/b.txt": "b\n"})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := app.Commit(ctx, "main", "two", map[string]string{"a.txt": "a2\n"})
	if err != nil {
		t.Fatal(err)
	}
	c3, err := app.AddSubmodules(ctx, "main", "sub", Submodule{Path: "ext/lib", URL: "../lib.git", Commit: libSHA})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Tag(ctx, "v1", c1, true); err != nil {
		t.Fatal(err)
	}
	if err := app.Tag(ctx, "light", c2, false); err != nil {
		t.Fatal(err)
	}
	if err := app.Branch(ctx, "release", c2); err != nil {
		t.Fatal(err)
	}
	if head, _ := app.Head(ctx, "main"); head != c3 {
		t.Fatalf("main = %s, want %s", head, c3)
	}
	if tag, err := app.Ref(ctx, "refs/tags/v1^{commit}"); err != nil || tag != c1 {
		t.Fatalf("v1 = %s, %v", tag, err)
	}

	s := start(t, Options{Root: root, Credentials: []Credential{Bearer("t0k")}})
	var before atomic.Int32
	s.SetBefore(func(*http.Request) { before.Add(1) })
	dst := filepath.Join(t.TempDir(), "clone")
	git(t, filepath.Dir(dst), "-c", "http.extraheader=Authorization: Bearer t0k", "clone", "--quiet", s.RepoURL("org/app.git"), dst)
	if got := git(t, dst, "rev-parse", "HEAD"); got != c3 {
		t.Fatalf("HEAD = %s", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(got) != "a2\n" {
		t.Fatalf("a.txt = %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dst, "dir", "b.txt")); string(got) != "b\n" {
		t.Fatalf("dir/b.txt = %q", got)
	}
	if got := git(t, dst, "tag", "--list"); got != "light\nv1" {
		t.Fatalf("tags %q", got)
	}
	if got := git(t, dst, "rev-parse", "origin/release"); got != c2 {
		t.Fatalf("release = %s", got)
	}
	if got := git(t, dst, "ls-tree", "HEAD", "ext/lib"); !strings.HasPrefix(got, "160000 commit "+libSHA) {
		t.Fatalf("gitlink %q", got)
	}
	if got := git(t, dst, "config", "-f", ".gitmodules", "submodule.ext/lib.url"); got != "../lib.git" {
		t.Fatalf(".gitmodules url %q", got)
	}
	git(t, dst, "-c", "http.extraheader=Authorization: Bearer t0k", "submodule", "update", "--init", "--quiet")
	if got, _ := os.ReadFile(filepath.Join(dst, "ext", "lib", "lib.txt")); string(got) != "lib\n" {
		t.Fatalf("submodule lib.txt = %q", got)
	}
	if before.Load() == 0 {
		t.Fatal("the before hook was not called")
	}
	for _, r := range s.Requests() {
		if r.Authorization != "Bearer t0k" || r.Status != http.StatusOK {
			t.Fatalf("request %+v", r)
		}
	}
}

func TestBadInput(t *testing.T) {
	if _, err := NewHandler(Options{}); err == nil {
		t.Fatal("no root accepted")
	}
	if _, err := NewHandler(Options{Root: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Fatal("missing root accepted")
	}
	if _, err := CreateRepo(testCtx(t), t.TempDir(), "../escape.git"); err == nil {
		t.Fatal("a repository outside the root was created")
	}
}

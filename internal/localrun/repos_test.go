package localrun

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// newRepo makes a work tree repository with one commit of files on main,
// with go-git (no git binary needed).
func newRepo(t *testing.T, dir string, files map[string]string) (*git.Repository, plumbing.Hash) {
	t.Helper()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		t.Fatal(err)
	}
	return r, commitFiles(t, r, dir, files, "initial commit")
}

func commitFiles(t *testing.T, r *git.Repository, dir string, files map[string]string, msg string) plumbing.Hash {
	t.Helper()
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &object.Signature{Name: "Ada", Email: "ada@example.invalid", When: time.Unix(1700000000, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestFindSelf(t *testing.T) {
	root := t.TempDir()
	app := filepath.Join(root, "app")
	r, h := newRepo(t, app, map[string]string{"ci/pipeline.yml": "steps: []\n"})
	self, err := findSelf(filepath.Join(app, "ci", "pipeline.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if self == nil || self.dir != app || self.repo != "app" || self.ref != "refs/heads/main" || self.commit != h.String() || self.author != "Ada" || self.message != "initial commit" {
		t.Fatalf("self = %+v", self)
	}
	// Detached HEAD: the commit, no branch.
	if err := r.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, h)); err != nil {
		t.Fatal(err)
	}
	self, err = findSelf(filepath.Join(app, "ci", "pipeline.yml"))
	if err != nil || self.ref != "" || self.commit != h.String() {
		t.Fatalf("detached: %+v, %v", self, err)
	}
	// Outside any repository.
	loose := filepath.Join(root, "loose.yml")
	os.WriteFile(loose, []byte("steps: []\n"), 0o644)
	if self, err := findSelf(loose); err != nil || self != nil {
		t.Fatalf("outside a repository: %+v, %v", self, err)
	}
	// A repository without a commit.
	empty := filepath.Join(root, "empty")
	if _, err := git.PlainInit(empty, false); err != nil {
		t.Fatal(err)
	}
	if _, err := findSelf(filepath.Join(empty, "p.yml")); err == nil || !strings.Contains(err.Error(), "no commit yet") {
		t.Fatalf("empty repository: %v", err)
	}
}

func TestResolveDeclared(t *testing.T) {
	root := t.TempDir()
	tools, _ := newRepo(t, filepath.Join(root, "tools"), map[string]string{"a": "main"})
	release := commitFiles(t, tools, filepath.Join(root, "tools"), map[string]string{"a": "release"}, "release")
	if err := tools.Storer.SetReference(plumbing.NewHashReference("refs/heads/release", release)); err != nil {
		t.Fatal(err)
	}
	_, lib := newRepo(t, filepath.Join(root, "elsewhere", "library"), map[string]string{"b": "lib"})

	src := []byte(`
resources:
  repositories:
  - repository: tools
    type: git
    name: tools
    ref: release
  - repository: lib
    type: git
    name: Shared/library
  - repository: gone
    type: git
    name: nowhere
steps:
- checkout: none
`)
	decls := declaredRepos(src)
	if len(decls) != 3 || decls[1] != (declaredRepo{alias: "lib", name: "Shared/library"}) {
		t.Fatalf("declared = %+v", decls)
	}
	got, missing, err := resolveDeclared(decls, map[string]string{"LIB": filepath.Join(root, "elsewhere", "library")}, root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("resolved %d repositories: %+v", len(got), got)
	}
	if g := got[0]; g.alias != "tools" || g.project != "" || g.repo != "tools" || g.ref != "refs/heads/release" || g.commit != release.String() {
		t.Errorf("tools = %+v", g)
	}
	if g := got[1]; g.alias != "lib" || g.project != "Shared" || g.repo != "library" || g.commit != lib.String() {
		t.Errorf("lib = %+v", g)
	}
	if h := missing["gone"]; !strings.Contains(h, "--repo gone=PATH") || !strings.Contains(h, filepath.Join(root, "nowhere")) {
		t.Errorf("hint for gone = %q", h)
	}

	if _, _, err := resolveDeclared(decls, map[string]string{"nope": root}, root); err == nil || !strings.Contains(err.Error(), "no repository resource with that alias") {
		t.Errorf("unknown alias: %v", err)
	}
	if _, _, err := resolveDeclared(decls, map[string]string{"tools": filepath.Join(root, "nowhere")}, root); err == nil || !strings.Contains(err.Error(), "--repo tools=") {
		t.Errorf("bad --repo path: %v", err)
	}
	if d := declaredRepos([]byte("{{ not yaml")); d != nil {
		t.Errorf("invalid YAML gave %+v", d)
	}
}

func TestServeSubmodules(t *testing.T) {
	root := t.TempDir()
	newRepo(t, filepath.Join(root, "lib"), map[string]string{"lib.txt": "lib"})
	app := filepath.Join(root, "app")
	r, _ := newRepo(t, app, map[string]string{"README": "app"})
	modules := "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib\n" +
		"[submodule \"other\"]\n\tpath = other\n\turl = ../../../Other/_git/other.git\n" +
		"[submodule \"far\"]\n\tpath = far\n\turl = https://example.invalid/far.git\n" +
		"[submodule \"missing\"]\n\tpath = missing\n\turl = ../missing\n"
	commitFiles(t, r, app, map[string]string{".gitmodules": modules}, "submodules")
	newRepo(t, filepath.Join(app, ".git", "modules", "other"), map[string]string{"o": "o"})

	s, err := devserver.Start(context.Background(), devserver.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	self, err := findSelf(filepath.Join(app, "README"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := self.serve(s, Project)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	if err := serveSubmodules(s, self, u.URL, root, func(n string) { notes = append(notes, n) }); err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, rp := range s.Repositories() {
		rel, _ := filepath.Rel(root, rp.GitDir)
		served = append(served, rp.Project+"/"+rp.Name+"="+filepath.ToSlash(rel))
	}
	want := "local/app=app/.git,local/lib=lib/.git,Other/other=app/.git/modules/other/.git"
	if strings.Join(served, ",") != want {
		t.Errorf("served %v, want %s", served, want)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "submodule missing") {
		t.Errorf("notes = %q", notes)
	}
}

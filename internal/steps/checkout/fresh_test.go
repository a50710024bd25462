package checkout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// cliWorld is a world without a server: a home for the git CLI.
func cliWorld(t *testing.T) *world {
	return &world{t: t, home: t.TempDir()}
}

// sourceRepo commits a tree with every kind of entry a checkout writes:
// nested directories, an executable, symlinks to a file and a directory, an
// empty file, odd but legal names, a file bigger than the tests' streaming
// threshold, and a submodule link.
func sourceRepo(t *testing.T, w *world) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	w.git(t.TempDir(), "init", "-q", "-b", "main", dir)
	files := map[string]string{
		"README.md":               "hello\n",
		"src/a/b/c.go":            "package b\n",
		"src/a/d.go":              "package a\n",
		"bin/run.sh":              "#!/bin/sh\necho run\n",
		"empty.txt":               "",
		"with space.txt":          "s\n",
		"ünïcode.txt":             "u\n",
		".gitignore":              "*.log\n",
		"con10.txt":               "not a device\n",
		"deep/1/2/3/4/5/6/7/8.md": "deep\n",
		"big.bin":                 strings.Repeat("0123456789abcdef", 4096),
	}
	for name, content := range files {
		mustWrite(t, filepath.Join(dir, filepath.FromSlash(name)), content)
	}
	if err := os.Chmod(filepath.Join(dir, "bin", "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"link.md": "README.md", "srclink": "src/a", "dangling": "nowhere"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	w.git(dir, "add", "-A")
	w.git(dir, "update-index", "--add", "--cacheinfo", "160000,"+strings.Repeat("ab", 20)+",vendor/sub")
	w.git(dir, "-c", "user.name=T", "-c", "user.email=t@localhost", "commit", "-qm", "one")
	return dir, w.git(dir, "rev-parse", "HEAD")
}

// fetchedRepo is a new repository in a fresh directory with src's HEAD
// fetched into one pack (what the step's fetch leaves).
func fetchedRepo(t *testing.T, w *world, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "wt")
	w.git(t.TempDir(), "init", "-q", dir)
	w.git(dir, "-c", "fetch.unpackLimit=1", "fetch", "-q", src, "HEAD")
	return dir
}

// openKeep opens dir the way the step does (pack files kept open).
func openKeep(t *testing.T, dir string) *git.Repository {
	t.Helper()
	wt := osfs.New(dir)
	dot, _ := wt.Chroot(".git")
	st := filesystem.NewStorageWithOptions(dot, cache.NewObjectLRUDefault(), filesystem.Options{KeepDescriptors: true})
	t.Cleanup(func() { st.Close() })
	repo, err := git.Open(st, wt)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// snapshot describes every path under dir but .git: kind, permissions and
// content or link target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if rel == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link -> " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %q", fi.Mode().Perm(), b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// indexSummary is what must agree between two checkouts' indexes.
func indexSummary(t *testing.T, repo *git.Repository) []string {
	t.Helper()
	idx, err := repo.Storer.Index()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range idx.Entries {
		out = append(out, fmt.Sprintf("%s %s %s size=%d", e.Name, e.Hash, e.Mode, e.Size))
	}
	sort.Strings(out)
	return out
}

func diffMaps(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: fresh checkout has %.80q, go-git has %.80q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: only in the fresh checkout (%.80q)", k, v)
		}
	}
}

// The fresh checkout leaves what go-git's Worktree.Checkout leaves: the
// same files, modes, links, index and HEAD; and git itself finds the
// worktree clean, so the index's stat data is right.
func TestFreshCheckoutMatchesGoGit(t *testing.T) {
	w := cliWorld(t)
	src, head := sourceRepo(t, w)
	for _, opts := range []freshOptions{{}, {workers: 1}, {workers: 5, largeObject: 1024}} {
		t.Run(fmt.Sprintf("workers=%d,large=%d", opts.workers, opts.largeObject), func(t *testing.T) {
			fresh, other := fetchedRepo(t, w, src), fetchedRepo(t, w, src)
			hash := plumbing.NewHash(head)

			repo := openKeep(t, fresh)
			n, err := freshCheckout(context.Background(), repo, fresh, hash, opts)
			if err != nil {
				t.Fatalf("fresh checkout: %v", err)
			}
			if n != 14 {
				t.Errorf("fresh checkout wrote %d files, want 14", n)
			}

			ref, err := git.PlainOpen(other)
			if err != nil {
				t.Fatal(err)
			}
			wt, err := ref.Worktree()
			if err != nil {
				t.Fatal(err)
			}
			if err := wt.Checkout(&git.CheckoutOptions{Hash: hash, Force: true}); err != nil {
				t.Fatal(err)
			}

			diffMaps(t, snapshot(t, fresh), snapshot(t, other))
			got, want := indexSummary(t, repo), indexSummary(t, ref)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("index:\n%s\nwant (go-git):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if got, want := w.git(fresh, "rev-parse", "HEAD"), head; got != want {
				t.Errorf("HEAD = %s, want %s", got, want)
			}
			if sym := w.git(fresh, "rev-parse", "--symbolic-full-name", "HEAD"); sym != "HEAD" {
				t.Errorf("HEAD is %q, want detached", sym)
			}
			if st := w.git(fresh, "status", "--porcelain", "--untracked-files=all"); st != "" {
				t.Errorf("git status after the fresh checkout:\n%s", st)
			}
			if d := w.git(fresh, "diff-files", "--name-only"); d != "" {
				t.Errorf("git diff-files (stat data differs) after the fresh checkout:\n%s", d)
			}
		})
	}
}

// craftEntry is one entry of a tree written with go-git, names unchecked.
type craftEntry struct {
	path    string // "/" nests
	mode    filemode.FileMode
	content string
}

// craftCommit writes entries as a commit into repo, as a hostile server
// could: go-git writes whatever names it is given.
func craftCommit(t *testing.T, repo *git.Repository, entries []craftEntry) plumbing.Hash {
	t.Helper()
	put := func(o interface {
		Encode(plumbing.EncodedObject) error
	}) plumbing.Hash {
		obj := repo.Storer.NewEncodedObject()
		if err := o.Encode(obj); err != nil {
			t.Fatal(err)
		}
		h, err := repo.Storer.SetEncodedObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	blob := func(content string) plumbing.Hash {
		obj := repo.Storer.NewEncodedObject()
		obj.SetType(plumbing.BlobObject)
		wr, _ := obj.Writer()
		wr.Write([]byte(content))
		wr.Close()
		h, err := repo.Storer.SetEncodedObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	var tree func(entries []craftEntry) plumbing.Hash
	tree = func(entries []craftEntry) plumbing.Hash {
		t := &object.Tree{}
		subs := map[string][]craftEntry{}
		var order []string
		for _, e := range entries {
			if first, rest, nested := strings.Cut(e.path, "/"); nested {
				if _, ok := subs[first]; !ok {
					order = append(order, first)
				}
				subs[first] = append(subs[first], craftEntry{rest, e.mode, e.content})
				continue
			}
			h := plumbing.NewHash(e.content)
			if e.mode != filemode.Submodule {
				h = blob(e.content)
			}
			t.Entries = append(t.Entries, object.TreeEntry{Name: e.path, Mode: e.mode, Hash: h})
		}
		for _, name := range order {
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: tree(subs[name])})
		}
		// git's tree order: a directory sorts as if its name ended in "/".
		key := func(e object.TreeEntry) string {
			if e.Mode == filemode.Dir {
				return e.Name + "/"
			}
			return e.Name
		}
		sort.SliceStable(t.Entries, func(i, j int) bool { return key(t.Entries[i]) < key(t.Entries[j]) })
		return put(t)
	}
	sig := object.Signature{Name: "T", Email: "t@localhost", When: time.Unix(1700000000, 0)}
	return put(&object.Commit{Author: sig, Committer: sig, Message: "crafted\n", TreeHash: tree(entries)})
}

// onlyDotGit fails unless dir holds nothing but .git, and no index.
func onlyDotGit(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != ".git" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("the worktree holds %v, want only .git", names)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git", "index")); err == nil {
		t.Fatal("an index was written")
	}
}

// For every tree go-git refuses to check out, the fresh path declines
// before writing anything (so go-git refuses it, as before); what go-git
// accepts, the fresh path writes the same way, or declines where noted.
func TestFreshCheckoutRefusesWhatGoGitRefuses(t *testing.T) {
	const (
		reg  = filemode.Regular
		link = filemode.Symlink
	)
	cases := []struct {
		name      string
		entries   []craftEntry
		goGitOK   bool
		freshDoes bool // false: declines
	}{
		{"plain", []craftEntry{{"README", reg, "r"}, {"a/b/c", reg, "c"}}, true, true},
		{"dotfiles", []craftEntry{{".gitignore", reg, "*"}, {".gitattributes", reg, "*"}, {"a/.gitmodules", reg, ""}}, true, true},
		{"deprecated mode", []craftEntry{{"old", filemode.Deprecated, "o"}}, true, true},
		{"device-like but not", []craftEntry{{"console.log", reg, "c"}, {"com10", reg, "c"}, {"auxiliary", reg, "a"}}, true, true},
		{"symlink", []craftEntry{{"l", link, "target"}, {"d/l2", link, "../l"}}, true, true},
		{"submodule", []craftEntry{{"sub", filemode.Submodule, strings.Repeat("cd", 20)}}, true, true},
		{".git", []craftEntry{{".git", reg, "x"}}, false, false},
		{".GIT dir", []craftEntry{{".GIT/config", reg, "x"}}, false, false},
		{"nested .git", []craftEntry{{"a/.git/hooks/post-checkout", reg, "x"}}, false, false},
		{"git~1", []craftEntry{{"git~1/config", reg, "x"}}, false, false},
		{".git with trailing dot", []craftEntry{{".git.", reg, "x"}}, false, false},
		{".git with trailing space", []craftEntry{{"a/.git ", reg, "x"}}, false, false},
		{"HFS .git", []craftEntry{{".g\u200cit", reg, "x"}}, false, false},
		{"..", []craftEntry{{"../escape", reg, "x"}}, false, false},
		{"control character", []craftEntry{{"bell\a", reg, "x"}}, false, false},
		{"Windows device", []craftEntry{{"aux.c", reg, "x"}}, false, false},
		{"Windows device in a directory", []craftEntry{{"src/NUL", reg, "x"}}, false, false},
		{"symlink .gitmodules", []craftEntry{{".gitmodules", link, "x"}}, false, false},
		{"symlink NTFS .gitmodules", []craftEntry{{"GITMOD~1", link, "x"}}, false, false},
		{"colon", []craftEntry{{"a:b", reg, "x"}}, true, false},
		{"backslash", []craftEntry{{`a\b`, reg, "x"}}, true, false},
		{"odd regular mode", []craftEntry{{"m", filemode.FileMode(0o100600), "x"}, {"x", filemode.FileMode(0o100700), "x"}}, true, true}, // canonicalised on decode
		{"duplicate", []craftEntry{{"d", reg, "1"}, {"d", reg, "2"}}, true, false},
		{"missing blob", nil, false, false}, // filled below
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Two repositories with the same crafted commit.
			var dirs [2]string
			var repos [2]*git.Repository
			var hash plumbing.Hash
			for i := range dirs {
				dirs[i] = t.TempDir()
				r, err := git.PlainInit(dirs[i], false)
				if err != nil {
					t.Fatal(err)
				}
				repos[i] = r
				entries := tc.entries
				if tc.name == "missing blob" {
					entries = []craftEntry{{"ok", reg, "fine"}}
				}
				hash = craftCommit(t, r, entries)
				if tc.name == "missing blob" {
					// A tree naming a blob that is not there: the fresh path
					// finds out while writing, and must undo what it wrote.
					sig := object.Signature{Name: "T", Email: "t@localhost", When: time.Unix(1700000000, 0)}
					c, _ := r.CommitObject(hash)
					tr, _ := c.Tree()
					tr.Entries = append(tr.Entries, object.TreeEntry{Name: "zz-missing", Mode: reg, Hash: plumbing.NewHash(strings.Repeat("ee", 20))})
					obj := r.Storer.NewEncodedObject()
					tr.Encode(obj)
					th, _ := r.Storer.SetEncodedObject(obj)
					cm := &object.Commit{Author: sig, Committer: sig, Message: "m\n", TreeHash: th}
					obj = r.Storer.NewEncodedObject()
					cm.Encode(obj)
					hash, _ = r.Storer.SetEncodedObject(obj)
				}
			}
			wt, err := repos[1].Worktree()
			if err != nil {
				t.Fatal(err)
			}
			goErr := wt.Checkout(&git.CheckoutOptions{Hash: hash, Force: true})
			if (goErr == nil) != tc.goGitOK {
				t.Fatalf("go-git's checkout error = %v, the test expects ok=%t", goErr, tc.goGitOK)
			}

			_, err = freshCheckout(context.Background(), repos[0], dirs[0], hash, freshOptions{})
			var fb *freshFallback
			switch {
			case tc.freshDoes && err != nil:
				t.Fatalf("fresh checkout: %v", err)
			case tc.freshDoes:
				diffMaps(t, snapshot(t, dirs[0]), snapshot(t, dirs[1]))
				if got, want := indexSummary(t, repos[0]), indexSummary(t, repos[1]); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("index:\n%s\nwant (go-git):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			case !errors.As(err, &fb):
				t.Fatalf("fresh checkout error = %v, want it to decline", err)
			default:
				t.Logf("declined: %v", err)
				onlyDotGit(t, dirs[0])
				if ref, err := repos[0].Reference(plumbing.HEAD, false); err != nil || ref.Type() != plumbing.SymbolicReference {
					t.Fatalf("HEAD changed: %v %v", ref, err)
				}
			}
		})
	}
}

func TestFreshCheckoutDeclinesUsedWorktrees(t *testing.T) {
	w := cliWorld(t)
	src, head := sourceRepo(t, w)
	for _, tc := range []struct {
		name    string
		prepare func(dir string)
	}{
		{"a file in the worktree", func(dir string) { mustWrite(t, filepath.Join(dir, "stray"), "x") }},
		{"an index", func(dir string) { w.git(dir, "read-tree", "HEAD") }},
		{"a .git file", func(dir string) {
			if err := os.Rename(filepath.Join(dir, ".git"), filepath.Join(dir, "..", "elsewhere.git")); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(dir, ".git"), "gitdir: ../elsewhere.git\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fetchedRepo(t, w, src)
			w.git(dir, "update-ref", "HEAD", head)
			repo, err := git.PlainOpen(dir)
			if err != nil {
				t.Fatal(err)
			}
			tc.prepare(dir)
			before := snapshot(t, dir)
			_, err = freshCheckout(context.Background(), repo, dir, plumbing.NewHash(head), freshOptions{})
			var fb *freshFallback
			if !errors.As(err, &fb) {
				t.Fatalf("error = %v, want the fresh path to decline", err)
			}
			diffMaps(t, snapshot(t, dir), before)
		})
	}
}

func TestFreshCheckoutCancelled(t *testing.T) {
	w := cliWorld(t)
	src, head := sourceRepo(t, w)
	dir := fetchedRepo(t, w, src)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := freshCheckout(ctx, openKeep(t, dir), dir, plumbing.NewHash(head), freshOptions{})
	var fb *freshFallback
	if !errors.Is(err, context.Canceled) || errors.As(err, &fb) {
		t.Fatalf("error = %v, want context.Canceled (not a fallback to go-git)", err)
	}
}

func TestUnsafeNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		bad  bool
	}{
		{"main.go", false}, {".gitignore", false}, {".github", false}, {"git", false}, {"gitk", false},
		{"con.d", true}, {"CON", true}, {"lpt9.txt", true}, {"lpt0", false}, {"com1 ", true}, {"conin$", true},
		{".git", true}, {".Git", true}, {"GIT~1", true}, {".git...", true}, {".git. .", true},
		{"", true}, {".", true}, {"..", true}, {"a/b", true}, {`a\b`, true}, {"a:b", true},
		{"tab\t", true}, {"del\x7f", true}, {"zero\u200bwidth", false}, {"rtl\u202eexe", true}, {"bom\ufeff", true},
		{"ünï", false},
	} {
		if got := unsafeName(tc.name) != ""; got != tc.bad {
			t.Errorf("unsafeName(%q) = %q, want unsafe=%t", tc.name, unsafeName(tc.name), tc.bad)
		}
	}
	for _, tc := range []struct {
		path string
		bad  bool
	}{
		{"docs/link", false}, {".gitmodules", true}, {"a/.GitModules", true}, {".gitmodules ./x", true},
		{"gitmod~1", true}, {"GI7EBA~4", true}, {"sub/gitmodules.bak", true}, {"giant", false},
	} {
		if got := unsafeSymlinkPath(tc.path) != ""; got != tc.bad {
			t.Errorf("unsafeSymlinkPath(%q) = %q, want unsafe=%t", tc.path, unsafeSymlinkPath(tc.path), tc.bad)
		}
	}
}

// openPacks lists the pack files under dir this process has open.
func openPacks(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir) && strings.HasSuffix(target, ".pack") {
			out = append(out, target)
		}
	}
	return out
}

// The step takes the fresh path on a first checkout and go-git's own on a
// second, and keeps no pack file open afterwards.
func TestGoGitCheckoutPaths(t *testing.T) {
	w := newWorld(t)
	a := w.appRepo("app.git")
	dir := filepath.Join(w.build, "s")
	for i, version := range []string{a.c2, a.c3} {
		job := w.singleJob(w.repoResource("self", a.repo, "Git", version, nil))
		st := w.newStep(goGitMode, job, map[string]string{"repository": "self", "clean": "false"}, nil)
		if err := w.run(st); err != nil {
			t.Fatalf("checkout %d: %v\n%s", i+1, err, strings.Join(st.console.all(), "\n"))
		}
		log := strings.Join(st.console.all(), "\n")
		fresh := strings.Contains(log, "wrote 3 files into the empty worktree")
		if fresh != (i == 0) {
			t.Fatalf("checkout %d: fresh path taken = %t:\n%s", i+1, fresh, log)
		}
		if i == 1 && !strings.Contains(log, "the worktree is not empty") {
			t.Fatalf("checkout 2 does not say why it left the fresh path:\n%s", log)
		}
		if got := w.git(dir, "rev-parse", "HEAD"); got != version {
			t.Fatalf("checkout %d: HEAD = %s, want %s", i+1, got, version)
		}
		if s := w.git(dir, "status", "--porcelain"); s != "" {
			t.Fatalf("checkout %d: git status:\n%s", i+1, s)
		}
		if open := openPacks(t, dir); len(open) > 0 {
			t.Fatalf("checkout %d left pack files open: %v", i+1, open)
		}
	}
	if got := readFile(t, filepath.Join(dir, "docs", "x.txt")); got != "x\n" {
		t.Fatalf("docs/x.txt = %q", got)
	}
	w.git(dir, "fsck", "--full", "--strict")
}

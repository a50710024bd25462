package checkout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unicode/utf8"

	"github.com/go-git/go-billy/v5"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"golang.org/x/sync/errgroup"
)

// A fresh checkout writes a commit's tree into a worktree that holds
// nothing but its .git directory — every first checkout — without go-git's
// Worktree.Checkout. That one diffs the tree against the (empty) index and
// the worktree, then writes the files one by one on one goroutine, checking
// every path and each of its parents for symlinks on the way (an Lstat per
// component); in an empty directory none of that can find anything, and it
// was most of the checkout's time. Here the tree is walked once, the
// directories are made, a few workers write the files in parallel (each
// reading blobs through its own pack handle: go-git's object storage is not
// safe for concurrent use), and the index is written once at the end.
//
// Safety comes from the walk and from writing into a directory this code
// creates itself: every directory is made with mkdir (which fails on
// anything already there) before any file or symlink exists, and every file
// is created with O_EXCL, so no write can follow a symlink. Names go-git
// would refuse, modes it does not know and anything else unusual make the
// fresh path step aside before it writes anything (freshFallback), and
// Worktree.Checkout runs as before, with its own checks and errors.

// freshFallback is freshCheckout declining, before it changed anything.
type freshFallback struct{ reason string }

func (f *freshFallback) Error() string { return "fresh checkout not applicable: " + f.reason }

// freshOptions tune freshCheckout; the zero value is the production setting.
type freshOptions struct {
	workers int // 0: by the number of CPUs
	// largeObject is the blob size above which a worker streams the blob
	// from the pack instead of inflating it into memory (go-git's
	// LargeObjectThreshold), so parallel workers do not multiply the peak
	// memory of big files. 0: 16 MiB.
	largeObject int64
}

const (
	maxFreshTreeDepth = 1024 // deeper trees are left to go-git
	workerObjectCache = 8 * cache.MiByte
)

// freshEntry is one non-directory entry of the tree.
type freshEntry struct {
	name string // slash-separated, relative to the worktree
	hash plumbing.Hash
	mode filemode.FileMode
}

// freshPlan is the tree flattened: directories in creation order (parents
// first), files and symlinks, submodule links.
type freshPlan struct {
	dirs     []string
	files    []freshEntry
	gitlinks []freshEntry
}

// freshCheckout checks commit out into dir, whose .git directory is the
// storage of repo, when dir is a fresh worktree. It reports the number of
// files written; a *freshFallback error means nothing was changed and the
// caller should use Worktree.Checkout.
func freshCheckout(ctx context.Context, repo *git.Repository, dir string, commit plumbing.Hash, opts freshOptions) (int, error) {
	st, ok := repo.Storer.(interface{ Filesystem() billy.Filesystem })
	if !ok {
		return 0, &freshFallback{"the repository storage is not on disk"}
	}
	if err := checkFreshWorktree(dir); err != nil {
		return 0, err
	}
	c, err := repo.CommitObject(commit)
	if err != nil {
		return 0, &freshFallback{"read commit: " + err.Error()}
	}
	tree, err := c.Tree()
	if err != nil {
		return 0, &freshFallback{"read tree: " + err.Error()}
	}
	p := &freshPlan{}
	if err := p.walk(repo.Storer, tree, "", 0); err != nil {
		return 0, err
	}
	entries, err := writeFreshPlan(ctx, st.Filesystem(), dir, p, opts)
	if err != nil {
		if ctx.Err() != nil {
			return 0, err
		}
		// Put the worktree back as it was, so go-git starts from the same
		// empty directory and fails (or not) in its own words.
		if rerr := emptyWorktree(dir); rerr != nil {
			return 0, fmt.Errorf("write the worktree: %w (and clear it again: %v)", err, rerr)
		}
		return 0, &freshFallback{"write the worktree: " + err.Error()}
	}
	if err := repo.Storer.SetIndex(&index.Index{Version: 2, Entries: entries}); err != nil {
		return 0, fmt.Errorf("write the index: %w", err)
	}
	// What Worktree.Checkout with a hash does: a detached HEAD.
	if err := repo.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, commit)); err != nil {
		return 0, fmt.Errorf("set HEAD to %s: %w", commit, err)
	}
	return len(p.files), nil
}

// checkFreshWorktree accepts a directory that holds only a .git directory
// and no index in it.
func checkFreshWorktree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return &freshFallback{"read the worktree: " + err.Error()}
	}
	if len(entries) != 1 || entries[0].Name() != ".git" || !entries[0].IsDir() {
		return &freshFallback{"the worktree is not empty"}
	}
	if _, err := os.Lstat(filepath.Join(dir, ".git", "index")); !errors.Is(err, os.ErrNotExist) {
		return &freshFallback{"the repository has an index"}
	}
	return nil
}

// emptyWorktree deletes everything in dir but .git.
func emptyWorktree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// walk flattens t (at prefix) into the plan, depth first, parents first.
func (p *freshPlan) walk(s storer.EncodedObjectStorer, t *object.Tree, prefix string, depth int) error {
	if depth > maxFreshTreeDepth {
		return &freshFallback{"the tree is deeper than " + fmt.Sprint(maxFreshTreeDepth)}
	}
	seen := make(map[string]bool, len(t.Entries))
	for _, e := range t.Entries {
		if reason := unsafeName(e.Name); reason != "" {
			return &freshFallback{fmt.Sprintf("entry %q in %q: %s", e.Name, prefix, reason)}
		}
		if seen[e.Name] {
			return &freshFallback{fmt.Sprintf("entry %q appears twice in %q", e.Name, prefix)}
		}
		seen[e.Name] = true
		name := e.Name
		if prefix != "" {
			name = prefix + "/" + e.Name
		}
		switch e.Mode {
		case filemode.Dir:
			sub, err := object.GetTree(s, e.Hash)
			if err != nil {
				return &freshFallback{fmt.Sprintf("read tree %s (%s): %v", e.Hash, name, err)}
			}
			p.dirs = append(p.dirs, name)
			if err := p.walk(s, sub, name, depth+1); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			p.files = append(p.files, freshEntry{name: name, hash: e.Hash, mode: e.Mode})
		case filemode.Symlink:
			if reason := unsafeSymlinkPath(name); reason != "" {
				return &freshFallback{fmt.Sprintf("symlink %q: %s", name, reason)}
			}
			p.files = append(p.files, freshEntry{name: name, hash: e.Hash, mode: e.Mode})
		case filemode.Submodule:
			p.gitlinks = append(p.gitlinks, freshEntry{name: name, hash: e.Hash, mode: e.Mode})
		default:
			return &freshFallback{fmt.Sprintf("entry %q has mode %s", name, e.Mode)}
		}
	}
	return nil
}

// unsafeName says why a tree entry name is not one the fresh path writes
// itself. It refuses at least what go-git refuses when it checks a tree
// path out (its ValidTreePath, and the worktree filesystem's NTFS checks,
// which are on by default everywhere); refusing more only costs speed,
// since go-git then decides.
func unsafeName(name string) string {
	if name == "" || name == "." || name == ".." {
		return "reserved name"
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c < 0x20 || c == 0x7f:
			return "control character"
		case c == '/' || c == '\\' || c == ':':
			return "separator or stream character"
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && hasIgnorableRune(name) {
		return "zero-width or directional character"
	}
	lower := strings.ToLower(name)
	switch strings.TrimRight(lower, ". ") {
	case ".git", "git~1":
		return "the repository's own directory"
	}
	if windowsReserved(lower) {
		return "a Windows device name"
	}
	return ""
}

// unsafeSymlinkPath refuses symlinks that could pass for .gitmodules in any
// spelling a case-insensitive, NTFS or HFS+ filesystem would accept.
func unsafeSymlinkPath(name string) string {
	for _, part := range strings.Split(name, "/") {
		lower := strings.ToLower(part)
		if strings.Contains(lower, "gitmodules") || (strings.HasPrefix(lower, "gi") && strings.Contains(lower, "~")) {
			return "could name .gitmodules"
		}
	}
	return ""
}

// hasIgnorableRune reports code points HFS+ drops when it compares names
// (so ".g\u200cit" is ".git" there).
func hasIgnorableRune(s string) bool {
	for _, r := range s {
		if (r >= 0x200c && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) || (r >= 0x206a && r <= 0x206f) || r == 0xfeff {
			return true
		}
	}
	return false
}

// windowsReserved reports a Windows device name (CON, nul.txt, "aux ",
// com1…), lower case in.
func windowsReserved(lower string) bool {
	base := lower
	if i := strings.IndexAny(base, ". "); i >= 0 {
		base = base[:i]
	}
	switch base {
	case "con", "prn", "aux", "nul", "conin$", "conout$":
		return true
	}
	if len(base) == 4 && (strings.HasPrefix(base, "com") || strings.HasPrefix(base, "lpt")) && base[3] >= '1' && base[3] <= '9' {
		return true
	}
	return false
}

// writeFreshPlan makes the plan's directories and writes its files,
// returning the index entries.
func writeFreshPlan(ctx context.Context, dotGit billy.Filesystem, dir string, p *freshPlan, opts freshOptions) ([]*index.Entry, error) {
	for _, d := range p.dirs {
		if err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(d)), 0o755); err != nil {
			return nil, err
		}
	}
	entries := make([]*index.Entry, len(p.files), len(p.files)+len(p.gitlinks))
	// Submodules get an empty directory and an index entry, as with go-git
	// and git; `submodule update` fills them.
	for _, l := range p.gitlinks {
		if err := os.Mkdir(filepath.Join(dir, filepath.FromSlash(l.name)), 0o755); err != nil {
			return nil, err
		}
		entries = append(entries, &index.Entry{Name: l.name, Hash: l.hash, Mode: filemode.Submodule})
	}

	workers := opts.workers
	if workers <= 0 {
		workers = min(max(runtime.GOMAXPROCS(0), 2), 8)
	}
	workers = max(min(workers, len(p.files)), 1)
	large := opts.largeObject
	if large <= 0 {
		large = 16 << 20
	}
	g, gctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i := range p.files {
			select {
			case next <- i:
			case <-gctx.Done():
				return context.Cause(gctx)
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			// Its own storage: its own pack handle, index and cache.
			st := filesystem.NewStorageWithOptions(dotGit, cache.NewObjectLRU(workerObjectCache),
				filesystem.Options{KeepDescriptors: true, LargeObjectThreshold: large})
			defer st.Close()
			w := &blobWriter{st: st, dir: dir, buf: make([]byte, 64<<10)}
			for i := range next {
				e, err := w.write(p.files[i])
				if err != nil {
					return err
				}
				entries[i] = e
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return entries, nil
}

// blobWriter writes blobs into the worktree; one per worker.
type blobWriter struct {
	st  *filesystem.Storage
	dir string
	buf []byte
}

func (w *blobWriter) write(e freshEntry) (*index.Entry, error) {
	obj, err := w.st.EncodedObject(plumbing.BlobObject, e.hash)
	if err != nil {
		return nil, fmt.Errorf("read blob %s (%s): %w", e.hash, e.name, err)
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("read blob %s (%s): %w", e.hash, e.name, err)
	}
	defer r.Close()
	path := filepath.Join(w.dir, filepath.FromSlash(e.name))
	var fi os.FileInfo
	if e.mode == filemode.Symlink {
		target, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("read blob %s (%s): %w", e.hash, e.name, err)
		}
		if err := os.Symlink(string(target), path); err != nil {
			return nil, err
		}
		if fi, err = os.Lstat(path); err != nil {
			return nil, err
		}
	} else {
		perm := os.FileMode(0o644)
		if e.mode == filemode.Executable {
			perm = 0o755
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			return nil, err
		}
		_, err = io.CopyBuffer(f, r, w.buf)
		if err == nil {
			fi, err = f.Stat()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	ie := &index.Entry{
		Hash:       e.hash,
		Name:       e.name,
		Mode:       e.mode,
		ModifiedAt: fi.ModTime(),
		Size:       uint32(fi.Size()),
	}
	fillStat(ie, fi)
	return ie, nil
}

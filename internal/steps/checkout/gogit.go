package checkout

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/pause"
	"github.com/goagent-dev/goagent/internal/steps"
)

// goGitSetup guards the two process-wide settings go-git keeps in package
// variables. It is the one piece of mutable package state here, and exists
// because go-git offers no per-call alternative.
var goGitSetup struct {
	once sync.Once
	err  error
}

// PrepareGoGit configures go-git for the whole process, once; later calls
// return the first call's result and change nothing. cmd/goagent should call
// it at start-up, before any job runs, with the agent's CA settings. The
// checkout step also calls it (with default options) before it first uses
// go-git, so it works without; then the first caller's options win.
//
// What it changes, and why only once:
//   - Azure Repos refuses clients that do not ask for multi_ack ("TF401041
//     … Clients must support multi-ack"). go-git filters multi_ack and
//     multi_ack_detailed out of every server's capabilities through the
//     package variable transport.UnsupportedCapabilities; PrepareGoGit
//     removes them from it. Every go-git fetch reads that slice, so writing
//     it while another goroutine fetches is a data race: it must be written
//     exactly once, before any fetch, and sync.Once gives every caller that
//     goes through here a happens-before edge with that write. Code in the
//     same process that uses go-git without calling PrepareGoGit first could
//     still race, hence "call it at start-up".
//   - go-git picks its HTTP client from the package map client.Protocols;
//     PrepareGoGit installs one built on azdo.NewTransport, so go-git honours
//     HTTPS_PROXY/NO_PROXY and the agent's extra CAs like the REST client.
//
// go-git does not implement multi_ack negotiation; a fetch into an existing
// repository may therefore fail against such servers. The checkout handles
// that by cloning afresh (see fetchGoGit).
func PrepareGoGit(opts azdo.TransportOptions) error {
	goGitSetup.once.Do(func() {
		t, err := azdo.NewTransport(opts)
		if err != nil {
			goGitSetup.err = fmt.Errorf("prepare go-git HTTP transport: %w", err)
			return
		}
		c := githttp.NewClient(&http.Client{Transport: t})
		client.InstallProtocol("http", c)
		client.InstallProtocol("https", c)
		kept := make([]capability.Capability, 0, len(transport.UnsupportedCapabilities))
		for _, c := range transport.UnsupportedCapabilities {
			if c != capability.MultiACK && c != capability.MultiACKDetailed {
				kept = append(kept, c)
			}
		}
		transport.UnsupportedCapabilities = kept
	})
	return goGitSetup.err
}

// headerAuth sends the exact Authorization header the job's endpoint
// dictates ("bearer <token>" or "basic <base64>"), like git's
// http.<origin>.extraheader: only to the repository's own origin, so a
// submodule on another host never receives it.
type headerAuth struct {
	value  string
	origin string // scheme://host[:port], lower case
}

func (a *headerAuth) Name() string   { return "http-extraheader" }
func (a *headerAuth) String() string { return "http-extraheader - AUTHORIZATION: <masked>" }

func (a *headerAuth) SetAuth(r *http.Request) {
	if r == nil || r.URL == nil {
		return
	}
	if strings.ToLower(r.URL.Scheme+"://"+r.URL.Host) == a.origin {
		r.Header.Set("Authorization", a.value)
	}
}

func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// goGit is the checkout without a git binary.
type goGit struct {
	ex       *steps.Exec
	s        *settings
	cred     credential
	opts     Options
	auth     transport.AuthMethod // nil: no credential
	authShow string               // how the log shows the credential argument
	storages []*filesystem.Storage
}

// cmd logs what go-git is about to do in the official command style.
func (g *goGit) cmd(line string) { g.ex.Console.Command("go-git " + line) }

// checkoutWithGoGit mirrors checkoutWithCLI step by step.
func checkoutWithGoGit(ctx context.Context, ex *steps.Exec, s *settings, cred credential, st *postState, opts Options) error {
	ex.Console.Info("git was not found on the step's PATH, so goagent checks out with its built-in git client (go-git). " +
		"It supports fetch depth, tags, clean, submodules and persisted credentials; Git LFS, fetch filters and sparse checkout need the git CLI: use an agent image with git installed for those.")
	switch {
	case s.lfs:
		return fmt.Errorf("checkout %s: lfs is true, but this image has no git binary and goagent's built-in git client (go-git) has no Git LFS support: use an agent image with git and git-lfs installed, or set lfs: false", s.alias)
	case len(s.fetchFilter) > 0:
		return fmt.Errorf("checkout %s: fetchFilter %q needs partial clone, which goagent's built-in git client (go-git, used because this image has no git binary) does not support: use an agent image with git installed, or remove fetchFilter", s.alias, s.rawFilter)
	case s.sparseKnob && (strings.TrimSpace(s.sparseDirs) != "" || strings.TrimSpace(s.sparsePatterns) != ""):
		return fmt.Errorf("checkout %s: sparse checkout needs the git CLI, and this image has no git binary (goagent fell back to go-git): use an agent image with git installed, or remove sparseCheckoutDirectories/sparseCheckoutPatterns", s.alias)
	}
	u, err := url.Parse(s.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("checkout %s: goagent's built-in git client (go-git, used because this image has no git binary) fetches over http(s) only, and the repository url is %s: use an agent image with git installed", s.alias, redactURL(s.url))
	}
	if err := PrepareGoGit(azdo.TransportOptions{}); err != nil {
		return fmt.Errorf("checkout %s: %w", s.alias, err)
	}
	g := &goGit{ex: ex, s: s, cred: cred, opts: opts}
	if cred.header != "" {
		origin, err := originOf(s.url)
		if err != nil {
			return fmt.Errorf("checkout %s: parse repository url: %w", s.alias, err)
		}
		g.auth = &headerAuth{value: cred.header, origin: origin}
		g.authShow = `-c http.extraheader="` + cred.maskedValue() + `" `
	}

	existed, err := g.prepareDirectory()
	if err != nil {
		return err
	}
	defer g.closeStorage()
	repo, err := g.openOrInit()
	if err != nil {
		return err
	}
	if err := g.removeStaleConfig(repo); err != nil {
		return err
	}

	refspecs, refByCommit := g.refspecs()
	repo, refByCommit, err = g.fetch(ctx, repo, existed, refspecs, refByCommit)
	if err != nil {
		return err
	}

	target := s.checkoutTarget(refByCommit)
	if err := g.checkout(ctx, repo, target); err != nil {
		return err
	}
	if s.submodules {
		if err := g.updateSubmodules(ctx, repo); err != nil {
			return err
		}
	}
	if s.persist && cred.header != "" {
		key := "http." + s.url + ".extraheader"
		g.cmd(fmt.Sprintf(`config %s "%s"`, key, cred.maskedValue()))
		cfg, err := repo.Config()
		if err != nil {
			return fmt.Errorf("checkout %s: read git config: %w", s.alias, err)
		}
		cfg.Raw.Section("http").Subsection(s.url).SetOption("extraheader", cred.configValue())
		if err := repo.SetConfig(cfg); err != nil {
			return fmt.Errorf("checkout %s: persist credentials: %w", s.alias, err)
		}
		st.persisted, st.key, st.value = true, key, cred.configValue()
	}
	return nil
}

// prepareDirectory keeps a matching repository (cleaned when asked) and
// deletes anything else in the way. It reports whether a repository was kept.
func (g *goGit) prepareDirectory() (bool, error) {
	dir := g.s.target
	match := false
	var repo *git.Repository
	if exists(filepath.Join(dir, ".git")) {
		g.cmd("config --get remote.origin.url")
		if r, err := git.PlainOpen(dir); err == nil {
			if cfg, err := r.Config(); err == nil {
				if rc, ok := cfg.Remotes["origin"]; ok && len(rc.URLs) > 0 {
					match = sameRepositoryURL(rc.URLs[0], g.s.url)
				}
			}
			repo = r
		}
	}
	if !match {
		if err := os.RemoveAll(dir); err != nil {
			return false, fmt.Errorf("checkout %s: delete %s: %w", g.s.alias, dir, err)
		}
		return false, nil
	}
	for _, lock := range []string{"index.lock", "shallow.lock"} {
		_ = os.Remove(filepath.Join(dir, ".git", lock))
	}
	if !g.s.clean {
		return true, nil
	}
	g.cmd("clean -ffdx")
	err := cleanWorktree(dir, repo)
	if err == nil {
		g.cmd("reset --hard HEAD")
		err = resetHard(repo)
	}
	if err == nil && g.s.submodules {
		g.cmd(`submodule foreach --recursive "git clean -ffdx"`)
		g.cmd(`submodule foreach --recursive "git reset --hard HEAD"`)
		err = cleanSubmodules(dir, repo, 0)
	}
	if err != nil {
		g.ex.Console.Debug("go-git clean failed: " + err.Error())
		g.ex.Console.Warning(`Unable to run "git clean -ffdx" and "git reset --hard HEAD" successfully, delete source folder instead.`)
		if err := os.RemoveAll(dir); err != nil {
			return false, fmt.Errorf("checkout %s: delete %s: %w", g.s.alias, dir, err)
		}
		return false, nil
	}
	return true, nil
}

// cleanWorktree is `git clean -ffdx`: everything not in the index goes,
// ignored files included; submodule directories are left to cleanSubmodules.
func cleanWorktree(dir string, repo *git.Repository) error {
	paths, err := untrackedPaths(dir, repo)
	if err != nil {
		return err
	}
	for _, p := range paths {
		if err := os.RemoveAll(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			return err
		}
	}
	return nil
}

// untrackedPaths lists the top-most paths under dir that are not in the
// index (what `git clean -ffdx` would delete), slash-separated.
func untrackedPaths(dir string, repo *git.Repository) ([]string, error) {
	idx, err := repo.Storer.Index()
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	tracked := map[string]bool{}
	parents := map[string]bool{}
	gitlinks := map[string]bool{}
	for _, e := range idx.Entries {
		tracked[e.Name] = true
		if e.Mode == filemode.Submodule {
			gitlinks[e.Name] = true
		}
		for d := path.Dir(e.Name); d != "." && d != "/"; d = path.Dir(d) {
			parents[d] = true
		}
	}
	var out []string
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := os.ReadDir(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := e.Name()
			if rel != "" {
				p = rel + "/" + e.Name()
			}
			switch {
			case rel == "" && e.Name() == ".git":
			case gitlinks[p]:
			case e.IsDir() && parents[p]:
				if err := walk(p); err != nil {
					return err
				}
			case !e.IsDir() && tracked[p]:
			default:
				out = append(out, p)
			}
		}
		return nil
	}
	return out, walk("")
}

// untrackedStash keeps untracked files out of go-git's way: go-git's forced
// checkout is a hard reset that also deletes untracked and ignored files,
// where `git checkout --force` keeps them.
type untrackedStash struct {
	dir, stash string
	paths      []string
}

func stashUntracked(dir string, repo *git.Repository) (*untrackedStash, error) {
	paths, err := untrackedPaths(dir, repo)
	if err != nil {
		return nil, err
	}
	st := &untrackedStash{dir: dir, stash: filepath.Join(dir, ".git", "goagent-untracked")}
	if err := os.RemoveAll(st.stash); err != nil {
		return nil, err
	}
	for _, p := range paths {
		to := filepath.Join(st.stash, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return st, err
		}
		if err := os.Rename(filepath.Join(dir, filepath.FromSlash(p)), to); err != nil {
			return st, err
		}
		st.paths = append(st.paths, p)
	}
	return st, nil
}

// restore puts the files back where the checkout left their place free; a
// file the checkout replaced with a tracked one is lost, as with git.
func (st *untrackedStash) restore() error {
	var first error
	for _, p := range st.paths {
		to := filepath.Join(st.dir, filepath.FromSlash(p))
		if _, err := os.Lstat(to); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			continue
		}
		if err := os.Rename(filepath.Join(st.stash, filepath.FromSlash(p)), to); err != nil && first == nil {
			first = err
		}
	}
	if err := os.RemoveAll(st.stash); err != nil && first == nil {
		first = err
	}
	return first
}

// resetHard is `git reset --hard HEAD`.
func resetHard(repo *git.Repository) error {
	head, err := repo.Head()
	if err != nil {
		return fmt.Errorf("resolve HEAD: %w", err)
	}
	w, err := repo.Worktree()
	if err != nil {
		return err
	}
	return w.Reset(&git.ResetOptions{Mode: git.HardReset, Commit: head.Hash()})
}

// cleanSubmodules cleans and resets every checked-out submodule, recursively.
func cleanSubmodules(dir string, repo *git.Repository, depth int) error {
	if depth > int(git.DefaultSubmoduleRecursionDepth) {
		return nil
	}
	idx, err := repo.Storer.Index()
	if err != nil {
		return err
	}
	for _, e := range idx.Entries {
		if e.Mode != filemode.Submodule {
			continue
		}
		sub := filepath.Join(dir, filepath.FromSlash(e.Name))
		if !exists(filepath.Join(sub, ".git")) {
			continue
		}
		r, err := git.PlainOpen(sub)
		if err != nil {
			return fmt.Errorf("open submodule %s: %w", e.Name, err)
		}
		if err := cleanWorktree(sub, r); err != nil {
			return err
		}
		if err := resetHard(r); err != nil {
			return err
		}
		if err := cleanSubmodules(sub, r, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// openOrInit opens the repository in the target directory, or creates it.
//
// Its object storage keeps the pack files open (KeepDescriptors): without
// that, go-git opens and closes a pack file for every object it reads,
// which in a checkout is every blob. closeStorage releases them.
func (g *goGit) openOrInit() (*git.Repository, error) {
	dir := g.s.target
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("checkout %s: create %s: %w", g.s.alias, dir, err)
	}
	wt := osfs.New(dir)
	if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		var repo *git.Repository
		if fi.IsDir() {
			repo, err = git.Open(g.storage(wt), wt)
		} else {
			repo, err = git.PlainOpen(dir) // a gitdir file: let go-git follow it
		}
		if err != nil {
			return nil, fmt.Errorf("checkout %s: open repository %s: %w", g.s.alias, dir, err)
		}
		return repo, nil
	}
	g.cmd(`init "` + dir + `"`)
	repo, err := git.Init(g.storage(wt), wt)
	if err == nil {
		// As git.PlainInit does: write the configuration back once.
		var cfg *config.Config
		if cfg, err = repo.Config(); err == nil {
			err = repo.Storer.SetConfig(cfg)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("checkout %s: initialise repository in %s: %w", g.s.alias, dir, err)
	}
	g.cmd("remote add origin " + g.s.url)
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{g.s.url}}); err != nil {
		return nil, fmt.Errorf("checkout %s: add remote origin: %w", g.s.alias, err)
	}
	return repo, nil
}

// storage is the object storage of the .git directory in wt, keeping its
// pack files open until closeStorage.
//
// Its fetches index packs with packIndexer (see packindex.go).
func (g *goGit) storage(wt billy.Filesystem) *indexingStorage {
	dot, _ := wt.Chroot(git.GitDirName)
	st := filesystem.NewStorageWithOptions(dot, cache.NewObjectLRUDefault(), filesystem.Options{KeepDescriptors: true})
	g.storages = append(g.storages, st)
	return &indexingStorage{Storage: st, packDir: filepath.Join(wt.Root(), git.GitDirName, "objects", "pack")}
}

// closeStorage closes the pack files the step's repositories opened.
func (g *goGit) closeStorage() {
	for _, st := range g.storages {
		if err := st.Close(); err != nil {
			g.ex.Console.Debug("go-git: close the object storage: " + err.Error())
		}
	}
	g.storages = nil
}

// removeStaleConfig drops extraheaders and proxies left in .git/config.
func (g *goGit) removeStaleConfig(repo *git.Repository) error {
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("checkout %s: read git config: %w", g.s.alias, err)
	}
	changed := false
	sec := cfg.Raw.Section("http")
	if sub := sec.Subsection(g.s.url); sub.HasOption("extraheader") {
		g.cmd("config --unset-all http." + g.s.url + ".extraheader")
		sub.RemoveOption("extraheader")
		changed = true
	}
	for _, key := range []string{"extraheader", "proxy"} {
		if sec.HasOption(key) {
			g.cmd("config --unset-all http." + key)
			sec.RemoveOption(key)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := repo.SetConfig(cfg); err != nil {
		return fmt.Errorf("checkout %s: write git config: %w", g.s.alias, err)
	}
	return nil
}

// refspecs are the CLI path's (fetch by commit for shallow fetches of
// providers that allow it; PR refs; else the remote's default).
func (g *goGit) refspecs() ([]string, string) {
	s := g.s
	byCommit := !s.fetchByCommitOff && s.kind != kindExternalGit && s.version != "" && (s.fetchDepth > 0 || s.fullCloneByCommit)
	switch {
	case byCommit:
		ref := "refs/remotes/origin/" + s.version
		return []string{"+" + s.version + ":" + ref}, ref
	case isPullRequest(s.ref):
		return []string{"+refs/heads/*:refs/remotes/origin/*", "+" + s.ref + ":" + remoteRefName(s.ref)}, ""
	}
	return nil, ""
}

// fetch runs the fetch with the CLI path's retry policy. Two go-git limits
// are handled here: a server that does not allow fetching a commit by id
// over protocol v0 (fall back to fetching branches), and multi_ack
// negotiation failing on a fetch into an existing repository (clone afresh).
func (g *goGit) fetch(ctx context.Context, repo *git.Repository, existed bool, refspecs []string, refByCommit string) (*git.Repository, string, error) {
	for {
		err := g.fetchWithRetries(ctx, repo, refspecs)
		switch {
		case err == nil:
			return repo, refByCommit, nil
		case errors.Is(err, git.ErrExactSHA1NotSupported) && refByCommit != "":
			g.ex.Console.Info("The server does not let go-git fetch a single commit by id; fetching its branches instead.")
			refspecs, refByCommit = nil, ""
			continue
		case existed && strings.Contains(err.Error(), "multi_ack"):
			g.ex.Console.Info("go-git cannot negotiate an incremental fetch with this server (multi_ack); deleting the repository and cloning afresh.")
			existed = false
			g.closeStorage()
			if err := os.RemoveAll(g.s.target); err != nil {
				return nil, "", fmt.Errorf("checkout %s: delete %s: %w", g.s.alias, g.s.target, err)
			}
			if repo, err = g.openOrInit(); err != nil {
				return nil, "", err
			}
			continue
		case errors.Is(err, git.ErrExactSHA1NotSupported), strings.Contains(err.Error(), "multi_ack"):
			return nil, "", fmt.Errorf("git fetch (go-git) from %s failed: %w", redactURL(g.s.url), err)
		}
		return nil, "", err
	}
}

func (g *goGit) fetchWithRetries(ctx context.Context, repo *git.Repository, refspecs []string) error {
	s := g.s
	show := g.authShow + "fetch --force"
	tags := git.AllTags
	if s.fetchTags {
		show += " --tags"
	} else {
		show += " --no-tags"
		tags = git.NoTags
	}
	show += " --prune --progress --no-recurse-submodules origin"
	if s.fetchDepth > 0 {
		show += fmt.Sprintf(" --depth=%d", s.fetchDepth)
	}
	specs := make([]config.RefSpec, 0, len(refspecs))
	for _, r := range refspecs {
		show += " " + r
		specs = append(specs, config.RefSpec(r))
	}
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		g.cmd(show)
		err := repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   specs,
			Depth:      s.fetchDepth,
			Auth:       g.auth,
			Progress:   writerOr(g.ex.Stderr),
			Tags:       tags,
			Force:      true,
			Prune:      len(specs) == 0,
		})
		switch {
		case err == nil || errors.Is(err, git.NoErrAlreadyUpToDate):
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("git fetch (go-git): %w", context.Cause(ctx))
		case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
			return authError(s, g.cred)
		case errors.Is(err, transport.ErrRepositoryNotFound):
			return fmt.Errorf("repository %s was not found: check the repository's url and that its credentials may read it", redactURL(s.url))
		case errors.Is(err, git.ErrExactSHA1NotSupported), strings.Contains(err.Error(), "multi_ack"):
			return err
		}
		last = err
		if attempt < 3 {
			d := g.opts.retryDelay(attempt)
			g.ex.Console.Warning(fmt.Sprintf("Git fetch failed: %v, back off %s seconds before retry.", err, strconv.FormatFloat(d.Seconds(), 'f', -1, 64)))
			if err := pause.Sleep(ctx, d); err != nil {
				return fmt.Errorf("git fetch (go-git): %w", err)
			}
		}
	}
	return fmt.Errorf("git fetch (go-git) from %s failed: %w", redactURL(s.url), last)
}

// checkout resolves the target (a remote-tracking ref or a commit id) and
// checks it out detached, overwriting local changes.
func (g *goGit) checkout(ctx context.Context, repo *git.Repository, target string) error {
	g.cmd("checkout --progress --force " + target)
	hash, err := resolveTarget(repo, target)
	if err == nil {
		_, err = repo.CommitObject(hash)
	}
	if err != nil {
		if g.s.fetchDepth > 0 {
			g.ex.Console.Warning(shallowCheckoutFail(g.s.fetchDepth, target))
		}
		return fmt.Errorf("Git checkout failed: %s is not in the fetched history: %w", target, err)
	}
	n, err := freshCheckout(ctx, repo, g.s.target, hash, freshOptions{})
	var fb *freshFallback
	switch {
	case err == nil:
		g.ex.Console.Debug(fmt.Sprintf("go-git: wrote %d files into the empty worktree straight from the object storage", n))
		return nil
	case !errors.As(err, &fb):
		return fmt.Errorf("Git checkout of %s failed: %w", target, err)
	}
	g.ex.Console.Debug("go-git: " + fb.Error())
	w, err := repo.Worktree()
	if err != nil {
		return err
	}
	stash, err := stashUntracked(g.s.target, repo)
	if err != nil {
		if stash != nil {
			_ = stash.restore()
		}
		return fmt.Errorf("Git checkout of %s failed: set untracked files aside: %w", target, err)
	}
	err = w.Checkout(&git.CheckoutOptions{Hash: hash, Force: true})
	if rerr := stash.restore(); rerr != nil && err == nil {
		err = fmt.Errorf("restore untracked files: %w", rerr)
	}
	if err != nil {
		return fmt.Errorf("Git checkout of %s failed: %w", target, err)
	}
	return nil
}

func resolveTarget(repo *git.Repository, target string) (plumbing.Hash, error) {
	if plumbing.IsHash(target) {
		return plumbing.NewHash(target), nil
	}
	if ref, err := repo.Reference(plumbing.ReferenceName(target), true); err == nil {
		return ref.Hash(), nil
	}
	h, err := repo.ResolveRevision(plumbing.Revision(target))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return *h, nil
}

// updateSubmodules is `git submodule sync` + `git submodule update --init
// --force [--depth] [--recursive]`, the credential going to the
// repository's own origin only.
func (g *goGit) updateSubmodules(ctx context.Context, repo *git.Repository) error {
	s := g.s
	rec := ""
	depth := git.NoRecurseSubmodules
	if s.nestedSubmodules {
		rec = " --recursive"
		depth = git.DefaultSubmoduleRecursionDepth
	}
	g.cmd("submodule sync" + rec)
	if err := syncSubmodules(repo); err != nil {
		return fmt.Errorf("Git submodule sync failed: %w", err)
	}
	show := g.authShow + "submodule update --init --force"
	if s.fetchDepth > 0 {
		show += fmt.Sprintf(" --depth=%d", s.fetchDepth)
	}
	g.cmd(show + rec)
	w, err := repo.Worktree()
	if err != nil {
		return err
	}
	subs, err := w.Submodules()
	if err != nil {
		return fmt.Errorf("Git submodule update failed: read .gitmodules: %w", err)
	}
	err = subs.UpdateContext(ctx, &git.SubmoduleUpdateOptions{
		Init:              true,
		RecurseSubmodules: depth,
		Auth:              g.auth,
		Depth:             s.fetchDepth,
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("git submodule update (go-git): %w", context.Cause(ctx))
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		return authError(s, g.cred)
	}
	return fmt.Errorf("Git submodule update failed: %w", err)
}

// syncSubmodules copies submodule URLs from .gitmodules into .git/config
// for submodules already initialised there.
func syncSubmodules(repo *git.Repository) error {
	w, err := repo.Worktree()
	if err != nil {
		return err
	}
	subs, err := w.Submodules()
	if err != nil {
		return err
	}
	cfg, err := repo.Config()
	if err != nil {
		return err
	}
	changed := false
	for _, sub := range subs {
		c := sub.Config()
		if have, ok := cfg.Submodules[c.Name]; ok && have.URL != c.URL {
			have.URL = c.URL
			changed = true
		}
	}
	if changed {
		return repo.SetConfig(cfg)
	}
	return nil
}

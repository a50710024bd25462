package checkout

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/goagent-dev/goagent/internal/pause"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
)

// gitArg is one argument and how the log shows it.
type gitArg struct{ v, show string }

// arg is shown as it is.
func arg(v string) gitArg { return gitArg{v, v} }

// quoted is shown in double quotes, as the official agent writes paths and
// config values into its command line.
func quoted(v string) gitArg { return gitArg{v, `"` + v + `"`} }

func args(vs ...string) []gitArg {
	out := make([]gitArg, len(vs))
	for i, v := range vs {
		out[i] = arg(v)
	}
	return out
}

// gitVersion is major.minor.patch.
type gitVersion [3]int

var versionRE = regexp.MustCompile(`\d+\.\d+(\.\d+)?`)

// parseGitVersion reads "git version 2.39.5" (GitCliManager.GitVersion).
func parseGitVersion(out string) (gitVersion, bool) {
	var v gitVersion
	m := versionRE.FindString(out)
	if m == "" {
		return v, false
	}
	for i, p := range strings.SplitN(m, ".", 3) {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func (v gitVersion) atLeast(major, minor int) bool {
	return v[0] > major || (v[0] == major && v[1] >= minor)
}

func (v gitVersion) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// gitCLI runs git the way GitCliManager does.
type gitCLI struct {
	ex   *steps.Exec
	s    *settings
	cred credential
	opts Options
	path string
	ver  gitVersion
	env  []string
}

// result of one git command.
type result struct {
	code   int
	stdout string // only when captured
	stderr string // the tail of stderr, for classifying failures
}

// run prints the command, runs it in dir, streams stderr (and stdout
// unless capture), and returns its exit code. The error is non-nil only when
// git could not be run or ctx ended it.
func (g *gitCLI) run(ctx context.Context, dir string, capture bool, extraEnv []string, a ...gitArg) (result, error) {
	shown := make([]string, len(a))
	argv := make([]string, len(a))
	for i, x := range a {
		shown[i], argv[i] = x.show, x.v
	}
	g.ex.Console.Command("git " + strings.Join(shown, " "))

	var out bytes.Buffer
	stdout := writerOr(g.ex.Stdout)
	if capture {
		stdout = &out
	}
	tail := &tailBuffer{max: 16 << 10}
	env := g.env
	for _, kv := range extraEnv {
		k, v, _ := strings.Cut(kv, "=")
		env = withEnv(env, k, v)
	}
	res, err := proc.Run(ctx, proc.Cmd{
		Path:   g.path,
		Args:   argv,
		Dir:    dir,
		Env:    env,
		Stdout: stdout,
		Stderr: io.MultiWriter(writerOr(g.ex.Stderr), tail),
		Grace:  g.ex.KillGrace,
		Hard:   g.ex.Hard,
	})
	r := result{code: res.ExitCode, stdout: out.String(), stderr: tail.String()}
	if err != nil {
		return r, fmt.Errorf("git %s: %w", strings.Join(shown, " "), err)
	}
	return r, nil
}

func writerOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// authArgs pass the credential for configKey (http.extraheader or
// http.<url>.extraheader) to one command: through --config-env and an
// environment variable when git >= 2.31 and the GitUseSecureParameterPassing
// knob is on (its default), else through -c (ComposeGitArgs).
func (g *gitCLI) authArgs(configKey string) ([]gitArg, []string) {
	if g.cred.header == "" {
		return nil, nil
	}
	if g.s.secureParams && g.ver.atLeast(2, 31) {
		envName := "env_var_" + configKey
		return []gitArg{arg("--config-env=" + configKey + "=" + envName)}, []string{envName + "=" + g.cred.configValue()}
	}
	return []gitArg{arg("-c"), {v: configKey + "=" + g.cred.configValue(), show: configKey + `="` + g.cred.maskedValue() + `"`}}, nil
}

// checkoutWithCLI is GitSourceProvider.GetSourceAsync.
func checkoutWithCLI(ctx context.Context, ex *steps.Exec, s *settings, cred credential, st *postState, opts Options, gitPath string) error {
	g := &gitCLI{ex: ex, s: s, cred: cred, opts: opts, path: gitPath}
	g.env = withEnv(ex.Env, "GIT_TERMINAL_PROMPT", "0")
	if !s.lfs {
		g.env = withEnv(g.env, "GIT_LFS_SKIP_SMUDGE", "1")
	}
	if err := g.loadVersion(ctx); err != nil {
		return err
	}
	if err := g.requirements(ctx); err != nil {
		return err
	}
	fetchByCommit := !s.fetchByCommitOff && supportsFetchByCommit(s.kind, g.ver)
	dir := s.target

	if err := g.prepareDirectory(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checkout %s: create %s: %w", s.alias, dir, err)
	}
	if !exists(filepath.Join(dir, ".git")) {
		r, err := g.run(ctx, dir, false, nil, arg("init"), quoted(dir))
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("Unable to use git.exe init repository under %s, 'git init' failed with exit code: %d", dir, r.code)
		}
		r, err = g.run(ctx, dir, false, nil, args("remote", "add", "origin", s.url)...)
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("Unable to use git.exe add remote 'origin', 'git remote add' failed with exit code: %d", r.code)
		}
	}
	if err := g.sparse(ctx); err != nil {
		return err
	}
	if err := g.status(ctx); err != nil {
		return err
	}

	if r, err := g.run(ctx, dir, false, nil, args("config", "gc.auto", "0")...); err != nil {
		return err
	} else if r.code != 0 {
		ex.Console.Warning("Unable turn off git auto garbage collection, git fetch operation may trigger auto garbage collection which will affect the performance of fetching.")
	}
	if err := g.removeStaleConfig(ctx); err != nil {
		return err
	}
	// Force HTTP/1.1: IIS in front of Azure Repos rejects large HTTP/2 pushes.
	if r, err := g.run(ctx, dir, false, nil, args("config", "http.version", "HTTP/1.1")...); err != nil {
		return err
	} else if r.code != 0 {
		ex.Console.Warning(fmt.Sprintf("Forcing Git to HTTP/1.1 failed with exit code: %d", r.code))
	}

	fetchAuth, fetchEnv := g.authArgs("http.extraheader")
	authorityKey := "http." + authority(s.url) + ".extraheader"
	hostAuth, hostEnv := g.authArgs(authorityKey) // LFS and submodules: the host only
	if s.lfs {
		r, err := g.run(ctx, dir, false, nil, args("lfs", "install", "--local")...)
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("Git-lfs installation failed with exit code: %d", r.code)
		}
	}

	// Refspecs (GetSourceAsync): fetch the commit itself when the provider
	// allows it and the fetch is shallow (or the knob asks for it).
	var refspecs []string
	refByCommit := ""
	byCommit := fetchByCommit && s.version != "" && (s.fetchDepth > 0 || s.fullCloneByCommit)
	switch {
	case byCommit:
		refByCommit = "refs/remotes/origin/" + s.version
		refspecs = append(refspecs, "+"+s.version+":"+refByCommit)
	case isPullRequest(s.ref):
		refspecs = append(refspecs, "+refs/heads/*:refs/remotes/origin/*", "+"+s.ref+":"+remoteRefName(s.ref))
	}
	if err := g.fetch(ctx, fetchAuth, fetchEnv, refspecs); err != nil {
		return err
	}
	// A second fetch of the commit alone, kept apart so the first one
	// behaves as it always did.
	if fetchByCommit && s.version != "" {
		if err := g.fetch(ctx, fetchAuth, fetchEnv, []string{"+" + s.version}); err != nil {
			return err
		}
	}

	target := s.checkoutTarget(refByCommit)

	if s.lfs {
		if err := g.lfsFetch(ctx, target, hostAuth, hostEnv); err != nil {
			return err
		}
	}

	checkoutArgs := args("checkout", "--progress", "--force", target)
	if !g.ver.atLeast(2, 7) {
		checkoutArgs = args("checkout", "--force", target)
	}
	// A partial clone fetches the missing objects during checkout, which
	// needs the credential too. The official agent adds it only behind the
	// AddForceCredentialsToGitCheckout feature flag; without it such a
	// checkout cannot succeed against a server that requires auth.
	var checkoutEnv []string
	if len(s.fetchFilter) > 0 {
		checkoutArgs = append(append([]gitArg(nil), fetchAuth...), checkoutArgs...)
		checkoutEnv = fetchEnv
	}
	r, err := g.run(ctx, dir, false, checkoutEnv, checkoutArgs...)
	if err != nil {
		return err
	}
	if r.code != 0 {
		if s.fetchDepth > 0 {
			ex.Console.Warning(shallowCheckoutFail(s.fetchDepth, target))
		}
		return fmt.Errorf("Git checkout failed with exit code: %d", r.code)
	}

	if s.submodules {
		if err := g.updateSubmodules(ctx, hostAuth, hostEnv); err != nil {
			return err
		}
	}

	if s.persist && cred.header != "" {
		if err := g.persist(ctx, st); err != nil {
			return err
		}
	}
	return g.status(ctx)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func shallowCheckoutFail(depth int, target string) string {
	return fmt.Sprintf("Git checkout failed on shallow repository, this might because of git fetch with depth '%d' doesn't include the checkout commit '%s'. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=829603)", depth, target)
}

// supportsFetchByCommit is GitSupportsFetchingCommitBySha1Hash per provider.
func supportsFetchByCommit(k repoKind, v gitVersion) bool {
	switch k {
	case kindAzureRepos, kindBitbucket:
		return true
	case kindGitHub:
		return v.atLeast(2, 26)
	}
	return false
}

// checkoutTarget is what both checkout paths check out after the fetch: the
// ref fetched by commit when there is one, the remote-tracking ref of a pull
// request or of a source without a version, else the version (a commit).
func (s *settings) checkoutTarget(refByCommit string) string {
	switch {
	case refByCommit != "":
		return refByCommit
	case isPullRequest(s.ref) || s.version == "":
		return remoteRefName(s.ref)
	}
	return s.version
}

func isPullRequest(ref string) bool {
	l := strings.ToLower(ref)
	return strings.HasPrefix(l, "refs/pull/") || strings.HasPrefix(l, "refs/remotes/pull/")
}

// remoteRefName maps a branch to its remote-tracking ref (GetRemoteRefName).
func remoteRefName(ref string) string {
	l := strings.ToLower(ref)
	switch {
	case ref == "":
		return "refs/remotes/origin/master"
	case l == "master":
		return "refs/remotes/origin/" + ref
	case strings.HasPrefix(l, "refs/heads/"):
		return "refs/remotes/origin/" + ref[len("refs/heads/"):]
	case strings.HasPrefix(l, "refs/pull/"):
		return "refs/remotes/pull/" + ref[len("refs/pull/"):]
	}
	return ref
}

// loadVersion is GitCliManager.LoadGitExecutionInfo.
func (g *gitCLI) loadVersion(ctx context.Context) error {
	dir := g.ex.Dirs.Work
	if dir == "" {
		dir = g.ex.Dirs.Build
	}
	r, err := g.run(ctx, dir, true, nil, arg("version"))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line != "" {
			g.ex.Console.Info(line)
		}
	}
	v, ok := parseGitVersion(r.stdout)
	if r.code != 0 || !ok {
		return fmt.Errorf("checkout %s: could not determine the version of %s ('git version' exited with %d): make sure git works in this image", g.s.alias, g.path, r.code)
	}
	g.ver = v
	g.ex.Console.Debug("Detect git version: " + v.String() + ".")
	if !v.atLeast(2, 0) {
		return fmt.Errorf("Min required git version is '2.0', your git ('%s') version is '%s'", g.path, v)
	}
	if !v.atLeast(2, 17) {
		g.ex.Console.Info(fmt.Sprintf("To get a better Git experience, upgrade your Git to at least version '2.17'. Your current Git version is '%s'.", v))
	}
	if _, err := proc.LookPath("git-lfs", g.env); err == nil {
		r, err := g.run(ctx, dir, true, nil, args("lfs", "version")...)
		if err != nil {
			return err
		}
		if out := strings.TrimSpace(r.stdout); out != "" {
			g.ex.Console.Info(out)
		}
	}
	agentVersion := "unknown"
	if g.ex.Job != nil && g.ex.Job.AgentVersion != "" {
		agentVersion = g.ex.Job.AgentVersion
	}
	g.env = withEnv(g.env, "GIT_HTTP_USER_AGENT", fmt.Sprintf("git/%s (vsts-agent-git/%s)", v, agentVersion))
	return nil
}

// requirements fails early on what this git cannot do.
func (g *gitCLI) requirements(ctx context.Context) error {
	if g.cred.header != "" && !g.ver.atLeast(2, 9) {
		// The official agent embeds the credentials in the remote URL for
		// git < 2.9; goagent never writes them into the URL.
		return fmt.Errorf("Min required git version is '2.9', your git ('%s') version is '%s': goagent passes credentials to git as an http.extraheader, which needs git 2.9 or later — upgrade git in the agent image", g.path, g.ver)
	}
	if g.s.lfs {
		if _, err := proc.LookPath("git-lfs", g.env); err != nil {
			return fmt.Errorf("checkout %s: lfs is true but git-lfs is not on the step's PATH: install git-lfs in the agent image (e.g. apt-get install git-lfs), or set lfs: false", g.s.alias)
		}
	}
	if g.s.sparseKnob && (strings.TrimSpace(g.s.sparseDirs) != "" || strings.TrimSpace(g.s.sparsePatterns) != "") && !g.ver.atLeast(2, 25) {
		return fmt.Errorf("Min required git version is '2.25', your git ('%s') version is '%s'", g.path, g.ver)
	}
	return nil
}

// prepareDirectory reuses a matching repository (cleaned when asked) or
// deletes whatever is in the way.
func (g *gitCLI) prepareDirectory(ctx context.Context) error {
	dir := g.s.target
	match := false
	if exists(filepath.Join(dir, ".git")) {
		r, err := g.run(ctx, dir, true, nil, args("config", "--get", "remote.origin.url")...)
		if err != nil {
			return err
		}
		if r.code != 0 {
			g.ex.Console.Warning(fmt.Sprintf("'git config --get remote.origin.url' failed with exit code: %d", r.code))
		}
		match = r.code == 0 && sameRepositoryURL(strings.TrimSpace(r.stdout), g.s.url)
		if !match {
			g.ex.Console.Debug("The remote.origin.url of the repository under root folder '" + dir + "' doesn't matches source repository url.")
		}
	}
	if !match {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("checkout %s: delete %s: %w", g.s.alias, dir, err)
		}
		return nil
	}
	for _, lock := range []string{"index.lock", "shallow.lock"} {
		if err := os.Remove(filepath.Join(dir, ".git", lock)); err != nil && !os.IsNotExist(err) {
			g.ex.Console.Debug(fmt.Sprintf("Unable to delete the %s file: %v", lock, err))
		}
	}
	if !g.s.clean {
		return nil
	}
	if err := g.status(ctx); err != nil {
		return err
	}
	cleanFlag := "-ffdx"
	if !g.ver.atLeast(2, 4) {
		cleanFlag = "-fdx"
	}
	cmds := [][]gitArg{
		args("clean", cleanFlag),
		args("reset", "--hard", "HEAD"),
	}
	if g.s.submodules {
		cmds = append(cmds,
			[]gitArg{arg("submodule"), arg("foreach"), arg("--recursive"), quoted("git clean " + cleanFlag)},
			[]gitArg{arg("submodule"), arg("foreach"), arg("--recursive"), quoted("git reset --hard HEAD")})
	}
	for _, c := range cmds {
		r, err := g.run(ctx, dir, false, nil, c...)
		if err != nil {
			return err
		}
		if r.code != 0 {
			g.ex.Console.Warning(`Unable to run "git clean -ffdx" and "git reset --hard HEAD" successfully, delete source folder instead.`)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("checkout %s: delete %s: %w", g.s.alias, dir, err)
			}
			return nil
		}
	}
	return nil
}

// sparse sets up or disables sparse checkout (knob UseSparseCheckoutInCheckoutTask).
func (g *gitCLI) sparse(ctx context.Context) error {
	if !g.s.sparseKnob {
		return nil
	}
	dir := g.s.target
	dirs, patterns := strings.TrimSpace(g.s.sparseDirs), strings.TrimSpace(g.s.sparsePatterns)
	if dirs == "" && patterns == "" {
		if !g.ver.atLeast(2, 25) {
			return nil
		}
		r, err := g.run(ctx, dir, false, nil, args("sparse-checkout", "disable")...)
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("Git sparse checkout disable failed with exit code: %d", r.code)
		}
		return nil
	}
	mode, list := "--cone", dirs
	if dirs == "" {
		mode, list = "--no-cone", patterns
	}
	r, err := g.run(ctx, dir, false, nil, args("sparse-checkout", "init", mode)...)
	if err != nil {
		return err
	}
	if r.code == 0 {
		r, err = g.run(ctx, dir, false, nil, append(args("sparse-checkout", "set"), args(strings.Fields(list)...)...)...)
		if err != nil {
			return err
		}
	}
	if r.code != 0 {
		return fmt.Errorf("Git sparse checkout failed with exit code: %d", r.code)
	}
	return nil
}

// status runs `git status` when system.debug is true.
func (g *gitCLI) status(ctx context.Context) error {
	if !g.s.debug || !exists(filepath.Join(g.s.target, ".git")) {
		return nil
	}
	r, err := g.run(ctx, g.s.target, false, nil, arg("status"))
	if err != nil {
		return err
	}
	if r.code != 0 {
		g.ex.Console.Warning(fmt.Sprintf("git status failed with exit code: %d", r.code))
	}
	return nil
}

// removeStaleConfig drops credentials and proxies a previous run left in
// .git/config. Values are captured, never printed: they may be secrets.
func (g *gitCLI) removeStaleConfig(ctx context.Context) error {
	dir := g.s.target
	exist := func(key string) (bool, error) {
		r, err := g.run(ctx, dir, true, nil, args("config", "--get-all", key)...)
		return err == nil && r.code == 0, err
	}
	unset := func(key string) error {
		r, err := g.run(ctx, dir, false, nil, args("config", "--unset-all", key)...)
		if err == nil && r.code != 0 {
			g.ex.Console.Warning(fmt.Sprintf("Unable to remove \"%s\" from the git config. To remove the credential, execute \"git config --unset-all %s\" from the repository root \"%s\".", key, key, dir))
		}
		return err
	}
	for _, key := range []string{"http." + g.s.url + ".extraheader", "http.extraheader"} {
		ok, err := exist(key)
		if err != nil {
			return err
		}
		if ok {
			if err := unset(key); err != nil {
				return err
			}
		}
	}
	r, err := g.run(ctx, dir, true, nil, args("config", "--get-regexp", ".*extraheader")...)
	if err != nil {
		return err
	}
	if r.code == 0 {
		g.ex.Console.Warning(`Git config still contains extraheader keys. It may cause errors.  To remove the credential, execute "git config --unset-all key-name" from the repository root`)
	}
	ok, err := exist("http.proxy")
	if err != nil {
		return err
	}
	if ok {
		return unset("http.proxy")
	}
	return nil
}

// fetch is GitCliManager.GitFetch: three attempts with a random back-off.
// A rejected credential is not retried: it cannot get better.
func (g *gitCLI) fetch(ctx context.Context, auth []gitArg, authEnv []string, refspecs []string) error {
	a := append([]gitArg(nil), auth...)
	a = append(a, arg("fetch"))
	if g.ver.atLeast(2, 20) {
		a = append(a, arg("--force"))
	}
	if g.s.fetchTags {
		a = append(a, arg("--tags"))
	} else {
		a = append(a, arg("--no-tags"))
	}
	a = append(a, arg("--prune"))
	// --prune-tags implies the refspec refs/tags/*:refs/tags/*, which would
	// fetch every tag despite --no-tags (azure-pipelines-agent#3913), so it
	// only goes with --tags.
	if g.s.fetchTags && g.ver.atLeast(2, 17) && !g.s.pruneTagsOff {
		a = append(a, arg("--prune-tags"))
	}
	a = append(a, args("--progress", "--no-recurse-submodules", "origin")...)
	if g.s.fetchDepth > 0 {
		a = append(a, arg(fmt.Sprintf("--depth=%d", g.s.fetchDepth)))
	} else if exists(filepath.Join(g.s.target, ".git", "shallow")) {
		a = append(a, arg("--unshallow"))
	}
	for _, f := range g.s.fetchFilter {
		a = append(a, arg("--filter="+f))
	}
	a = append(a, args(refspecs...)...)

	var last result
	for attempt := 1; attempt <= 3; attempt++ {
		r, err := g.run(ctx, g.s.target, false, authEnv, a...)
		if err != nil {
			return err
		}
		if r.code == 0 {
			return nil
		}
		last = r
		if authFailed(r.stderr) {
			return authError(g.s, g.cred)
		}
		if attempt < 3 {
			d := g.opts.retryDelay(attempt)
			g.ex.Console.Warning(fmt.Sprintf("Git fetch failed with exit code %d, back off %s seconds before retry.", r.code, strconv.FormatFloat(d.Seconds(), 'f', -1, 64)))
			if err := pause.Sleep(ctx, d); err != nil {
				return fmt.Errorf("git fetch: %w", err)
			}
		}
	}
	if repoNotFound(last.stderr) {
		return fmt.Errorf("repository %s was not found: check the repository's url and that its credentials may read it (Git fetch failed with exit code: %d)", redactURL(g.s.url), last.code)
	}
	return fmt.Errorf("Git fetch failed with exit code: %d", last.code)
}

// lfsFetch is GitCliManager.GitLFSFetch; a failure is not fatal.
func (g *gitCLI) lfsFetch(ctx context.Context, target string, auth []gitArg, authEnv []string) error {
	dir := g.s.target
	a := append(append([]gitArg(nil), auth...), args("checkout", target, "--", ".lfsconfig")...)
	if _, err := g.run(ctx, dir, false, authEnv, a...); err != nil {
		return err
	}
	a = append(append([]gitArg(nil), auth...), args("lfs", "fetch", "origin", target)...)
	code := 0
	for attempt := 1; attempt <= 3; attempt++ {
		r, err := g.run(ctx, dir, false, authEnv, a...)
		if err != nil {
			return err
		}
		if code = r.code; code == 0 {
			return nil
		}
		if attempt < 3 {
			d := g.opts.retryDelay(attempt)
			g.ex.Console.Info(fmt.Sprintf("Git lfs fetch failed with exit code %d, back off %s seconds before retry.", code, strconv.FormatFloat(d.Seconds(), 'f', -1, 64)))
			if err := pause.Sleep(ctx, d); err != nil {
				return fmt.Errorf("git lfs fetch: %w", err)
			}
		}
	}
	if g.s.fetchDepth > 0 {
		g.ex.Console.Warning(fmt.Sprintf("Git lfs fetch failed on shallow repository, this might because of git fetch with depth '%d' doesn't include the lfs fetch commit '%s'. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=829603)", g.s.fetchDepth, target))
	}
	r, err := g.run(ctx, dir, false, nil, args("lfs", "logs", "last")...)
	if err != nil {
		return err
	}
	g.ex.Console.Info(fmt.Sprintf("Git lfs fetch failed with exit code: %d. Git lfs logs returned with exit code: %d.", code, r.code))
	g.ex.Console.Info(`Checkout will continue.  "git checkout" will fetch lfs files, however this could cause poor performance on old versions of git.`)
	return nil
}

// updateSubmodules syncs and updates submodules, sending the credential to
// the repository's own host only.
func (g *gitCLI) updateSubmodules(ctx context.Context, auth []gitArg, authEnv []string) error {
	dir := g.s.target
	sync := args("submodule", "sync")
	if g.s.nestedSubmodules {
		sync = append(sync, arg("--recursive"))
	}
	r, err := g.run(ctx, dir, false, nil, sync...)
	if err != nil {
		return err
	}
	if r.code != 0 {
		return fmt.Errorf("Git submodule sync failed with exit code: %d", r.code)
	}
	a := append(append([]gitArg(nil), auth...), args("submodule", "update", "--init", "--force")...)
	if g.s.fetchDepth > 0 {
		a = append(a, arg(fmt.Sprintf("--depth=%d", g.s.fetchDepth)))
	}
	if g.s.nestedSubmodules {
		a = append(a, arg("--recursive"))
	}
	r, err = g.run(ctx, dir, false, authEnv, a...)
	if err != nil {
		return err
	}
	if r.code != 0 {
		if authFailed(r.stderr) {
			return authError(g.s, g.cred)
		}
		return fmt.Errorf("Git submodule update failed with exit code: %d", r.code)
	}
	return nil
}

// persist writes the credential into .git/config for later script steps
// (persistCredentials); the post-job step removes it. With secure parameter
// passing git only ever sees a placeholder on its command line, which is
// then replaced in the file (SetAuthTokenInGitConfig).
func (g *gitCLI) persist(ctx context.Context, st *postState) error {
	dir := g.s.target
	key := "http." + g.s.url + ".extraheader"
	value := g.cred.configValue()
	if g.s.secureParams {
		placeholder := "AUTHORIZATION: placeholder_" + newGUID()
		r, err := g.run(ctx, dir, false, nil, arg("config"), arg(key), quoted(placeholder))
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("Git config failed with exit code: %d", r.code)
		}
		if err := replaceInConfig(dir, placeholder, value); err != nil {
			return fmt.Errorf("checkout %s: persist credentials: %w", g.s.alias, err)
		}
	} else {
		r, err := g.run(ctx, dir, false, nil, arg("config"), arg(key), gitArg{v: value, show: `"` + g.cred.maskedValue() + `"`})
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("Git config failed with exit code: %d", r.code)
		}
	}
	st.persisted, st.key, st.value, st.viaCLI = true, key, value, true
	return nil
}

// cleanupCLI removes the persisted header with git, falling back to editing
// the file (RemoveGitConfig).
func cleanupCLI(ctx context.Context, ex *steps.Exec, s *settings, st *postState, gitPath string) error {
	if !exists(filepath.Join(s.target, ".git", "config")) {
		return nil
	}
	g := &gitCLI{ex: ex, s: s, path: gitPath, env: withEnv(ex.Env, "GIT_TERMINAL_PROMPT", "0")}
	r, err := g.run(ctx, s.target, false, nil, args("config", "--unset-all", st.key)...)
	if err != nil {
		return err
	}
	if r.code == 0 {
		return nil
	}
	ex.Console.Warning(fmt.Sprintf("An unsuccessful attempt was made using git command line to remove \"%s\" from the git config. Attempting to modify the git config file directly to remove the credential.", st.key))
	return removeConfigOption(ex, s.target, st.key, st.value)
}

// replaceInConfig swaps old for new in .git/config.
func replaceInConfig(dir, old, new string) error {
	p := filepath.Join(dir, ".git", "config")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(old)) {
		return fmt.Errorf("the placeholder is not in %s", p)
	}
	return os.WriteFile(p, bytes.ReplaceAll(b, []byte(old), []byte(new)), 0o644)
}

// removeConfigOption deletes every "extraheader = <value>" line from
// .git/config and checks the value is gone.
func removeConfigOption(ex *steps.Exec, dir, key, value string) error {
	p := filepath.Join(dir, ".git", "config")
	b, err := os.ReadFile(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove persisted credentials from %s: %w", p, err)
	}
	var kept []string
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "extraheader") && strings.Trim(strings.TrimSpace(v), `"`) == value {
			continue
		}
		kept = append(kept, line)
	}
	out := strings.Join(kept, "\n")
	if strings.Contains(out, value) {
		return fmt.Errorf("Unable to remove \"%s\" from the git config. To remove the credential, execute \"git config --unset-all %s\" from the repository root \"%s\".", key, key, dir)
	}
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		return fmt.Errorf("remove persisted credentials from %s: %w", p, err)
	}
	return nil
}

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// authFailed recognises git's ways of saying the credential was refused.
func authFailed(stderr string) bool {
	l := strings.ToLower(stderr)
	for _, m := range []string{
		"authentication failed",
		"could not read username",
		"could not read password",
		"terminal prompts disabled",
		"the requested url returned error: 401",
		"the requested url returned error: 403",
		"access denied",
	} {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

func repoNotFound(stderr string) bool {
	l := strings.ToLower(stderr)
	return (strings.Contains(l, "repository '") && strings.Contains(l, "' not found")) ||
		strings.Contains(l, "the requested url returned error: 404")
}

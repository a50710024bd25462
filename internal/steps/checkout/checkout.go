// Package checkout is the built-in Checkout task (id
// 6d15af64-176c-496d-b583-fd2ae21d4df4, version 1.0.0), which the official
// agent runs as an in-process plugin (Agent.Plugins/RepositoryPlugin.cs,
// GitSourceProvider.cs, GitCliManager.cs; ../shared/protocol/worker.md §2.9).
//
// With a `git` binary on the step's PATH it reproduces the official command
// sequence, printing every command as the official agent does. Without one
// (scratch images) it checks out with go-git, honouring the same inputs where
// go-git can, and failing with a clear remedy where it cannot (LFS, fetch
// filters, sparse checkout).
//
// Variables the step sets (the way the worker's plugininternal.
// updaterepositorypath command does, PluginInternalCommandExtension.cs):
//   - single checkout: build.sourcesDirectory, build.repository.localpath and
//     system.defaultWorkingDirectory = the repository's directory;
//   - several checkouts, repository `self`: build.repository.localpath = its
//     directory, unless that is the default s/<name>;
//   - workspaceRepo: true: system.defaultWorkingDirectory = its directory.
package checkout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
	"github.com/goagent-dev/goagent/internal/wire"
)

// Task identity (A Constants.cs WellKnownTasks; SDK PipelineConstants.CheckoutTask).
const (
	TaskID      = "6d15af64-176c-496d-b583-fd2ae21d4df4"
	TaskName    = "Checkout"
	TaskVersion = "1.0.0"
)

// Input names (SDK PipelineConstants.CheckoutTaskInputs).
const (
	inRepository       = "repository"
	inClean            = "clean"
	inSubmodules       = "submodules"
	inLfs              = "lfs"
	inFetchDepth       = "fetchDepth"
	inFetchTags        = "fetchTags"
	inPersist          = "persistCredentials"
	inFetchFilter      = "fetchFilter"
	inPath             = "path"
	inWorkspaceRepo    = "workspaceRepo"
	inSparseDirs       = "sparseCheckoutDirectories"
	inSparsePatterns   = "sparseCheckoutPatterns"
	checkoutOptionsKey = "checkoutOptions"
)

// Options tune the step; the zero value is the official behaviour.
type Options struct {
	// RetryDelay is the wait before fetch attempt n+1 after attempt n failed
	// (n = 1, 2). Default: uniformly random between 1 and 10 seconds
	// (GitCliManager.GitFetch, BackoffTimerHelper.GetRandomBackoff).
	RetryDelay func(attempt int) time.Duration
}

func (o Options) retryDelay(attempt int) time.Duration {
	if o.RetryDelay != nil {
		return o.RetryDelay(attempt)
	}
	return time.Second + rand.N(9*time.Second)
}

// Definition is the Checkout task with the official behaviour.
func Definition() *steps.Definition { return NewDefinition(Options{}) }

// NewDefinition is the Checkout task with options (tests shorten retries).
func NewDefinition(opts Options) *steps.Definition {
	return &steps.Definition{
		ID:    TaskID,
		Name:  TaskName,
		Major: 1,
		// Defaults as the agent synthesizes them (SDK PipelineConstants.
		// CheckoutTask.Inputs); fetchTags has no default: missing means true.
		Inputs: []steps.Input{
			{Name: inRepository},
			{Name: inClean, Default: "true"},
			{Name: inSubmodules},
			{Name: inLfs, Default: "false"},
			{Name: inFetchDepth},
			{Name: inFetchTags},
			{Name: inPersist, Default: "false"},
			{Name: inFetchFilter},
			{Name: inPath}, // relative to Agent.BuildDirectory, so not a FilePath input
			{Name: inWorkspaceRepo},
			{Name: inSparseDirs},
			{Name: inSparsePatterns},
		},
		DisplayName: DisplayName,
		RawOutput:   true,
		Run: func(ctx context.Context, ex *steps.Exec) error {
			return run(ctx, ex, opts)
		},
	}
}

// DisplayName is the official name of a checkout step whose own display
// name is empty or "Checkout" (BuildJobExtension.UpdateCheckoutTasksAndVariables,
// loc CheckoutTaskDisplayNameFormat "Checkout {0}@{1} to {2}"). It returns ""
// when the repository alias matches no repository resource, in which case the
// official agent leaves the name alone.
func DisplayName(inputs map[string]string, job *steps.Job) string {
	if job == nil {
		return ""
	}
	alias := input(inputs, inRepository)
	repo := job.Repository(alias)
	if repo == nil {
		return ""
	}
	path := input(inputs, inPath)
	if path == "" {
		path = "s"
		if job.CheckoutCount > 1 {
			path = "s/" + cloneDirectory(repoNameForDir(repo))
		}
	}
	return fmt.Sprintf("Checkout %s@%s to %s", repo.Property("name"), trimHeads(repo.Property("ref")), path)
}

func trimHeads(ref string) string {
	if len(ref) >= len("refs/heads/") && strings.EqualFold(ref[:len("refs/heads/")], "refs/heads/") {
		return ref[len("refs/heads/"):]
	}
	return ref
}

// repoNameForDir is what RepositoryUtil.GetCloneDirectory(repository) feeds
// on: the name property, else the url, else the alias.
func repoNameForDir(r *wire.RepositoryResource) string {
	if n := r.Property("name"); n != "" {
		return n
	}
	if u := r.Property("url"); u != "" {
		return u
	}
	return r.Alias
}

// input looks an input up case-insensitively (the message's casing of input
// names is not guaranteed).
func input(inputs map[string]string, name string) string {
	if v, ok := inputs[name]; ok {
		return strings.TrimSpace(v)
	}
	for k, v := range inputs {
		if strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// boolOf is StringUtil.ConvertToBoolean: 1/true/$true and 0/false/$false,
// anything else is def.
func boolOf(v string, def bool) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "$true":
		return true
	case "0", "false", "$false":
		return false
	}
	return def
}

// repoKind is what a repository type means for the checkout.
type repoKind int

const (
	kindAzureRepos  repoKind = iota // Git (TfsGit): bearer for OAuth, fetch by commit
	kindGitHub                      // GitHub, GitHubEnterprise: fetch by commit with git >= 2.26
	kindBitbucket                   // fetch by commit
	kindExternalGit                 // no fetch by commit
)

func kindOf(repoType string) (repoKind, error) {
	switch strings.ToLower(repoType) {
	case "git", "tfsgit":
		return kindAzureRepos, nil
	case "github", "githubenterprise":
		return kindGitHub, nil
	case "bitbucket":
		return kindBitbucket, nil
	case "externalgit":
		return kindExternalGit, nil
	case "tfvc", "tfsversioncontrol", "svn":
		return 0, fmt.Errorf("it is a %s repository: goagent checks out git repositories only (Azure Repos Git, GitHub, GitHub Enterprise, Bitbucket, other Git); run this job on the official agent, or move the code to git", repoType)
	case "":
		return 0, errors.New("the repository resource has no type")
	}
	return 0, fmt.Errorf("repository type %q is not supported: goagent checks out Git, GitHub, GitHubEnterprise, Bitbucket and ExternalGit repositories", repoType)
}

// settings are the step's resolved inputs.
type settings struct {
	alias    string
	repo     *wire.RepositoryResource
	kind     repoKind
	repoType string
	name     string
	url      string // the repository url as given (the remote's url)
	ref      string
	version  string

	target string // absolute checkout directory

	clean            bool
	submodules       bool
	nestedSubmodules bool
	lfs              bool
	fetchDepth       int
	fetchTags        bool
	persist          bool
	fetchFilter      []string // only when the knob enables filters
	rawFilter        string
	sparseDirs       string
	sparsePatterns   string
	workspaceRepo    bool

	selfManageCreds   bool
	secureParams      bool // pass the header through --config-env (knob GitUseSecureParameterPassing)
	fetchByCommitOff  bool // knob DisableFetchByCommit
	fullCloneByCommit bool // knob FetchByCommitForFullClone
	pruneTagsOff      bool // knob DisableFetchPruneTags
	sparseKnob        bool // knob UseSparseCheckoutInCheckoutTask
	debug             bool
}

// knob reads an agent knob the way Agent.Sdk.Knob does: the runtime
// variable first, then the environment.
func knob(ex *steps.Exec, varName, env string) (string, bool) {
	if varName != "" && ex.Vars != nil {
		if v, ok := ex.Vars.Get(varName); ok && v != "" {
			return v, true
		}
	}
	if env != "" {
		if v, ok := envLookup(ex.Env, env); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

func knobBool(ex *steps.Exec, varName, env string, def bool) bool {
	v, ok := knob(ex, varName, env)
	if !ok {
		return def
	}
	return boolOf(v, def)
}

func variable(ex *steps.Exec, name string) (string, bool) {
	if ex.Vars == nil {
		return "", false
	}
	return ex.Vars.Get(name)
}

// resolve turns the step's inputs, the repository resource and the
// variables into settings (RepositoryPlugin.CheckoutTask.RunAsync and the
// first half of GitSourceProvider.GetSourceAsync).
func resolve(ex *steps.Exec) (*settings, error) {
	s := &settings{}
	s.alias = input(ex.Inputs, inRepository)
	if s.alias == "" {
		return nil, errors.New("checkout: the required input 'repository' is empty: name a repository alias (checkout: self, or an alias declared under resources.repositories)")
	}
	if ex.Job == nil {
		return nil, errors.New("checkout: the step has no job context")
	}
	s.repo = ex.Job.Repository(s.alias)
	if s.repo == nil {
		var have []string
		for _, r := range ex.Job.Repositories {
			have = append(have, r.Alias)
		}
		return nil, fmt.Errorf("checkout: repository alias %q is not among the job's repository resources [%s]: fix the checkout step's alias or declare the repository under resources.repositories",
			s.alias, strings.Join(have, ", "))
	}
	s.repoType = s.repo.Property("type")
	kind, err := kindOf(s.repoType)
	if err != nil {
		return nil, fmt.Errorf("checkout %s: %w", s.alias, err)
	}
	s.kind = kind
	s.name = s.repo.Property("name")
	if s.name == "" {
		s.name = s.alias
	}
	s.url = s.repo.Property("url")
	if err := checkURL(s.url); err != nil {
		return nil, fmt.Errorf("checkout %s: %w", s.alias, err)
	}
	s.ref = s.repo.Property("ref")
	s.version = s.repo.Property("version")

	in := mergedInputs(ex, s.repo)

	s.clean = boolOf(in[inClean], false)
	// build.repository.clean, when the server sends it, wins for every
	// checkout (BuildJobExtension.UpdateCheckoutTasksAndVariables).
	if v, ok := variable(ex, "build.repository.clean"); ok && strings.TrimSpace(v) != "" {
		s.clean = boolOf(v, s.clean)
	}

	if sub := in[inSubmodules]; sub != "" {
		if strings.EqualFold(sub, "recursive") {
			s.submodules, s.nestedSubmodules = true, true
		} else {
			s.submodules = boolOf(sub, false)
		}
	}

	if n, err := strconv.Atoi(in[inFetchDepth]); err == nil && n > 0 {
		s.fetchDepth = n
	}
	if v, ok := variable(ex, "agent.source.git.shallowFetchDepth"); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
			s.fetchDepth = n
		}
	}

	s.lfs = boolOf(in[inLfs], false)
	if v, ok := variable(ex, "agent.source.git.lfs"); ok {
		s.lfs = boolOf(v, false)
	}

	s.persist = boolOf(in[inPersist], false)
	s.fetchTags = boolOf(in[inFetchTags], true)
	s.rawFilter = in[inFetchFilter]
	if knobBool(ex, "AGENT_USE_FETCH_FILTER_IN_CHECKOUT_TASK", "", false) {
		s.fetchFilter = parseFetchFilter(s.rawFilter)
	}
	s.sparseDirs = in[inSparseDirs]
	s.sparsePatterns = in[inSparsePatterns]
	s.sparseKnob = knobBool(ex, "AGENT_USE_SPARSE_CHECKOUT_IN_CHECKOUT_TASK", "", false)
	s.workspaceRepo = boolOf(in[inWorkspaceRepo], false) ||
		boolOf(s.repo.Property("system.isdefaultworkingdirectoryrepository"), false)

	if v, ok := variable(ex, "system.selfmanagegitcreds"); ok {
		s.selfManageCreds = boolOf(v, false)
	}
	s.secureParams = knobBool(ex, "agent.GitUseSecureParameterPassing", "AGENT_GIT_USE_SECURE_PARAMETER_PASSING", true)
	s.fetchByCommitOff = knobBool(ex, "VSTS.DisableFetchByCommit", "VSTS_DISABLEFETCHBYCOMMIT", false)
	s.fullCloneByCommit = knobBool(ex, "VSTS.FetchByCommitForFullClone", "VSTS_FETCHBYCOMMITFORFULLCLONE", false)
	s.pruneTagsOff = knobBool(ex, "VSTS.DisableFetchPruneTags", "VSTS_DISABLEFETCHPRUNETAGS", false)
	if v, ok := variable(ex, "system.debug"); ok {
		s.debug = boolOf(v, false)
	}

	s.target, err = targetDirectory(ex, s, in[inPath])
	if err != nil {
		return nil, err
	}
	return s, nil
}

// mergedInputs fills inputs left empty from the repository's
// checkoutOptions (RepositoryTask.MergeCheckoutOptions): only clean,
// fetchDepth, lfs, persistCredentials and submodules, and not when the
// variable MERGE_CHECKOUT_OPTIONS is false.
func mergedInputs(ex *steps.Exec, repo *wire.RepositoryResource) map[string]string {
	names := []string{inClean, inSubmodules, inLfs, inFetchDepth, inFetchTags, inPersist, inFetchFilter,
		inPath, inWorkspaceRepo, inSparseDirs, inSparsePatterns}
	in := map[string]string{}
	for _, n := range names {
		in[n] = input(ex.Inputs, n)
	}
	if v, ok := variable(ex, "MERGE_CHECKOUT_OPTIONS"); ok && strings.EqualFold(strings.TrimSpace(v), "false") {
		return in
	}
	opts := checkoutOptions(repo)
	for _, n := range []string{inClean, inFetchDepth, inLfs, inPersist, inSubmodules} {
		if in[n] != "" {
			continue
		}
		for k, v := range opts {
			if strings.EqualFold(k, n) {
				in[n] = v
			}
		}
	}
	return in
}

// targetDirectory places the repository (RepositoryPlugin.CheckoutTask.RunAsync).
func targetDirectory(ex *steps.Exec, s *settings, path string) (string, error) {
	build := ex.Dirs.Build
	if build == "" {
		return "", errors.New("checkout: the job has no build directory (Agent.BuildDirectory)")
	}
	if path != "" {
		resolved, err := resolvePath(build, path)
		if err != nil {
			return "", fmt.Errorf("checkout %s: %w", s.alias, err)
		}
		maxRoot := filepath.Clean(build)
		if knobBool(ex, "AZP_AGENT_ALLOW_WORK_DIRECTORY_REPOSITORIES", "AZP_AGENT_ALLOW_WORK_DIRECTORY_REPOSITORIES", false) && ex.Dirs.Work != "" {
			maxRoot = filepath.Clean(ex.Dirs.Work)
		}
		if !strings.HasPrefix(resolved, maxRoot+string(filepath.Separator)) {
			return "", fmt.Errorf("Input path '%s' should resolve to a directory under '%s', current resolved path '%s'.", path, maxRoot, resolved)
		}
		return resolved, nil
	}
	if ex.Job.CheckoutCount > 1 {
		name := cloneDirectory(repoNameForDir(s.repo))
		// The name comes from the job message; never let it point outside s/.
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
			return "", fmt.Errorf("checkout %s: the repository name %q gives no usable directory name under s/: set the checkout step's path input", s.alias, repoNameForDir(s.repo))
		}
		return filepath.Join(build, "s", name), nil
	}
	return filepath.Join(build, "s"), nil
}

// resolvePath roots a relative path and collapses "." and ".." lexically,
// with IOUtil.ResolvePath's errors.
func resolvePath(root, rel string) (string, error) {
	if strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("%s contains invalid path characters.", rel)
	}
	if filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s can not be a rooted path.", rel)
	}
	joined := filepath.ToSlash(root) + "/" + filepath.ToSlash(rel)
	var out []string
	skip := 0
	parts := strings.Split(joined, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		switch p := parts[i]; {
		case p == "" || p == ".":
		case p == "..":
			skip++
		case skip > 0:
			skip--
		default:
			out = append(out, p)
		}
	}
	if skip > 0 {
		return "", fmt.Errorf("The file path %s is invalid", joined)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return filepath.FromSlash("/" + strings.Join(out, "/")), nil
}

// parseFetchFilter keeps the filters the official agent accepts: tree:0
// and blob:none, joined with '+' (GitSourceProvider.ParseFetchFilterOptions).
func parseFetchFilter(f string) []string {
	var out []string
	for _, part := range strings.Split(f, "+") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		var fields []string
		for _, x := range strings.Split(part, ":") {
			if x = strings.TrimSpace(x); x != "" {
				fields = append(fields, x)
			}
		}
		if len(fields) != 2 {
			continue
		}
		// Written in git's spelling: git parses filters case-sensitively,
		// where the official agent passes the user's casing through.
		switch strings.ToLower(fields[0]) {
		case "tree":
			if n, err := strconv.Atoi(fields[1]); err == nil && n == 0 {
				out = append(out, "tree:0")
			}
		case "blob":
			if strings.EqualFold(fields[1], "none") {
				out = append(out, "blob:none")
			}
		}
	}
	return out
}

// run is the step.
func run(ctx context.Context, ex *steps.Exec, opts Options) error {
	skip := knobBool(ex, "agent.source.skip", "", false)
	if v, ok := variable(ex, "build.syncSources"); ok && !boolOf(v, true) {
		skip = true
	}
	if skip {
		ex.Console.Info("Skip sync source for repository.")
		return nil
	}
	if strings.EqualFold(input(ex.Inputs, inRepository), "none") && ex.Job != nil && ex.Job.Repository("none") == nil {
		ex.Console.Info("Repository 'none' requested: nothing to check out.")
		return nil
	}

	s, err := resolve(ex)
	if err != nil {
		return err
	}
	cred, err := credentialFor(ex, s)
	if err != nil {
		return err
	}
	// Secrets are registered before anything is printed.
	for _, v := range cred.secrets {
		ex.Console.AddSecret(v)
	}

	// The worker moves the repository's path and updates the variables
	// before the source provider runs (UpdateRepositoryPath is called first).
	updateVariables(ex, s)

	state := &postState{}
	if ex.AddPostJob != nil {
		name := ex.DisplayName
		if name == "" {
			name = TaskName
		}
		ex.AddPostJob(name, func(ctx context.Context, pex *steps.Exec) error {
			return cleanup(ctx, pex, s, state)
		})
	}

	ex.Console.Info(fmt.Sprintf("Syncing repository: %s (%s)", s.name, s.repoType))
	if s.selfManageCreds {
		ex.Console.Info("You are in self manage git creds mode. Make sure your agent host machine can bypass any git authentication challenge.")
	}
	logSettings(ex, s)

	if gitPath, lookErr := proc.LookPath("git", ex.Env); lookErr == nil {
		err = checkoutWithCLI(ctx, ex, s, cred, state, opts, gitPath)
	} else {
		err = checkoutWithGoGit(ctx, ex, s, cred, state, opts)
	}
	if err != nil {
		return err
	}
	state.completed = true
	return nil
}

func logSettings(ex *steps.Exec, s *settings) {
	d := ex.Console.Debug
	d("repository url=" + redactURL(s.url))
	d("targetPath=" + s.target)
	d("sourceBranch=" + s.ref)
	d("sourceVersion=" + s.version)
	d(fmt.Sprintf("clean=%t", s.clean))
	d(fmt.Sprintf("checkoutSubmodules=%t", s.submodules))
	d(fmt.Sprintf("checkoutNestedSubmodules=%t", s.nestedSubmodules))
	d(fmt.Sprintf("exposeCred=%t", s.persist))
	d(fmt.Sprintf("fetchDepth=%d", s.fetchDepth))
	d("fetchFilter=" + s.rawFilter)
	d(fmt.Sprintf("fetchTags=%t", s.fetchTags))
	d(fmt.Sprintf("gitLfsSupport=%t", s.lfs))
}

// updateVariables applies PluginInternalUpdateRepositoryPathCommand's rules
// (see the package comment).
func updateVariables(ex *steps.Exec, s *settings) {
	if ex.Vars == nil {
		return
	}
	multi := ex.Job.CheckoutCount > 1
	switch {
	case !multi:
		ex.Vars.Set("build.sourcesDirectory", s.target)
		ex.Vars.Set("build.repository.localpath", s.target)
		ex.Vars.Set("system.defaultWorkingDirectory", s.target)
	case strings.EqualFold(s.alias, "self"):
		// The official agent leaves the variable at the sources root when
		// self sits at its default s/<name> (backward compatibility).
		sources := ex.Dirs.Sources
		if v, ok := variable(ex, "build.sourcesDirectory"); ok && v != "" {
			sources = v
		}
		if s.target != filepath.Join(sources, s.repo.Property("name")) {
			ex.Vars.Set("build.repository.localpath", s.target)
		}
	}
	if s.workspaceRepo {
		ex.Vars.Set("system.defaultWorkingDirectory", s.target)
	}
}

// postState is what the post-job cleanup needs to know about the checkout.
type postState struct {
	completed bool   // the checkout finished
	persisted bool   // credentials were written to .git/config
	key       string // the config key that holds them
	value     string // the value written (for the file-edit fallback)
	viaCLI    bool
}

// cleanup is the post-job step (RepositoryPlugin.CleanupTask,
// GitSourceProvider.PostJobCleanupAsync).
//
// The official cleanup only acts when the checkout recorded its alias, which
// it does when it finishes; a failed checkout's post-job step prints nothing.
func cleanup(ctx context.Context, ex *steps.Exec, s *settings, st *postState) error {
	if !st.completed && !st.persisted {
		return nil
	}
	ex.Console.Info(fmt.Sprintf("Cleaning any cached credential from repository: %s (%s)", s.name, s.repoType))
	if !st.persisted {
		return nil
	}
	if st.viaCLI {
		if gitPath, err := proc.LookPath("git", ex.Env); err == nil {
			return cleanupCLI(ctx, ex, s, st, gitPath)
		}
	}
	ex.Console.Command("go-git config --unset-all " + st.key)
	return removeConfigOption(ex, s.target, st.key, st.value)
}

// Package localrun runs a pipeline file on this machine the way Azure
// Pipelines would run it on a self-hosted agent, with no Azure anywhere:
// `goagent exec`. It starts the Azure DevOps emulator (internal/devserver)
// on 127.0.0.1 over HTTPS, serves the repository holding the pipeline (and
// the repositories it declares) as Azure Repos, compiles the YAML into job
// messages, and runs them with the real agent in-process — registration with
// a PAT, session, encrypted messages, the worker and its HTTP reporter —
// exactly the production path. The service's part (job order, dependsOn,
// job conditions, job timeouts, cancellation) is done here, against the
// emulator's Go API. The console shows the live feed the emulator receives.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/devserver/pipeline"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/jobs/mask"
	"github.com/goagent-dev/goagent/internal/listener"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/checkout"
	"github.com/goagent-dev/goagent/internal/wire"
)

// ErrFailed is wrapped by the error Run returns when the pipeline ran and
// failed (a failed or canceled job that was not continueOnError).
var ErrFailed = errors.New("pipeline failed")

// Project is the Azure DevOps project the emulator serves the pipeline's
// repositories from (ORG/local/_git/REPO).
const Project = "local"

// agentName is the in-process agent's name.
const agentName = "local-agent"

// Options configure a run.
type Options struct {
	File    string            // the pipeline YAML
	Vars    map[string]string // --var: override pipeline and job variables
	Secrets map[string]string // --secret: secret variables, masked everywhere
	// Repos maps repository resource aliases to local clones (--repo);
	// others are looked for beside the self repository.
	Repos map[string]string
	// WorkDir is the agent's work directory. Empty: a temporary directory,
	// removed afterwards unless Keep.
	WorkDir string
	// PoolDir, when set, holds the homes of the run's agents, one directory
	// per agent (PoolDir/local-agent/_work), kept between runs so sources
	// are fetched incrementally and `clean` means something, as on a
	// long-lived self-hosted agent. It excludes WorkDir.
	PoolDir string
	Keep    bool
	// Verbose shows the console of the Initialize job and Finalize Job
	// steps too (always shown when they fail).
	Verbose bool

	// Registry is the set of tasks the agent runs natively.
	Registry *steps.Registry
	// Stdout receives the console; Color turns on ANSI colours.
	Stdout io.Writer
	Color  bool
	// Logger receives diagnostics of the emulator and the agent.
	Logger *slog.Logger

	AgentVersion   string // the official agent version reported
	GoagentVersion string
	KillGrace      time.Duration // SIGINT→SIGTERM grace for cancelled steps (0: the official 7.5 s)
	// Env is the base environment of steps; default os.Environ() without
	// the agent's own credentials.
	Env []string

	// Kill, when closed, stops the running job's processes at once (a
	// second Ctrl-C).
	Kill <-chan struct{}
	// OnStart is called once the emulator serves and the pipeline compiled,
	// before any job is queued: a hook for live views (web UI).
	OnStart func(RunInfo)
}

// RunInfo describes a started run.
type RunInfo struct {
	Server   *devserver.Server
	RunID    string // the plan id every job of the run shares
	Name     string // the run name (build number)
	Pipeline *pipeline.Pipeline
}

// Summary is the outcome of a run.
type Summary struct {
	File    string      `json:"file"`
	RunName string      `json:"runName"`
	RunID   string      `json:"runId"`
	Result  string      `json:"result"` // succeeded, succeededWithIssues, failed or canceled
	Start   time.Time   `json:"start"`
	Finish  time.Time   `json:"finish"`
	Jobs    []JobResult `json:"jobs"`
	// BuildNumber is the run's final name when a job renamed it
	// (##vso[build.updatebuildnumber]); Tags are the tags jobs added.
	BuildNumber string   `json:"buildNumber,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}

// JobResult is one job of the run.
type JobResult struct {
	Name            string       `json:"name"`
	DisplayName     string       `json:"displayName"`
	Result          string       `json:"result"` // a TaskResult; skipped for jobs not run
	ContinueOnError bool         `json:"continueOnError,omitempty"`
	Reason          string       `json:"reason,omitempty"` // why it was skipped, canceled or abandoned
	Start           time.Time    `json:"start"`
	Finish          time.Time    `json:"finish"`
	Steps           []StepResult `json:"steps"`
}

// StepResult is one step (timeline record) of a job.
type StepResult struct {
	Name     string    `json:"name"`
	RefName  string    `json:"refName,omitempty"`
	Result   string    `json:"result"`
	Start    time.Time `json:"start"`
	Finish   time.Time `json:"finish"`
	Errors   []string  `json:"errors,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Run runs the pipeline and returns its summary. The error wraps ErrFailed
// when the pipeline failed, context.Canceled when ctx ended it (the running
// job is canceled through the emulator first and the summary still
// returned), and is otherwise a setup problem naming its cause.
func Run(ctx context.Context, o Options) (*Summary, error) {
	r, err := prepare(o)
	if err != nil {
		return nil, err
	}
	defer r.cleanup()
	return r.run(ctx)
}

// runState is one run's machinery.
type runState struct {
	o       Options
	file    string
	src     []byte
	p       *printer
	masker  *mask.Masker
	log     *slog.Logger
	tmp     string // removed at the end
	keepTmp bool
	work    string
	state   string

	srv   *devserver.Server
	pl    *pipeline.Pipeline
	self  *localRepo
	agent *listener.Agent

	notes []string // said under the header

	agentDone chan error
	stopAgent context.CancelFunc
}

// waitWorker waits (briefly) until the agent is done with the job: the
// emulator knows a job completed when the worker reports it, a moment before
// the agent has finished up and is idle again.
func (r *runState) waitWorker() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.agent.WaitIdle(ctx)
	if ctx.Err() != nil {
		r.log.Warn("the agent did not finish up within 10s after the job completed")
	}
}

func prepare(o Options) (*runState, error) {
	if o.File == "" {
		return nil, errors.New("no pipeline file given")
	}
	if o.Registry == nil {
		return nil, errors.New("no task registry (Options.Registry)")
	}
	if o.WorkDir != "" && o.PoolDir != "" {
		return nil, errors.New("give either a work directory or a pool directory, not both")
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	file, err := filepath.Abs(o.File)
	if err != nil {
		return nil, fmt.Errorf("pipeline file %s: %w", o.File, err)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read pipeline file: %w", err)
	}
	m := mask.New(mask.Options{MinLength: 1})
	for _, v := range o.Secrets {
		m.AddValue(v)
	}
	r := &runState{o: o, file: file, src: src, masker: m, log: o.Logger}
	r.p = &printer{w: o.Stdout, color: o.Color, mask: m.Mask}
	return r, nil
}

// setup starts the emulator, serves the repositories, compiles the
// pipeline and starts the agent.
func (r *runState) setup(ctx context.Context) error {
	o := r.o
	var err error
	if r.tmp, err = os.MkdirTemp("", "goagent-exec-"); err != nil {
		return fmt.Errorf("create a temporary directory: %w", err)
	}
	switch {
	case o.PoolDir != "":
		home, err := filepath.Abs(filepath.Join(o.PoolDir, agentName))
		if err != nil {
			return err
		}
		r.work = filepath.Join(home, "_work")
	case o.WorkDir != "":
		if r.work, err = filepath.Abs(o.WorkDir); err != nil {
			return err
		}
	default:
		r.work = filepath.Join(r.tmp, "_work")
		r.keepTmp = o.Keep
	}
	if err := os.MkdirAll(r.work, 0o755); err != nil {
		return fmt.Errorf("create the work directory: %w", err)
	}
	// The registration lives as long as this run's emulator: always fresh.
	r.state = filepath.Join(r.tmp, ".goagent")

	// The emulator outlives ctx: a Ctrl-C cancels the job through it.
	r.srv, err = devserver.Start(context.WithoutCancel(ctx), devserver.Options{Dir: filepath.Join(r.tmp, "emulator"), Logger: r.log})
	if err != nil {
		return err
	}
	r.masker.AddValue(r.srv.PAT())

	repos := map[string]pipeline.Repo{}
	if r.self, err = findSelf(r.file); err != nil {
		return err
	}
	base := filepath.Dir(r.file)
	if r.self != nil {
		rp, err := r.self.serve(r.srv, Project)
		if err != nil {
			return err
		}
		repos["self"] = rp
		base = filepath.Dir(r.self.dir)
		if err := serveSubmodules(r.srv, r.self, rp.URL, base, func(msg string) { r.notes = append(r.notes, msg) }); err != nil {
			return err
		}
	}
	declared, missing, err := resolveDeclared(declaredRepos(r.src), o.Repos, base)
	if err != nil {
		return err
	}
	for _, d := range declared {
		rp, err := d.serve(r.srv, Project)
		if err != nil {
			return err
		}
		repos[d.alias] = rp
	}

	requester := "goagent"
	if u, err := user.Current(); err == nil && u.Username != "" {
		requester = u.Username
	}
	r.pl, err = pipeline.Compile(r.src, pipeline.Options{
		ProjectID:      r.srv.ProjectID(),
		ProjectName:    Project,
		DefinitionName: strings.TrimSuffix(filepath.Base(r.file), filepath.Ext(r.file)),
		Repositories:   repos,
		Variables:      o.Vars,
		Secrets:        o.Secrets,
		RequestedFor:   pipeline.Identity{Name: requester},
	})
	if err != nil {
		return r.compileError(err, missing)
	}
	return r.startAgent(ctx)
}

// compileError explains a compile error, adding what exec knows about
// repositories the compiler had no URL for.
func (r *runState) compileError(err error, missing map[string]string) error {
	var hints []string
	msg := err.Error()
	for alias, hint := range missing {
		if strings.Contains(strings.ToLower(msg), strings.ToLower(`"`+alias+`"`)) {
			hints = append(hints, hint)
		}
	}
	if r.self == nil && strings.Contains(msg, "self repository") {
		hints = append(hints, fmt.Sprintf("%s is not inside a git repository, so there is no self repository to check out: commit it to a repository, or add \"- checkout: none\" to each job", filepath.Base(r.file)))
	}
	sort.Strings(hints)
	if len(hints) > 0 {
		return fmt.Errorf("compile %s:\n%w\n%s", r.file, err, strings.Join(hints, "\n"))
	}
	return fmt.Errorf("compile %s:\n%w", r.file, err)
}

func (r *runState) startAgent(ctx context.Context) error {
	o := r.o
	ca := r.srv.CAFile()
	t, err := azdo.NewTransport(azdo.TransportOptions{CAFiles: []string{ca}})
	if err != nil {
		return fmt.Errorf("configure TLS for the emulator: %w", err)
	}
	hc := &http.Client{Transport: t}
	// go-git (the checkout without a git binary) keeps its HTTP client in a
	// process-wide table, set once: the first run of the process wins.
	if err := checkout.PrepareGoGit(azdo.TransportOptions{CAFiles: []string{ca}}); err != nil {
		return err
	}
	ident, err := identity.Resolve(ctx, identity.Config{
		Auth: "pat", Token: r.srv.PAT(), Env: func(string) string { return "" }, HTTPClient: hc, Logger: r.log,
	})
	if err != nil {
		return err
	}
	env := o.Env
	if env == nil {
		env = listener.ScrubEnv(os.Environ(), nil)
	}
	// git must trust the emulator's CA. GIT_SSL_CAINFO replaces git's
	// roots, so the bundle keeps the system's (and any the user gave git).
	bundle, err := caBundle(filepath.Join(r.tmp, "git-ca-bundle.pem"), ca, env)
	if err != nil {
		return err
	}
	env = setEnv(env, "GIT_SSL_CAINFO", bundle)
	// Quieter checkouts: no advice about detached HEADs or the name of the
	// initial branch (the user's own git configuration still applies).
	env = withGitConfig(env, "advice.detachedHead", "false")
	env = withGitConfig(env, "init.defaultBranch", "main")
	host, _ := os.Hostname()
	exe, _ := os.Executable()
	runner := &jobs.Runner{
		Registry: o.Registry,
		WorkDir:  r.work,
		Agent: jobs.AgentInfo{
			Name: agentName, Version: o.AgentVersion, GoVersion: o.GoagentVersion, MachineName: host,
			HomeDir: filepath.Dir(exe), ServerURL: r.srv.URL(),
		},
		Env:       env,
		KillGrace: [2]time.Duration{o.KillGrace, 0},
		Logger:    r.log,
	}
	r.agent, err = listener.New(listener.Config{
		ServerURL:        r.srv.URL(),
		Pool:             "Default",
		AgentName:        agentName,
		WorkDir:          r.work,
		StateDir:         r.state,
		Replace:          true,
		AgentVersion:     o.AgentVersion,
		GoagentVersion:   o.GoagentVersion,
		Env:              os.Environ(),
		Registration:     ident,
		RegistrationName: ident.Describe(),
		RegistrationKind: ident.Kind,
		HTTPClient:       hc,
		Runner:           &listener.Engine{Runner: runner, PagesDir: filepath.Join(r.work, "_diag", "pages"), Logger: r.log},
		Logger:           r.log,
	})
	if err != nil {
		return err
	}
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.stopAgent = cancel
	r.agentDone = make(chan error, 1)
	go func() { r.agentDone <- r.agent.Run(actx) }()
	return nil
}

// caBundle writes the system roots, the roots the environment already gives
// git or Go (GIT_SSL_CAINFO, SSL_CERT_FILE) and the emulator's CA into one
// PEM file.
func caBundle(path, ca string, env []string) (string, error) {
	var files []string
	for _, f := range azdo.SystemCABundles() {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
			break
		}
	}
	for _, name := range []string{"GIT_SSL_CAINFO", "SSL_CERT_FILE"} {
		if v := getEnv(env, name); v != "" {
			files = append(files, v)
		}
	}
	var b []byte
	for _, f := range append(files, ca) {
		pem, err := os.ReadFile(f)
		if err != nil {
			if f == ca {
				return "", fmt.Errorf("read the emulator's CA: %w", err)
			}
			continue
		}
		b = append(append(b, pem...), '\n')
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("write the CA bundle for git: %w", err)
	}
	return path, nil
}

// withGitConfig adds a git configuration entry through GIT_CONFIG_COUNT,
// after any the environment already has.
func withGitConfig(env []string, key, value string) []string {
	n := 0
	if v := getEnv(env, "GIT_CONFIG_COUNT"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	env = setEnv(env, "GIT_CONFIG_COUNT", strconv.Itoa(n+1))
	return append(env, "GIT_CONFIG_KEY_"+strconv.Itoa(n)+"="+key, "GIT_CONFIG_VALUE_"+strconv.Itoa(n)+"="+value)
}

func getEnv(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

func setEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

// cleanup stops the agent and the emulator and removes what is temporary.
func (r *runState) cleanup() {
	if r.stopAgent != nil {
		if r.agent != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r.agent.WaitIdle(ctx)
			cancel()
		}
		r.stopAgent()
		select {
		case <-r.agentDone:
		case <-time.After(30 * time.Second):
			r.log.Warn("the agent did not stop within 30s")
		}
	}
	if r.srv != nil {
		r.srv.Close()
	}
	if r.tmp != "" && !r.keepTmp {
		os.RemoveAll(r.tmp)
	}
}

// minutes converts a YAML minutes value; 0 means no limit.
func minutes(n int) time.Duration { return time.Duration(n) * time.Minute }

// jobRun is the outcome of one job for its dependents and the summary.
type jobRun struct {
	job     *pipeline.Job
	outcome depOutcome
	result  JobResult
}

func (r *runState) run(ctx context.Context) (*Summary, error) {
	sum := &Summary{File: r.file, Start: time.Now()}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	sum.RunName, sum.RunID = r.pl.Name, r.pl.PlanID
	sub := r.srv.Subscribe(1 << 16)
	defer sub.Cancel()
	if r.o.OnStart != nil {
		r.o.OnStart(RunInfo{Server: r.srv, RunID: r.pl.PlanID, Name: r.pl.Name, Pipeline: r.pl})
	}
	r.header()

	done := map[string]*jobRun{}
	var order []*jobRun
	interrupted := false
	for len(done) < len(r.pl.Jobs) {
		j := r.nextJob(done)
		jr := &jobRun{job: j, result: JobResult{Name: j.Name, DisplayName: j.DisplayName, ContinueOnError: j.ContinueOnError}}
		order = append(order, jr)
		done[strings.ToLower(j.Name)] = jr
		if interrupted || ctx.Err() != nil {
			interrupted = true
			jr.skip(r.p, "canceled", "the run was interrupted")
			continue
		}
		cond := &jobCondition{job: j.Name, vars: j.Message.Variables, deps: j.DependsOn, outcomes: map[string]depOutcome{}}
		for _, d := range j.DependsOn {
			cond.outcomes[d] = done[strings.ToLower(d)].outcome
		}
		ok, err := evalCondition(cond, j.Condition)
		if err != nil {
			jr.skip(r.p, "failed", err.Error())
			continue
		}
		if !ok {
			c := j.Condition
			if c == "" {
				c = "succeeded()"
			}
			jr.skip(r.p, "skipped", "condition "+c+" was false")
			continue
		}
		canceled, err := r.runJob(ctx, sub, jr)
		if err != nil {
			sum.Finish = time.Now()
			sum.Jobs = results(order)
			return sum, err
		}
		interrupted = interrupted || canceled
	}
	sum.Finish = time.Now()
	sum.Jobs = results(order)
	sum.Result = overall(order, interrupted)
	sum.BuildNumber, sum.Tags = r.buildState()
	r.footer(sum)
	switch {
	case interrupted:
		return sum, fmt.Errorf("pipeline interrupted: %w", context.Canceled)
	case sum.Result == "failed" || sum.Result == "canceled":
		return sum, fmt.Errorf("%w: %s", ErrFailed, failureCause(sum))
	}
	return sum, nil
}

// buildState is the run's build as its jobs left it in the emulator: the
// number when one renamed it, and the tags they added.
func (r *runState) buildState() (string, []string) {
	for _, h := range r.srv.Jobs() {
		if !strings.EqualFold(h.PlanID(), r.pl.PlanID) {
			continue
		}
		if b, ok := h.Build(); ok {
			if b.Number == r.pl.Name {
				return "", b.Tags
			}
			return b.Number, b.Tags
		}
	}
	return "", nil
}

func results(order []*jobRun) []JobResult {
	out := make([]JobResult, len(order))
	for i, jr := range order {
		out[i] = jr.result
	}
	return out
}

// nextJob picks the first job, in YAML order, whose dependencies all ended.
// Compile checked the graph is acyclic, so there always is one.
func (r *runState) nextJob(done map[string]*jobRun) *pipeline.Job {
	for _, j := range r.pl.Jobs {
		if done[strings.ToLower(j.Name)] != nil {
			continue
		}
		ready := true
		for _, d := range j.DependsOn {
			if done[strings.ToLower(d)] == nil {
				ready = false
			}
		}
		if ready {
			return j
		}
	}
	panic("localrun: dependency cycle in a compiled pipeline")
}

// skip records a job that is not run.
func (jr *jobRun) skip(p *printer, result, reason string) {
	jr.result.Result, jr.result.Reason = result, reason
	jr.outcome = depOutcome{result: result}
	p.println("")
	p.println(p.style(ansiDim, "⊘ Job "+jr.job.DisplayName+" — "+result+": "+reason))
}

// runJob queues one job, prints its console until it ends, and records its
// outcome. It reports whether the user interrupted the run.
func (r *runState) runJob(ctx context.Context, sub *devserver.Subscription, jr *jobRun) (bool, error) {
	j := jr.job
	r.p.println("")
	r.p.println(r.p.style(ansiBold, "━━ Job "+j.DisplayName+" "+strings.Repeat("━", max(3, 50-utf8Len(j.DisplayName)))))
	h, err := r.srv.QueueJob(nil, devserver.QueueOptions{
		Timeout:       minutes(j.TimeoutInMinutes),
		CancelTimeout: minutes(j.CancelTimeoutInMinutes),
		Bind: func(b devserver.Binding) (*wire.JobRequestMessage, error) {
			return j.Bind(pipeline.Connection{CollectionURL: b.CollectionURL, AccessToken: b.AccessToken, RequestID: b.RequestID, ServerName: b.ServerName})
		},
	})
	if err != nil {
		return false, err
	}
	r.masker.AddValue(h.Token())
	view := newJobView(r.p, h.ID(), r.o.Verbose)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	interrupted := false
	userCtx := ctx.Done()
	kill := r.o.Kill
	var once sync.Once
loop:
	for {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				return interrupted, fmt.Errorf("the emulator stopped while job %s ran", j.Name)
			}
			view.handle(ev)
			view.pump(false)
		case <-h.Done():
			break loop
		case <-tick.C:
			view.pump(false)
		case err := <-r.agentDone:
			r.agentDone <- err // for cleanup
			if err == nil {
				err = errors.New("it stopped")
			}
			return interrupted, fmt.Errorf("the agent failed while job %s ran: %w", j.Name, err)
		case <-userCtx:
			userCtx = nil
			interrupted = true
			r.p.println(r.p.style(ansiYellow, "Canceling job "+j.DisplayName+"… (press Ctrl-C again to stop its processes now)"))
			if err := r.srv.CancelJob(h.ID(), minutes(j.CancelTimeoutInMinutes)); err != nil {
				r.log.Debug("cancel job", "error", err)
			}
		case <-kill:
			kill = nil
			once.Do(r.agent.Kill)
		}
	}
	// Events may have been dropped by a slow console: the timeline the
	// emulator holds is the record.
	for _, rec := range h.Timeline() {
		rec := rec
		view.record(&rec)
	}
	// Console lines posted just before the job completed are queued
	// already: the agent drains its console before it reports completion.
	for drained := false; !drained; {
		select {
		case ev, ok := <-sub.C:
			if !ok {
				drained = true
				break
			}
			view.handle(ev)
		default:
			drained = true
		}
	}
	view.pump(true)
	if n := sub.Dropped(); n > 0 {
		r.p.println(r.p.style(ansiDim, fmt.Sprintf("(%d console events were dropped by a slow terminal; the summary is complete)", n)))
	}

	result, werr := h.Wait(context.WithoutCancel(ctx))
	if !errors.Is(werr, devserver.ErrJobAbandoned) && h.Renewals() > 0 {
		r.waitWorker()
	}
	jr.result.Result = result
	if werr != nil {
		jr.result.Reason = werr.Error()
	}
	jr.fill(h.ID(), h.Timeline())
	jr.result.mask(r.masker.Mask)
	if interrupted && result == "canceled" {
		jr.result.Reason = "interrupted (Ctrl-C)"
	} else if result == "canceled" && j.TimeoutInMinutes > 0 {
		// Nothing but the timeout cancels a job the user did not.
		jr.result.Reason = fmt.Sprintf("the job ran longer than its timeout of %d minute(s)", j.TimeoutInMinutes)
	}
	dep := result
	if result == "failed" && j.ContinueOnError {
		dep = "succeededWithIssues"
	}
	jr.outcome = depOutcome{result: dep, outputs: outputs(h.Timeline())}
	d := ""
	if !jr.result.Start.IsZero() && !jr.result.Finish.IsZero() {
		d = " in " + fmtDuration(jr.result.Finish.Sub(jr.result.Start))
	}
	note := ""
	if jr.result.Reason != "" {
		note = " — " + jr.result.Reason
	}
	if result == "failed" && j.ContinueOnError {
		note += " (continueOnError: the run goes on as if it succeeded with issues)"
	}
	r.p.println(r.p.style(ansiBold, "━━ Job "+j.DisplayName+": ") + r.p.result(result) + r.p.style(ansiDim, d+note))
	return interrupted, nil
}

func utf8Len(s string) int { return len([]rune(s)) }

// fill takes the job's records from the emulator's timeline.
func (jr *jobRun) fill(jobID string, tl []taskagent.TimelineRecord) {
	var steps []taskagent.TimelineRecord
	for _, rec := range tl {
		if rec.Id == nil {
			continue
		}
		if strings.EqualFold(rec.Id.String(), jobID) {
			if rec.StartTime != nil {
				jr.result.Start = rec.StartTime.Time
			}
			if rec.FinishTime != nil {
				jr.result.Finish = rec.FinishTime.Time
			}
			continue
		}
		if rec.Type != nil && *rec.Type == "Task" {
			steps = append(steps, rec)
		}
	}
	sort.SliceStable(steps, func(a, b int) bool { return deref(steps[a].Order) < deref(steps[b].Order) })
	for _, rec := range steps {
		sr := StepResult{Name: derefS(rec.Name), RefName: derefS(rec.RefName)}
		if rec.Result != nil {
			sr.Result = string(*rec.Result)
		}
		if rec.StartTime != nil {
			sr.Start = rec.StartTime.Time
		}
		if rec.FinishTime != nil {
			sr.Finish = rec.FinishTime.Time
		}
		if rec.Issues != nil {
			for _, is := range *rec.Issues {
				switch {
				case is.Type != nil && *is.Type == taskagent.IssueTypeValues.Error:
					sr.Errors = append(sr.Errors, derefS(is.Message))
				case is.Type != nil && *is.Type == taskagent.IssueTypeValues.Warning:
					sr.Warnings = append(sr.Warnings, derefS(is.Message))
				}
			}
		}
		jr.result.Steps = append(jr.result.Steps, sr)
	}
}

// mask masks what the summary repeats of the agent's records; the agent
// masks them already, this is a second line of defence.
func (j *JobResult) mask(m func(string) string) {
	j.Reason = m(j.Reason)
	for i := range j.Steps {
		st := &j.Steps[i]
		st.Name = m(st.Name)
		for k := range st.Errors {
			st.Errors[k] = m(st.Errors[k])
		}
		for k := range st.Warnings {
			st.Warnings[k] = m(st.Warnings[k])
		}
	}
}

// outputs are the job's output variables as dependents see them:
// "<step reference name>.<variable>".
func outputs(tl []taskagent.TimelineRecord) map[string]string {
	out := map[string]string{}
	for _, rec := range tl {
		if rec.Type == nil || *rec.Type != "Task" || rec.RefName == nil || rec.Variables == nil {
			continue
		}
		for k, raw := range *rec.Variables {
			// {"value": "…", "isSecret": bool}, as the agent posts them.
			v, _ := raw.(map[string]any)
			if secret, _ := v["isSecret"].(bool); secret {
				continue
			}
			if s, ok := v["value"].(string); ok {
				out[*rec.RefName+"."+k] = s
			}
		}
	}
	return out
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func derefS(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// overall is the run's result: canceled when interrupted; failed when a
// job failed (not continueOnError), was canceled or abandoned; succeeded
// with issues when any job did or a continueOnError job failed.
func overall(order []*jobRun, interrupted bool) string {
	if interrupted {
		return "canceled"
	}
	res := "succeeded"
	for _, jr := range order {
		switch jr.result.Result {
		case "failed":
			if jr.job.ContinueOnError {
				if res == "succeeded" {
					res = "succeededWithIssues"
				}
				continue
			}
			return "failed"
		case "canceled", "abandoned":
			return "failed"
		case "succeededWithIssues":
			if res == "succeeded" {
				res = "succeededWithIssues"
			}
		}
	}
	return res
}

// failureCause names the first job that failed the run, and its step.
func failureCause(s *Summary) string {
	for _, j := range s.Jobs {
		if j.ContinueOnError || (j.Result != "failed" && j.Result != "canceled" && j.Result != "abandoned") {
			continue
		}
		for _, st := range j.Steps {
			if st.Result == "failed" {
				return fmt.Sprintf("job %s %s at step %q", j.DisplayName, j.Result, st.Name)
			}
		}
		if j.Reason != "" {
			return fmt.Sprintf("job %s %s: %s", j.DisplayName, j.Result, j.Reason)
		}
		return fmt.Sprintf("job %s %s", j.DisplayName, j.Result)
	}
	return "a job failed"
}

// header prints what is about to run.
func (r *runState) header() {
	p := r.p
	p.println(p.style(ansiBold, "goagent exec ") + filepath.Base(r.file) + p.style(ansiDim, " — run "+r.pl.Name))
	if r.self != nil {
		ref := strings.TrimPrefix(r.self.ref, "refs/heads/")
		if ref == "" {
			ref = "detached HEAD"
		}
		p.println(p.style(ansiDim, fmt.Sprintf("  self: %s @ %s (%s), served as %s", r.self.dir, ref, short(r.self.commit), r.repoURL("self"))))
	} else {
		p.println(p.style(ansiDim, "  self: none (the file is not in a git repository)"))
	}
	for _, rp := range r.srv.Repositories() {
		if r.self != nil && rp.GitDir == filepath.Join(r.self.dir, ".git") {
			continue
		}
		p.println(p.style(ansiDim, fmt.Sprintf("  repository: %s served as %s", rp.GitDir, rp.URL)))
	}
	p.println(p.style(ansiDim, fmt.Sprintf("  agent: %s, work directory %s", agentName, r.work)))
	for _, n := range r.notes {
		p.println(p.style(ansiYellow, "  note: "+n))
	}
}

func (r *runState) repoURL(alias string) string {
	for _, j := range r.pl.Jobs {
		for _, rr := range j.Message.Resources.Repositories {
			if strings.EqualFold(rr.Alias, alias) {
				var u string
				if raw, ok := rr.Properties["url"]; ok {
					u = strings.Trim(string(raw), `"`)
				}
				return u
			}
		}
	}
	return "(not checked out)"
}

func short(sha string) string {
	if len(sha) > 8 {
		return sha[:8]
	}
	return sha
}

// footer prints the summary table and the verdict.
func (r *runState) footer(s *Summary) {
	p := r.p
	p.println("")
	p.println(p.style(ansiBold, "Summary"))
	rows := [][]string{{p.style(ansiDim, "JOB"), p.style(ansiDim, "STEP"), p.style(ansiDim, "RESULT"), p.style(ansiDim, "DURATION"), ""}}
	for _, j := range s.Jobs {
		d := ""
		if !j.Start.IsZero() && !j.Finish.IsZero() {
			d = fmtDuration(j.Finish.Sub(j.Start))
		}
		note := j.Reason
		if j.ContinueOnError && j.Result == "failed" {
			note = strings.TrimPrefix(note+"; continueOnError", "; ")
		}
		rows = append(rows, []string{p.style(ansiBold, j.DisplayName), "", p.result(j.Result), d, p.style(ansiDim, note)})
		for _, st := range j.Steps {
			if quietSteps[st.RefName] && st.Result == "succeeded" && !r.o.Verbose {
				continue
			}
			d := ""
			if !st.Start.IsZero() && !st.Finish.IsZero() {
				d = fmtDuration(st.Finish.Sub(st.Start))
			}
			rows = append(rows, []string{"", st.Name, p.result(st.Result), d, ""})
		}
	}
	p.table(rows)
	var errs []string
	for _, j := range s.Jobs {
		for _, st := range j.Steps {
			for _, e := range st.Errors {
				errs = append(errs, fmt.Sprintf("%s › %s: %s", j.DisplayName, st.Name, e))
			}
		}
	}
	if len(errs) > 0 {
		p.println("")
		p.println(p.style(ansiBold, "Errors"))
		for _, e := range errs {
			p.println("  " + p.style(ansiRed, e))
		}
	}
	if s.BuildNumber != "" || len(s.Tags) > 0 {
		p.println("")
	}
	if s.BuildNumber != "" {
		p.println(p.style(ansiDim, "Run renamed to ") + s.BuildNumber)
	}
	if len(s.Tags) > 0 {
		p.println(p.style(ansiDim, "Tags: ") + strings.Join(s.Tags, ", "))
	}
	p.println("")
	verdict := map[string]string{
		"succeeded":           p.style(ansiBold+ansiGreen, "✔ Pipeline succeeded"),
		"succeededWithIssues": p.style(ansiBold+ansiYellow, "⚠ Pipeline succeeded with issues"),
		"failed":              p.style(ansiBold+ansiRed, "✖ Pipeline failed"),
		"canceled":            p.style(ansiBold+ansiYellow, "⊘ Pipeline canceled"),
	}[s.Result]
	p.println(verdict + p.style(ansiDim, " in "+fmtDuration(s.Finish.Sub(s.Start))))
	if r.keepTmp || r.o.WorkDir != "" || r.o.PoolDir != "" {
		p.println(p.style(ansiDim, "  work directory: "+r.work))
	}
}

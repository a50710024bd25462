// Package jobs runs one job message the way the official worker does
// (../shared/protocol/worker.md §1, §3–§8): workspace, variables, conditions,
// step sequencing and results, logging commands, secret masking, and
// reporting through a Reporter.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/expr"
	"github.com/goagent-dev/goagent/internal/jobs/mask"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
	"github.com/goagent-dev/goagent/internal/wire"
)

// ErrAgentShutdown is the cancellation cause when the agent itself stops
// (SIGTERM): the running step is cancelled without re-evaluating its
// condition, and the job is reported canceled with agentShuttingDown.
var ErrAgentShutdown = errors.New("the agent is shutting down")

// AgentInfo is what the runner tells steps about the agent.
type AgentInfo struct {
	ID          int
	Name        string
	Version     string // the reported (official-compatible) agent version
	GoVersion   string // goagent's own version, for the log
	MachineName string
	HomeDir     string
	ServerURL   string
	RunOnce     bool
}

// Runner runs jobs. One Runner may run many jobs, one at a time.
type Runner struct {
	Registry *steps.Registry
	WorkDir  string // absolute _work directory
	Agent    AgentInfo
	// Env is the base environment of every step process, already scrubbed of
	// the agent's own credentials by the caller.
	Env       []string
	KillGrace [2]time.Duration
	// SecretMinLength: secrets shorter than this are not masked
	// (AZP_IGNORE_SECRETS_SHORTER_THAN).
	SecretMinLength int
	// RetryDelay computes the wait before retry attempt n (1-based) of a
	// failed task; nil = the official (n)^2 seconds.
	RetryDelay func(attempt int) time.Duration
	Logger     *slog.Logger
}

// Job is one run request.
type Job struct {
	Message  *wire.JobRequestMessage
	Reporter Reporter
	// Hard, when done, kills every step process at once (the listener's
	// cancel timeout expired). Nil means never.
	Hard <-chan struct{}
	// Build serves build.updatebuildnumber and build.addbuildtag; nil makes
	// them fail.
	Build BuildService
}

// Run executes a job and returns its result. ctx ending means the job was
// cancelled (JobCancellation, or ErrAgentShutdown as the cause): steps whose
// condition still holds (always(), canceled()) keep running. The returned
// error reports what could not be delivered to the service.
func (r *Runner) Run(ctx context.Context, job Job) (string, error) {
	jr := newJobRun(r, job)
	return jr.run(ctx)
}

type jobRun struct {
	r    *Runner
	msg  *wire.JobRequestMessage
	rep  Reporter
	hard <-chan struct{}
	log  *slog.Logger

	build BuildService

	masker *mask.Masker
	vars   *Variables

	mu          sync.Mutex
	jobRec      Record
	order       int
	jobResult   string // running job result ("" = succeeded so far)
	canceled    bool
	shutdown    bool
	prependPath []string
	endpoints   []wire.ServiceEndpoint
	posts       []postStep
	current     *stepRun // the running step, for cancellation re-evaluation
	ws          *workspace
	debug       bool
	processTag  string        // VSTS_PROCESS_LOOKUP_ID of this job's processes
	minSecret   int           // AZP_IGNORE_SECRETS_SHORTER_THAN
	details     detailTracker // task.logdetail records of the whole job (detail.go)
}

type postStep struct {
	name string
	run  func(ctx context.Context, ex *steps.Exec) error
	from *stepRun
}

func newJobRun(r *Runner, job Job) *jobRun {
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	jr := &jobRun{r: r, msg: job.Message, rep: job.Reporter, hard: job.Hard, log: log, build: job.Build, processTag: "vsts_" + uuid.NewString()}
	jr.minSecret = secretMinLength(r, job.Message)
	jr.masker = mask.New(mask.Options{MinLength: jr.minSecret})
	jr.endpoints = append([]wire.ServiceEndpoint(nil), job.Message.Resources.Endpoints...)
	return jr
}

// secretMinLength is the knob AZP_IGNORE_SECRETS_SHORTER_THAN: a job
// variable, else the agent's environment, else Runner.SecretMinLength
// (AgentKnobs.MaskedSecretMinLength; the official default is 0).
func secretMinLength(r *Runner, m *wire.JobRequestMessage) int {
	const knob = "AZP_IGNORE_SECRETS_SHORTER_THAN"
	for k, v := range m.Variables {
		if strings.EqualFold(k, knob) {
			if n, err := strconv.Atoi(strings.TrimSpace(v.Value)); err == nil {
				return n
			}
		}
	}
	for _, kv := range r.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == knob {
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return n
			}
		}
	}
	return r.SecretMinLength
}

func (jr *jobRun) now() time.Time { return time.Now().UTC() }

// registerSecrets teaches the masker every secret the message carries
// (worker.md §6): endpoint auth parameters, secure file tickets, mask hints;
// secret variables arrive through the variable store.
func (jr *jobRun) registerSecrets() []string {
	var warnings []string
	if jr.minSecret > mask.MaxMinLength {
		warnings = append(warnings, fmt.Sprintf("The value of the minimum length of the secrets is too high. Maximum value is set: %d", mask.MaxMinLength))
	}
	for _, e := range jr.msg.Resources.Endpoints {
		for k, v := range e.Authorization.Parameters {
			if !nonSecretAuthParams[strings.ToLower(k)] {
				jr.masker.AddValue(v)
			}
		}
	}
	for _, f := range jr.msg.Resources.SecureFiles {
		jr.masker.AddValue(f.Ticket)
	}
	for _, h := range jr.msg.Mask {
		if strings.EqualFold(h.Type, "regex") {
			if err := jr.masker.AddRegex(h.Value); err != nil {
				// The hint's own text may be secret-shaped: mask it as a value.
				jr.masker.AddValue(h.Value)
				warnings = append(warnings, fmt.Sprintf("A mask hint could not be used as a regular expression (%v); its literal text is masked instead.", err))
			}
		}
	}
	return warnings
}

// nonSecretAuthParams are endpoint authorization parameters the agent does
// not mask (worker.md §6, item 3).
var nonSecretAuthParams = map[string]bool{
	"role": true, "scope": true, "tenantid": true, "issuedat": true, "expiresat": true, "audience": true,
	"authenticationtype": true, "authorizationtype": true, "accesstokentype": true, "accesstokenfetchingmethod": true,
	"usewindowssecurity": true, "unsecured": true, "oauthaccesstokenissupplied": true, "completecallbackpayload": true,
	"acceptuntrustedcertificates": true,
}

func (jr *jobRun) run(ctx context.Context) (string, error) {
	start := jr.now()
	warnings := jr.registerSecrets()
	jr.vars = NewVariables(jr.msg.Variables, jr.masker.AddValue)
	jr.debug = jr.boolVar("system.debug")

	jr.jobRec = Record{
		ID: jr.msg.JobID, Type: "Job", Name: jr.msg.JobDisplayName, RefName: jr.msg.JobName,
		State: StateInProgress, StartTime: start, WorkerName: jr.r.Agent.Name, Attempt: 1,
	}
	jr.rep.UpdateRecord(jr.jobRec)

	// Records for every step, pending, in order (ExecutionContext.CreateChild).
	initRec := jr.newRecord(uuid.NewString(), "Initialize job", "JobExtension_Init")
	runs := make([]*stepRun, 0, len(jr.msg.Steps))
	checkouts := 0
	for _, s := range jr.msg.Steps {
		if strings.EqualFold(s.Reference.ID, wire.TaskCheckout) {
			checkouts++
		}
	}
	for i := range jr.msg.Steps {
		s := &jr.msg.Steps[i]
		if !strings.EqualFold(s.Type, "task") && s.Type != "" {
			continue // the Azure agent only executes task steps
		}
		sr := &stepRun{jr: jr, step: s}
		runs = append(runs, sr)
	}

	// Initialize job.
	jr.startRecord(initRec)
	initCon := jr.console(initRec)
	initOK := jr.initialize(initCon, initRec, runs, checkouts, warnings)
	if !initOK {
		jr.setJobResult(ResultFailed)
		jr.completeRecord(initRec, ResultFailed, "")
	} else {
		jr.completeRecord(initRec, ResultSucceeded, "")
	}

	// Cancellation watcher: a cancelled job re-evaluates the running step's
	// condition; an agent shutdown cancels the step outright.
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case <-ctx.Done():
			jr.onCancel(context.Cause(ctx))
		case <-watchDone:
		}
	}()

	if initOK {
		for _, sr := range runs {
			sr.execute(ctx)
		}
		// Post-job steps, in reverse order of registration, with always().
		jr.mu.Lock()
		posts := append([]postStep(nil), jr.posts...)
		jr.mu.Unlock()
		for i := len(posts) - 1; i >= 0; i-- {
			jr.runPost(ctx, posts[i])
		}

		// Finalize Job (JobExtension.FinalizeJob). A job whose
		// initialization failed has none: JobRunner completes it at once.
		finRec := jr.newRecord(uuid.NewString(), "Finalize Job", "JobExtension_Final")
		jr.startRecord(finRec)
		fin := jr.console(finRec)
		fin.Info("##[section]Starting: Finalize Job")
		fin.Info("Cleaning up task key")
		jr.killOrphans(fin)
		fin.Info("##[section]Finishing: Finalize Job")
		jr.completeRecord(finRec, ResultSucceeded, "")
	} else {
		jr.killOrphans(nil)
	}

	// _temp is emptied after the job as before it (TempDirectoryManager).
	// The official worker does it after draining its queues, because an
	// upload may still read a file there; goagent's reporter opens
	// attachments when they are queued and spools pages elsewhere, so it
	// cleans first and leaves nothing to do once the service has the result.
	if jr.ws != nil {
		if err := emptyDir(jr.ws.dirs.Temp); err != nil {
			jr.log.Warn("could not empty the temp directory after the job", "dir", jr.ws.dirs.Temp, "error", err)
		}
	}

	result := jr.finalResult()
	jr.mu.Lock()
	jr.jobRec.State = StateCompleted
	jr.jobRec.Result = result
	jr.jobRec.FinishTime = jr.now()
	jr.jobRec.PercentComplete = 100
	rec := jr.jobRec.clone()
	shutdown := jr.shutdown
	jr.mu.Unlock()
	jr.rep.WriteLine(jr.jobRec.ID, jr.masker.Mask("##[section]Finishing: "+jr.msg.JobDisplayName))
	jr.rep.UpdateRecord(rec)

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	// The official worker reports agentShuttingDown = (run mode is Once).
	err := jr.rep.Finish(fctx, Completion{Result: result, AgentShuttingDown: shutdown || jr.r.Agent.RunOnce, FinishTime: rec.FinishTime})
	if err != nil && result != ResultFailed && result != ResultCanceled {
		// Outputs that never reached the service fail the job (JobRunner).
		result = ResultFailed
	}
	return result, err
}

// processLookupID is the variable, and so the environment variable, that
// marks the processes of a job (Constants.ProcessLookupId).
const processLookupID = "VSTS_PROCESS_LOOKUP_ID"

// processClean is the process.clean variable (default true).
func (jr *jobRun) processClean() bool {
	v, _ := jr.vars.Get("process.clean")
	return !strings.EqualFold(strings.TrimSpace(v), "false")
}

// killOrphans kills every process still carrying this job's lookup id.
func (jr *jobRun) killOrphans(con *console) {
	if !jr.processClean() {
		return
	}
	if con != nil {
		con.Info("Start cleaning up orphan processes.")
	}
	n, err := proc.KillTagged(processLookupID + "=" + jr.processTag)
	if err != nil {
		jr.log.Debug("could not look for orphan processes", "error", err)
		return
	}
	if n > 0 && con != nil {
		con.Info(fmt.Sprintf("Terminated %d orphan process(es) left running by the job's steps.", n))
	}
}

// finalResult is the job's result so far: what conditions see as the job
// status, and what the job reports when it ends.
func (jr *jobRun) finalResult() string {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	if jr.canceled {
		return ResultCanceled
	}
	if jr.jobResult == "" {
		return ResultSucceeded
	}
	return jr.jobResult
}

// onCancel handles the job's cancellation.
func (jr *jobRun) onCancel(cause error) {
	jr.mu.Lock()
	jr.canceled = true
	jr.shutdown = errors.Is(cause, ErrAgentShutdown)
	cur := jr.current
	jr.mu.Unlock()
	jr.vars.Set("agent.jobstatus", "Canceled")
	if cur == nil {
		return
	}
	if jr.shutdown {
		cur.cancel(cause)
		return
	}
	// Re-evaluate the running step's condition with the job now canceled.
	ok, _, err := cur.evalCondition()
	if err != nil || !ok {
		cur.console().Error("The Operation will be canceled. The next steps may not contain expected logs.")
		cur.cancel(context.Canceled)
	}
}

// initialize prepares the workspace and variables and checks the steps.
func (jr *jobRun) initialize(con *console, rec *Record, runs []*stepRun, checkouts int, warnings []string) bool {
	a := jr.r.Agent
	con.Info("##[section]Starting: Initialize job")
	con.Info(fmt.Sprintf("Agent name: '%s'", a.Name))
	con.Info(fmt.Sprintf("Agent machine name: '%s'", a.MachineName))
	con.Info("Current agent version: '" + a.Version + "'")
	if a.GoVersion != "" {
		con.Info("goagent version: '" + a.GoVersion + "'")
	}
	for _, w := range warnings {
		con.Warning(w)
	}
	if problem := containerProblem(jr.msg); problem != "" {
		con.Error(problem)
		return false
	}
	if v, ok := jr.vars.Get("system.hosttype"); ok && v != "" && !strings.EqualFold(v, "build") {
		con.Warning(fmt.Sprintf("goagent runs build (YAML pipeline) jobs; this job's host type is '%s' and runs with build semantics.", v))
	}

	// The message's variables are expanded among themselves first
	// (the Variables constructor), so the workspace options see their values.
	for _, w := range jr.vars.Recalculate() {
		con.Warning(w)
	}
	con.Info("Prepare build directory.")
	if err := jr.prepareWorkspace(checkouts); err != nil {
		con.Error(err.Error())
		return false
	}
	con.Info("Set build variables.")
	jr.vars.Recalculate() // its warnings were given above

	con.Info("Download all required tasks.")
	for _, sr := range runs {
		if !sr.step.IsEnabled() {
			continue
		}
		def, err := jr.r.Registry.Lookup(sr.step.Reference)
		if err != nil {
			sr.lookupErr = err
			con.Warning(err.Error())
			continue
		}
		sr.def = def
		con.Info(fmt.Sprintf("Task %s@%d (%s) runs natively in goagent.", def.Name, def.Major, sr.step.Reference.Version))
	}
	// Conditions are parsed now: one that does not parse fails the job's
	// initialization with the parser's message, before any step runs
	// (JobExtension.InitializeJob).
	for _, sr := range runs {
		if !sr.step.IsEnabled() {
			continue
		}
		e, err := expr.Parse(sr.condition())
		if err != nil {
			con.Error(fmt.Sprintf("Step '%s': %v", sr.step.DisplayName, err))
			return false
		}
		sr.cond = e
	}
	// Records for the steps, with their expanded display names.
	for _, sr := range runs {
		if !sr.step.IsEnabled() {
			continue // disabled steps never get a record
		}
		sr.rec = jr.newRecord(sr.step.ID, sr.displayName(checkouts), sr.step.Name)
	}
	con.Info("Checking job knob settings.")
	con.Info("Finished checking job knob settings.")
	if jr.processClean() {
		// Processes a step leaves running carry this variable in their
		// environment and are killed when the job ends (JobExtension).
		jr.vars.Set(processLookupID, jr.processTag)
		con.Info("Start tracking orphan processes.")
	}
	con.Info("##[section]Finishing: Initialize job")
	return true
}

func (jr *jobRun) prepareWorkspace(checkouts int) error {
	v := func(n string) string { s, _ := jr.vars.Get(n); return s }
	var repoKeys []string
	repoType := ""
	for _, repo := range jr.msg.Resources.Repositories {
		repoKeys = append(repoKeys, repo.Alias+"="+repo.Property("url"))
		if strings.EqualFold(repo.Alias, "self") {
			repoType = repo.Property("type")
		}
	}
	sort.Strings(repoKeys)
	clean := jr.cleanOption()
	work, err := filepath.Abs(jr.r.WorkDir)
	if err != nil {
		return fmt.Errorf("resolve work directory %s: %w", jr.r.WorkDir, err)
	}
	ws, err := prepareWorkspace(work, v("system.collectionId"), v("system.definitionId"), v("build.definitionName"),
		repoType, strings.Join(repoKeys, ","), clean, jr.now())
	if err != nil {
		return fmt.Errorf("prepare the build directory: %w", err)
	}
	jr.ws = ws
	jr.setWorkerVariables(checkouts)
	return nil
}

// Build directory clean options (BuildCleanOption).
const (
	cleanNone   = ""
	cleanSource = "source"
	cleanBinary = "binary"
	cleanAll    = "all"
)

// cleanOption is BuildDirectoryManager.GetBuildDirectoryCleanOption: the
// variables agent.clean.buildDirectory, then build.clean (BuildCleanOption
// names or numbers, case-insensitive), win over the job's workspace.clean
// (all, resources, outputs; macros and environment variables expanded).
func (jr *jobRun) cleanOption() string {
	for _, name := range []string{"agent.clean.buildDirectory", "build.clean"} {
		v, _ := jr.vars.Get(name)
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "none", "0":
			return cleanNone
		case "source", "1":
			return cleanSource
		case "binary", "2":
			return cleanBinary
		case "all", "3":
			return cleanAll
		}
	}
	if jr.msg.Workspace == nil {
		return cleanNone
	}
	switch strings.ToLower(expandEnv(jr.vars.Expand(jr.msg.Workspace.Clean))) {
	case "all":
		return cleanAll
	case "resources":
		return cleanSource
	case "outputs":
		return cleanBinary
	}
	return cleanNone
}

// setWorkerVariables sets what the worker sets (worker.md §3.2).
func (jr *jobRun) setWorkerVariables(checkouts int) {
	a := jr.r.Agent
	d := jr.ws.dirs
	ro := func(n, v string) { jr.vars.SetReadOnly(n, v, false) }
	ro("agent.id", fmt.Sprint(a.ID))
	ro("agent.name", a.Name)
	ro("agent.machinename", a.MachineName)
	ro("agent.version", a.Version)
	ro("agent.homedirectory", a.HomeDir)
	ro("agent.jobname", jr.msg.JobDisplayName)
	ro("agent.os", wire.AgentOS())
	ro("agent.osarchitecture", wire.AgentArchitecture())
	ro("agent.isselfhosted", "1")
	ro("agent.acceptteeeula", "False")
	ro("agent.RootDirectory", d.Work)
	ro("agent.workfolder", d.Work)
	ro("system.workfolder", d.Work)
	ro("agent.ToolsDirectory", d.Tools)
	ro("agent.TempDirectory", d.Temp)
	ro("agent.builddirectory", d.Build)
	ro("pipeline.workspace", d.Build)
	ro("build.sourcesdirectory", d.Sources)
	ro("build.repository.localpath", d.Sources)
	ro("system.defaultworkingdirectory", d.DefaultWorking)
	ro("build.artifactstagingdirectory", d.Artifacts)
	ro("build.stagingdirectory", d.Artifacts)
	ro("system.artifactsdirectory", d.Artifacts)
	ro("build.binariesdirectory", d.Binaries)
	ro("common.testresultsdirectory", jr.ws.tests)
	if a.RunOnce {
		ro("agent.runMode", "Once")
	}
	if sc := jr.msg.SystemConnection(); sc != nil {
		ro("system.TeamFoundationServerUri", sc.URL)
		if jr.boolVar("system.enableAccessToken") {
			if _, ok := jr.vars.Get("system.accessToken"); !ok {
				jr.vars.SetReadOnly("system.accessToken", sc.Authorization.Parameters["AccessToken"], false)
			}
		}
	}
	jr.vars.Set("agent.jobstatus", "Succeeded")
	for _, repo := range jr.msg.Resources.Repositories {
		if !strings.EqualFold(repo.Alias, "self") {
			continue
		}
		ro("build.repository.id", repo.Property("id"))
		ro("build.repository.name", repo.Property("name"))
		ro("build.repository.uri", repo.Property("url"))
		ro("build.repository.provider", legacyRepoType(repo.Property("type")))
		ro("pipeline.repository.name", repo.Property("name"))
		ro("build.repository.git.submodulecheckout", "False")
	}
	_ = checkouts
}

func legacyRepoType(t string) string {
	switch strings.ToLower(t) {
	case "git":
		return "TfsGit"
	case "externalgit":
		return "Git"
	case "tfvc":
		return "TfsVersionControl"
	}
	return t
}

func (jr *jobRun) varOr(name, def string) string {
	if v, ok := jr.vars.Get(name); ok && v != "" {
		return v
	}
	return def
}

func (jr *jobRun) boolVar(name string) bool {
	v, _ := jr.vars.Get(name)
	return strings.EqualFold(strings.TrimSpace(v), "true")
}

// newRecord creates a pending Task record with the next order.
func (jr *jobRun) newRecord(id, name, refName string) *Record {
	jr.mu.Lock()
	jr.order++
	rec := &Record{
		ID: id, ParentID: jr.msg.JobID, Type: "Task", Name: name, RefName: refName, Order: jr.order,
		State: StatePending, WorkerName: jr.r.Agent.Name, Attempt: 1,
	}
	c := rec.clone()
	jr.mu.Unlock()
	jr.rep.UpdateRecord(c)
	return rec
}

func (jr *jobRun) startRecord(rec *Record) { jr.startRecordAt(rec, jr.now()) }

func (jr *jobRun) startRecordAt(rec *Record, at time.Time) {
	jr.mu.Lock()
	rec.State = StateInProgress
	rec.StartTime = at
	c := rec.clone()
	jr.mu.Unlock()
	jr.rep.UpdateRecord(c)
}

func (jr *jobRun) completeRecord(rec *Record, result, resultCode string) {
	jr.mu.Lock()
	if rec.StartTime.IsZero() {
		rec.StartTime = jr.now()
	}
	rec.State = StateCompleted
	rec.Result = result
	rec.ResultCode = resultCode
	rec.FinishTime = jr.now()
	rec.PercentComplete = 100
	c := rec.clone()
	jr.mu.Unlock()
	jr.rep.UpdateRecord(c)
}

func (jr *jobRun) updateRecord(rec *Record) {
	jr.mu.Lock()
	c := rec.clone()
	jr.mu.Unlock()
	jr.rep.UpdateRecord(c)
}

func (r Record) clone() Record {
	r.Issues = append([]Issue(nil), r.Issues...)
	if r.Variables != nil {
		m := make(map[string]RecordVariable, len(r.Variables))
		for k, v := range r.Variables {
			m[k] = v
		}
		r.Variables = m
	}
	return r
}

// setJobResult merges a step result into the job result (only
// succeededWithIssues and failed change it) and updates agent.jobstatus.
func (jr *jobRun) setJobResult(result string) {
	if result != ResultSucceededWithIssues && result != ResultFailed {
		return
	}
	jr.mu.Lock()
	jr.jobResult = MergeResults(jr.jobResult, result)
	status := jr.jobResult
	canceled := jr.canceled
	jr.mu.Unlock()
	if !canceled {
		jr.vars.Set("agent.jobstatus", statusName(status))
	}
}

var resultOrder = map[string]int{
	ResultSucceeded: 0, ResultSucceededWithIssues: 1, ResultFailed: 2, ResultCanceled: 3, ResultSkipped: 4, ResultAbandoned: 5,
}

// MergeResults is TaskResultUtil.MergeTaskResults: nil takes the incoming;
// canceled/skipped/abandoned stick; otherwise the worse wins.
func MergeResults(current, incoming string) string {
	if current == "" {
		return incoming
	}
	if incoming == "" {
		return current
	}
	if resultOrder[current] > resultOrder[ResultFailed] {
		return current
	}
	if resultOrder[incoming] > resultOrder[current] {
		return incoming
	}
	return current
}

func statusName(r string) string {
	switch r {
	case ResultSucceeded, "":
		return "Succeeded"
	case ResultSucceededWithIssues:
		return "SucceededWithIssues"
	case ResultFailed:
		return "Failed"
	case ResultCanceled:
		return "Canceled"
	case ResultSkipped:
		return "Skipped"
	case ResultAbandoned:
		return "Abandoned"
	}
	return r
}

// exprContext adapts the job to the expression evaluator.
type exprContext struct{ jr *jobRun }

func (c exprContext) Variable(name string) (string, bool) { return c.jr.vars.Get(name) }
func (c exprContext) JobStatus() string                   { return c.jr.finalResult() }

var _ expr.Context = exprContext{}

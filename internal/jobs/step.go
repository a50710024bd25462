package jobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/goagent-dev/goagent/internal/expr"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/wire"
)

// stepRun is one step of the job.
type stepRun struct {
	jr        *jobRun
	step      *wire.Step
	def       *steps.Definition
	lookupErr error
	rec       *Record
	cond      *expr.Expr // parsed at job initialization

	mu        sync.Mutex
	cancelFn  context.CancelCauseFunc
	cmdResult string            // merged from task.complete and failed commands
	taskVars  map[string]string // task.settaskvariable
	con       *console
	async     asyncCommands // build.updatebuildnumber, build.addbuildtag
	details   stepDetails   // task.logdetail (detail.go)
}

func (s *stepRun) console() *console {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.con == nil {
		s.con = s.jr.console(s.rec)
	}
	return s.con
}

func (s *stepRun) cancel(cause error) {
	s.mu.Lock()
	fn := s.cancelFn
	s.mu.Unlock()
	if fn != nil {
		fn(cause)
	}
}

func (s *stepRun) condition() string {
	c := strings.TrimSpace(s.step.Condition)
	if c == "" {
		return "succeeded()"
	}
	return c
}

func (s *stepRun) evalCondition() (bool, string, error) {
	e := s.cond
	if e == nil {
		var err error
		if e, err = expr.Parse(s.condition()); err != nil {
			return false, "", err
		}
	}
	return e.Trace(exprContext{s.jr})
}

// displayName is the record name: the step's display name with macros
// expanded, or what the task computes (checkout's "Checkout x@y to s").
func (s *stepRun) displayName(checkouts int) string {
	name := s.jr.vars.Expand(s.step.DisplayName)
	if s.def != nil && s.def.DisplayName != nil && (name == "" || strings.EqualFold(name, s.def.Name) || strings.EqualFold(name, s.step.Name)) {
		if n := s.def.DisplayName(s.inputs(), s.jobInfo(checkouts)); n != "" {
			return n
		}
	}
	if name == "" {
		name = s.step.Name
	}
	if name == "" {
		name = s.step.Reference.Name
	}
	return name
}

func (s *stepRun) jobInfo(checkouts int) *steps.Job {
	s.jr.mu.Lock()
	eps := append([]wire.ServiceEndpoint(nil), s.jr.endpoints...)
	s.jr.mu.Unlock()
	return &steps.Job{
		Repositories:  s.jr.msg.Resources.Repositories,
		Endpoints:     eps,
		CheckoutCount: checkouts,
		AgentVersion:  s.jr.r.Agent.Version,
	}
}

func (s *stepRun) checkouts() int {
	n := 0
	for _, st := range s.jr.msg.Steps {
		if strings.EqualFold(st.Reference.ID, wire.TaskCheckout) {
			n++
		}
	}
	return n
}

// inputs resolves the step's inputs (worker.md §2.3): task defaults, the
// step's inputs (trimmed), $(macros) expanded, file paths rooted.
func (s *stepRun) inputs() map[string]string {
	in := map[string]string{}
	var filePath map[string]bool
	if s.def != nil {
		filePath = map[string]bool{}
		for _, d := range s.def.Inputs {
			in[d.Name] = strings.TrimSpace(d.Default)
			if d.FilePath {
				filePath[strings.ToLower(d.Name)] = true
			}
		}
	}
	for k, v := range s.step.Inputs {
		k = strings.TrimSpace(k)
		// Match the definition's spelling of the name.
		for dk := range in {
			if strings.EqualFold(dk, k) {
				k = dk
				break
			}
		}
		in[k] = strings.TrimSpace(v)
	}
	for k, v := range in {
		v = s.jr.vars.Expand(v)
		v = expandEnv(v)
		if filePath[strings.ToLower(k)] && s.jr.ws != nil {
			v = s.jr.rootPath(v)
		}
		in[k] = v
	}
	return in
}

// rootPath roots a relative or empty filePath input against the default
// working directory (TaskRunner.TranslateFilePathInput).
func (jr *jobRun) rootPath(p string) string {
	base, _ := jr.vars.Get("system.defaultworkingdirectory")
	if base == "" {
		base = jr.ws.dirs.DefaultWorking
	}
	if p == "" {
		return base
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

// expandEnv replaces $(NAME) left after variable expansion with the agent's
// own environment (VarUtil.ExpandEnvironmentVariables: the same single pass,
// names case-sensitive as environment names are on Linux and macOS).
func expandEnv(s string) string { return expandMacros(s, os.LookupEnv) }

// execute runs the step with its condition, retries, timeout and
// continueOnError (StepsRunner.RunStepAsync).
func (s *stepRun) execute(jobCtx context.Context) {
	if s.rec == nil {
		return // disabled
	}
	jr := s.jr
	con := s.console()
	// StepsRunner starts the record (startTime, inProgress), recalculates the
	// variables (the expansion warnings go to the step), then evaluates the
	// condition and completes a skipped step at once. Its queue merges the
	// two updates of a skipped step into one, so the service sees it go from
	// pending to completed; goagent reports exactly that (its reporter keeps
	// every state it is given).
	started := jr.now()
	for _, w := range jr.vars.Recalculate() {
		con.Warning(w)
	}
	s.setScopedVars(true)
	defer s.setScopedVars(false)

	// On agent shutdown no condition is evaluated: every step left is
	// skipped, always() ones too (StepsRunner).
	jr.mu.Lock()
	shutdown := jr.shutdown
	jr.mu.Unlock()
	var ok bool
	var trace string
	var err error
	if shutdown {
		trace = "Skip evaluate condition on agent shutdown."
	} else {
		ok, trace, err = s.evalCondition()
	}
	if err != nil {
		jr.startRecordAt(s.rec, started)
		con.Error(err.Error())
		jr.completeRecord(s.rec, ResultFailed, "")
		jr.setJobResult(ResultFailed)
		return
	}
	if !ok {
		con.Info(skipStepMessage)
		for _, line := range strings.Split(strings.TrimRight(trace, "\n"), "\n") {
			if line != "" {
				con.Info(line)
			}
		}
		jr.mu.Lock()
		s.rec.StartTime = started
		jr.mu.Unlock()
		jr.completeRecord(s.rec, ResultSkipped, skipStepMessage)
		return
	}
	jr.startRecordAt(s.rec, started)

	con.Info("##[section]Starting: " + s.rec.Name)
	if s.lookupErr != nil {
		con.Error(s.lookupErr.Error())
		s.finish(ResultFailed)
		return
	}
	retries := max(s.step.RetryCountOnTaskFailure, 0)
	if retries > maxRetries {
		con.Warning(fmt.Sprintf("The maximum allowed number of attempts is %d but got %d. Retry attempts count will be decreased to %d.", maxRetries, retries, maxRetries))
		retries = maxRetries
	}
	result := ""
	for attempt := 0; ; attempt++ {
		result = s.attempt(jobCtx)
		if result != ResultFailed || attempt >= retries || jr.isCanceled() {
			break
		}
		delay := officialRetryDelay(attempt + 1)
		if jr.r.RetryDelay != nil {
			delay = jr.r.RetryDelay(attempt + 1)
		}
		con.Warning(fmt.Sprintf("RetryHelper encountered task failure, will retry (attempt #: %d out of %d) after %d ms", attempt+1, retries, delay.Milliseconds()))
		select {
		case <-time.After(delay):
		case <-jobCtx.Done():
		}
		s.mu.Lock()
		s.cmdResult = ""
		s.mu.Unlock()
	}
	result = s.awaitAsync(result)
	if result == ResultFailed && s.step.ContinueOnError {
		result = ResultSucceededWithIssues
	}
	s.finish(result)
}

func (s *stepRun) finish(result string) {
	s.console().Info("##[section]Finishing: " + s.rec.Name)
	s.jr.completeRecord(s.rec, result, "")
	s.completeDetails()
	s.jr.setJobResult(result)
}

func (jr *jobRun) isCanceled() bool {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	return jr.canceled
}

// attempt runs the task once and returns its result.
func (s *stepRun) attempt(jobCtx context.Context) string {
	jr := s.jr
	con := s.console()
	// The step's context survives job cancellation (its condition decides);
	// onCancel or the timeout cancel it.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(jobCtx))
	defer cancel(nil)
	var timeout context.CancelFunc = func() {}
	if s.step.TimeoutInMinutes > 0 {
		ctx, timeout = context.WithTimeoutCause(ctx, time.Duration(s.step.TimeoutInMinutes)*time.Minute, errStepTimeout)
	}
	defer timeout()
	if jr.hard != nil {
		go func() {
			select {
			case <-jr.hard:
				cancel(ErrAgentShutdown)
			case <-ctx.Done():
			}
		}()
	}
	alreadyShutdown, _, release := s.becomeCurrent(cancel)
	defer release()
	if alreadyShutdown {
		cancel(ErrAgentShutdown)
	}

	ex, outs := s.buildExec()
	err := s.def.Run(ctx, ex)
	for _, w := range outs {
		w.Close()
	}

	result := ResultSucceeded
	switch cause := context.Cause(ctx); {
	case ctx.Err() != nil && errors.Is(cause, errStepTimeout):
		con.Error("The task has timed out.")
		result = ResultFailed
	case ctx.Err() != nil && jr.isCanceled():
		result = ResultCanceled
	case ctx.Err() != nil && errors.Is(cause, ErrAgentShutdown):
		result = ResultCanceled
	case err != nil:
		con.Error(err.Error())
		result = ResultFailed
	}
	s.mu.Lock()
	cmd := s.cmdResult
	s.mu.Unlock()
	return MergeResults(result, cmd)
}

var errStepTimeout = errors.New("the task has timed out")

// skipStepMessage is the result code and first log line of a step whose
// condition is false (StepsRunner).
const skipStepMessage = "Skipping step due to condition evaluation."

// maxRetries caps retryCountOnTaskFailure (TaskRunner.RetryCountOnTaskFailureLimit).
const maxRetries = 10

// officialRetryDelay is the official wait before retry attempt n (1-based) of a
// failed task: n² seconds (RetryHelper.ExponentialDelay).
func officialRetryDelay(attempt int) time.Duration {
	return time.Duration(attempt*attempt) * time.Second
}

// setScopedVars sets or removes the per-step variables.
func (s *stepRun) setScopedVars(on bool) {
	v := s.jr.vars
	if !on {
		for _, n := range []string{"task.displayname", "system.taskInstanceId", "system.taskDisplayName", "system.taskInstanceName", "task.publishTelemetry"} {
			v.remove(n)
		}
		return
	}
	v.SetReadOnly("task.displayname", s.rec.Name, false)
	v.Set("system.taskInstanceId", s.step.ID)
	v.Set("system.taskDisplayName", s.rec.Name)
	v.Set("system.taskInstanceName", s.step.Name)
}

// buildExec prepares the task's view of the job.
func (s *stepRun) buildExec() (*steps.Exec, []*lineWriter) {
	jr := s.jr
	mu := &sync.Mutex{}
	emit := s.processLines
	if s.def.RawOutput {
		emit = s.console().writeLines
	}
	stdout := &lineWriter{mu: mu, emit: emit}
	stderr := &lineWriter{mu: mu, emit: emit}
	ex := &steps.Exec{
		StepID:      s.step.ID,
		StepName:    s.step.Name,
		DisplayName: s.rec.Name,
		Inputs:      s.inputs(),
		Env:         s.environment(),
		Dirs:        jr.dirs(),
		Job:         s.jobInfo(s.checkouts()),
		Stdout:      stdout,
		Stderr:      stderr,
		Console:     s.console(),
		Vars:        stepVars{jr: jr},
		KillGrace:   jr.r.KillGrace,
		Hard:        jr.hard,
		AddPostJob: func(name string, run func(ctx context.Context, ex *steps.Exec) error) {
			jr.mu.Lock()
			jr.posts = append(jr.posts, postStep{name: name, run: run, from: s})
			jr.mu.Unlock()
		},
	}
	return ex, []*lineWriter{stdout, stderr}
}

func (jr *jobRun) dirs() steps.Dirs {
	d := jr.ws.dirs
	if v, ok := jr.vars.Get("system.defaultworkingdirectory"); ok && v != "" {
		d.DefaultWorking = v
	}
	if v, ok := jr.vars.Get("build.sourcesdirectory"); ok && v != "" {
		d.Sources = v
	}
	return d
}

// stepVars lets a task read and set job variables as the worker does.
type stepVars struct{ jr *jobRun }

func (v stepVars) Get(name string) (string, bool) { return v.jr.vars.Get(name) }
func (v stepVars) Set(name, value string) {
	if v.jr.vars.IsReadOnly(name) {
		v.jr.vars.SetReadOnly(name, value, false)
		return
	}
	v.jr.vars.Set(name, value)
}

// environment builds the step process environment (worker.md §2.8).
func (s *stepRun) environment() []string {
	jr := s.jr
	env := map[string]string{}
	var order []string
	put := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range jr.r.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			put(k, v)
		}
	}
	// Step env: first, so variables of the same name win (Handler.cs).
	for _, k := range slices.Sorted(maps.Keys(s.step.Environment)) {
		put(k, expandEnv(jr.vars.Expand(strings.TrimSpace(s.step.Environment[k]))))
	}
	for _, x := range jr.vars.All() {
		if x.Secret {
			continue // secrets reach a step only through its env mapping
		}
		put(EnvName(x.Name, x.PreserveCase), x.Value)
	}
	if v, ok := jr.vars.Get("agent.jobstatus"); ok {
		put("agent.jobstatus", v)
	}
	if sc := jr.msg.SystemConnection(); sc != nil {
		put("ENDPOINT_URL_SYSTEMVSSCONNECTION", sc.URL)
	}
	// PATH = prepended entries + (job variable PATH ?? step env PATH ?? process PATH).
	jr.mu.Lock()
	prepend := append([]string(nil), jr.prependPath...)
	jr.mu.Unlock()
	if len(prepend) > 0 {
		path := env["PATH"]
		parts := make([]string, 0, len(prepend)+1)
		for i := len(prepend) - 1; i >= 0; i-- {
			parts = append(parts, prepend[i])
		}
		if path != "" {
			parts = append(parts, path)
		}
		put("PATH", strings.Join(parts, string(os.PathListSeparator)))
	}
	s.mu.Lock()
	for k, v := range s.taskVars {
		put("VSTS_TASKVARIABLE_"+EnvName(k, false), v)
	}
	s.mu.Unlock()
	put("TF_BUILD", "True")
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+env[k])
	}
	return out
}

// runPost runs a post-job step registered by a task.
func (jr *jobRun) runPost(jobCtx context.Context, p postStep) {
	rec := jr.newRecord(newID(), "Post-job: "+p.name, "")
	sr := &stepRun{jr: jr, step: p.from.step, def: &steps.Definition{Name: p.name, Run: p.run}, rec: rec}
	sr.step = &wire.Step{ID: rec.ID, Name: p.from.step.Name, Condition: "always()", Environment: p.from.step.Environment}
	sr.execute(jobCtx)
}

func (v *Variables) remove(name string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.vars, strings.ToLower(name))
	delete(v.expanded, strings.ToLower(name))
}

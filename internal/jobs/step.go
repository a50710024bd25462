package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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

	mu        sync.Mutex
	cancelFn  context.CancelCauseFunc
	cmdResult string            // merged from task.complete and failed commands
	taskVars  map[string]string // task.settaskvariable
	con       *console
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
	e, err := expr.Parse(s.condition())
	if err != nil {
		return false, "", err
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
// own environment (VarUtil.ExpandEnvironmentVariables).
func expandEnv(s string) string {
	if !strings.Contains(s, "$(") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+2:], ')')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		if v, ok := os.LookupEnv(s[i+2 : i+2+j]); ok {
			b.WriteString(v)
		} else {
			b.WriteString(s[i : i+3+j])
		}
		s = s[i+3+j:]
	}
}

// execute runs the step with its condition, retries, timeout and
// continueOnError (StepsRunner.RunStepAsync).
func (s *stepRun) execute(jobCtx context.Context) {
	if s.rec == nil {
		return // disabled
	}
	jr := s.jr
	for _, w := range jr.vars.Recalculate() {
		jr.log.Debug("variable expansion", "warning", w)
	}
	con := s.console()
	s.setScopedVars(true)
	defer s.setScopedVars(false)

	// The condition decides before the record starts: a skipped step goes
	// from pending straight to completed (StepsRunner).
	ok, trace, err := s.evalCondition()
	if err != nil {
		jr.startRecord(s.rec)
		con.Error(fmt.Sprintf("Unable to evaluate the condition '%s' of step '%s': %v", s.condition(), s.rec.Name, err))
		jr.completeRecord(s.rec, ResultFailed, "")
		jr.setJobResult(ResultFailed)
		return
	}
	if !ok {
		for _, line := range strings.Split(strings.TrimRight(trace, "\n"), "\n") {
			if line != "" {
				con.Info(line)
			}
		}
		jr.skipRecord(s.rec)
		return
	}
	jr.startRecord(s.rec)

	con.Info("##[section]Starting: " + s.rec.Name)
	if s.lookupErr != nil {
		con.Error(s.lookupErr.Error())
		s.finish(ResultFailed)
		return
	}
	retries := min(max(s.step.RetryCountOnTaskFailure, 0), 10)
	result := ""
	for attempt := 0; ; attempt++ {
		result = s.attempt(jobCtx)
		if result != ResultFailed || attempt >= retries || jr.isCanceled() {
			break
		}
		delay := time.Duration((attempt+1)*(attempt+1)) * time.Second
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
	if result == ResultFailed && s.step.ContinueOnError {
		result = ResultSucceededWithIssues
	}
	s.finish(result)
}

func (s *stepRun) finish(result string) {
	s.console().Info("##[section]Finishing: " + s.rec.Name)
	s.jr.completeRecord(s.rec, result, "")
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
	s.mu.Lock()
	s.cancelFn = cancel
	s.mu.Unlock()
	jr.mu.Lock()
	jr.current = s
	alreadyShutdown := jr.shutdown
	jr.mu.Unlock()
	defer func() {
		jr.mu.Lock()
		jr.current = nil
		jr.mu.Unlock()
		s.mu.Lock()
		s.cancelFn = nil
		s.mu.Unlock()
	}()
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
	emit := s.processLine
	if s.def.RawOutput {
		emit = func(line string) { s.console().write(line) }
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
	keys := make([]string, 0, len(s.step.Environment))
	for k := range s.step.Environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
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
	// Processes a step leaves running carry the job's tag and are killed
	// when the job ends (JobExtension.FinalizeJob).
	put("VSTS_PROCESS_LOOKUP_ID", jr.processTag)
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

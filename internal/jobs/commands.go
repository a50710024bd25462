package jobs

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/goagent-dev/goagent/internal/jobs/logcmd"
)

// processLines handles a batch of a step's output lines, in order: runs of
// ordinary lines are masked and written together, each logging command is
// processed on its own, after the lines before it and before the lines after
// it (it may register a secret they must be masked with). It overwrites lines.
func (s *stepRun) processLines(lines []string) {
	con := s.console()
	plain := 0 // lines[plain:i] are ordinary output not yet written
	for i, line := range lines {
		// The keyword is matched case-sensitively, as String.IndexOf does.
		if !strings.Contains(line, "##vso") {
			continue
		}
		con.writeLines(lines[plain:i])
		// A copy: what the command keeps (a variable's value) must not pin
		// the buffer the whole batch was read into.
		s.processLine(strings.Clone(line))
		plain = i + 1
	}
	con.writeLines(lines[plain:])
}

// processLine handles one line of a step's output as
// WorkerCommandManager.TryProcessCommand does: a ##vso logging command is
// executed and not written (worker.md §5); anything else is masked and
// written to the step's log. "##[group]"-style lines are plain text.
func (s *stepRun) processLine(line string) {
	con := s.console()
	// The keyword is matched case-sensitively, as String.IndexOf does.
	if !strings.Contains(line, "##vso") {
		con.write(line)
		return
	}
	opts := logcmd.Options{KeepPercentEscapes: strings.EqualFold(s.jr.varOr("DECODE_PERCENTS", "true"), "false")}
	cmd, found, err := opts.Parse(line)
	if !found {
		con.write(line)
		return
	}
	if err != nil {
		// Not a legal command: the line is ordinary output, plus a warning.
		con.Warning(err.Error())
		con.write(line)
		return
	}
	spec, known := logcmd.Lookup(cmd.Area, cmd.Event)
	if !logcmd.KnownArea(cmd.Area) {
		con.Warning(logcmd.UnknownAreaWarning(cmd.Area))
		return
	}
	if host, name, ok := s.jr.hostType(); ok && known && spec.Hosts&host == 0 {
		// The area does not serve this kind of pipeline: an error, a failed
		// step, and the line is written as output.
		con.Error(logcmd.NotSupportedError(cmd.Area, name))
		s.failCommands()
		con.write(line)
		return
	}
	// Processed commands are traced (debug only) whatever their outcome.
	defer func() {
		if !(strings.EqualFold(cmd.Area, "task") && strings.EqualFold(cmd.Event, "debug")) {
			con.Debug("Processed: " + opts.Unescape(line))
		}
	}()
	if !known {
		s.commandFailed(con, line, fmt.Errorf("%s", logcmd.UnknownEventError(cmd.Area, cmd.Event)))
		return
	}
	if t := s.step.Target; t != nil && strings.EqualFold(t.Commands, "restricted") && !spec.Restricted {
		con.Warning(logcmd.NotAllowedWarning(cmd.Area, cmd.Event))
		return
	}
	if err := s.runCommand(con, cmd); err != nil {
		s.commandFailed(con, line, err)
	}
}

// hostType is system.hosttype as the command extensions compare it, with
// the HostTypes enum name the official messages show; false when the
// variable is missing or unknown (the official HasFlag(None) check then lets
// every command through).
func (jr *jobRun) hostType() (logcmd.HostType, string, bool) {
	v, _ := jr.vars.Get("system.hosttype")
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "build":
		return logcmd.HostBuild, "Build", true
	case "deployment":
		return logcmd.HostDeployment, "Deployment", true
	case "poolmaintenance":
		return logcmd.HostPoolMaintenance, "PoolMaintenance", true
	case "release":
		return logcmd.HostRelease, "Release", true
	}
	return 0, "", false
}

func (s *stepRun) failCommands() {
	s.mu.Lock()
	s.cmdResult = MergeResults(s.cmdResult, ResultFailed)
	s.mu.Unlock()
}

// commandFailed is CommandProcessFailed: an error issue and a failed step.
func (s *stepRun) commandFailed(con *console, line string, err error) {
	con.Error(logcmd.ProcessFailedError(line))
	con.Error(err.Error())
	s.failCommands()
}

func prop(cmd *logcmd.Command, name string) (string, bool) {
	v, ok := cmd.Properties[strings.ToLower(name)]
	return v, ok
}

func boolProp(cmd *logcmd.Command, name string) bool {
	v, _ := prop(cmd, name)
	b, _ := strconv.ParseBool(strings.TrimSpace(v))
	return b
}

// runCommand executes a parsed logging command.
func (s *stepRun) runCommand(con *console, cmd *logcmd.Command) error {
	jr := s.jr
	switch strings.ToLower(cmd.Area + "." + cmd.Event) {
	case "task.setvariable":
		return s.setVariable(con, cmd)
	case "task.setsecret":
		if strings.TrimSpace(cmd.Data) != "" {
			jr.masker.AddValue(cmd.Data)
		}
	case "task.logissue", "task.issue":
		return s.logIssue(cmd)
	case "task.complete":
		r, _ := prop(cmd, "result")
		res, ok := parseResult(r)
		if !ok && r != "" {
			return fmt.Errorf("Invalid task result: %s", r)
		}
		if res == "" {
			res = ResultSucceeded
		}
		s.mu.Lock()
		s.cmdResult = MergeResults(s.cmdResult, res)
		s.mu.Unlock()
		jr.mu.Lock()
		s.rec.PercentComplete = 100
		if cmd.Data != "" {
			s.rec.CurrentOperation = jr.masker.Mask(cmd.Data)
		}
		jr.mu.Unlock()
		jr.updateRecord(s.rec)
	case "task.setprogress":
		v, _ := prop(cmd, "value")
		p, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || p < 0 || p > 100 {
			return fmt.Errorf("Invalid progress value: %q (an integer from 0 to 100)", v)
		}
		jr.mu.Lock()
		if p > s.rec.PercentComplete {
			s.rec.PercentComplete = p
		}
		s.rec.CurrentOperation = jr.masker.Mask(cmd.Data)
		jr.mu.Unlock()
		jr.updateRecord(s.rec)
	case "task.prependpath":
		if !s.settable(con, "PATH") {
			return nil
		}
		dir := cmd.Data
		if dir == "" {
			return fmt.Errorf("Parameter 'prependpath' cannot be null or empty.")
		}
		jr.mu.Lock()
		out := jr.prependPath[:0]
		for _, p := range jr.prependPath {
			if p != dir {
				out = append(out, p)
			}
		}
		jr.prependPath = append(out, dir)
		jr.mu.Unlock()
	case "task.debug":
		con.Debug(cmd.Data)
	case "task.settaskvariable":
		name, _ := prop(cmd, "variable")
		if strings.TrimSpace(name) == "" {
			return fmt.Errorf("Variable name cannot be empty")
		}
		if boolProp(cmd, "issecret") {
			jr.masker.AddValue(cmd.Data)
		}
		s.mu.Lock()
		if s.taskVars == nil {
			s.taskVars = map[string]string{}
		}
		s.taskVars[name] = cmd.Data
		s.mu.Unlock()
	case "task.uploadfile":
		return s.attach(cmd, "DistributedTask.Core.FileAttachment", "")
	case "task.addattachment":
		typ, _ := prop(cmd, "type")
		name, _ := prop(cmd, "name")
		if typ == "" || name == "" {
			return fmt.Errorf("Both 'type' and 'name' are required to add an attachment")
		}
		return s.attach(cmd, typ, name)
	case "task.uploadsummary", "build.uploadsummary":
		return s.attach(cmd, "DistributedTask.Core.Summary", "")
	case "build.uploadlog":
		return s.attach(cmd, "DistributedTask.Core.Log", "CustomToolLog")
	case "build.updatebuildnumber":
		return s.updateBuildNumber(con, cmd)
	case "build.addbuildtag":
		return s.addBuildTag(con, cmd)
	case "task.logdetail":
		return s.logDetail(cmd)
	case "task.setendpoint":
		return s.setEndpoint(cmd)
	case "artifact.upload", "artifact.associate":
		return fmt.Errorf("##vso[%s.%s] is not supported by goagent: it has no build artifact container upload. Publish artifacts from a job on the official agent, or upload them from the script to your own store", cmd.Area, cmd.Event)
	default:
		// telemetry.publish, release.updatereleasename, codecoverage.publish,
		// results.publish*: services goagent does not talk to. Never silent.
		con.Warning(unsupportedCommand(cmd))
	}
	return nil
}

// unsupportedCommand says what a command goagent cannot honour would have
// done and what to do instead.
func unsupportedCommand(cmd *logcmd.Command) string {
	c := "##vso[" + strings.ToLower(cmd.Area+"."+cmd.Event) + "]"
	switch strings.ToLower(cmd.Area) {
	case "results":
		return c + " was ignored: goagent does not publish test results to Azure DevOps Test Runs. Publish them from a job on the official agent (PublishTestResults@2), or keep the result files as a pipeline artifact."
	case "codecoverage":
		return c + " was ignored: goagent does not publish code coverage to Azure DevOps. Publish it from a job on the official agent (PublishCodeCoverageResults@2)."
	case "telemetry":
		return c + " was ignored: goagent sends no telemetry to Azure DevOps."
	case "release":
		return c + " was ignored: goagent runs build (YAML pipeline) jobs and cannot rename a classic release."
	}
	return c + " was ignored: goagent does not implement it."
}

func parseResult(s string) (string, bool) {
	// Enum.TryParse without ignoreCase: the names are case-sensitive.
	switch s {
	case "Succeeded":
		return ResultSucceeded, true
	case "SucceededWithIssues":
		return ResultSucceededWithIssues, true
	case "Failed":
		return ResultFailed, true
	case "Canceled":
		return ResultCanceled, true
	case "Skipped":
		return ResultSkipped, true
	case "Abandoned":
		return ResultAbandoned, true
	}
	if n, err := strconv.Atoi(s); err == nil {
		for k, v := range resultOrder {
			if v == n {
				return k, true
			}
		}
	}
	return "", false
}

// setVariable is task.setvariable (TaskSetVariableCommand): the read-only
// check comes first — an error when agent.readOnlyVariables is true, else a
// warning and the value is set all the same —, then the secret is
// registered, then the step's settableVariables decide.
func (s *stepRun) setVariable(con *console, cmd *logcmd.Command) error {
	jr := s.jr
	name, _ := prop(cmd, "variable")
	if name == "" {
		return fmt.Errorf("Required field 'variable' is missing in ##vso[task.setvariable] command.")
	}
	value := cmd.Data
	secret := boolProp(cmd, "issecret")
	output := boolProp(cmd, "isoutput")
	readOnly := boolProp(cmd, "isreadonly")
	preserve := boolProp(cmd, "preservecase")
	if jr.vars.IsReadOnly(name) {
		if jr.boolVar("agent.readOnlyVariables") {
			return fmt.Errorf("Overwriting readonly variable '%s' is not permitted. See https://github.com/microsoft/azure-pipelines-yaml/blob/master/design/readonly-variables.md for details.", name)
		}
		con.Warning(fmt.Sprintf("Overwriting readonly variable '%s'. This behavior will be disabled in the future. See https://github.com/microsoft/azure-pipelines-yaml/blob/master/design/readonly-variables.md for details.", name))
	}
	if secret {
		if strings.Contains(value, "\n") && !jr.boolVar("SYSTEM_UNSAFEALLOWMULTILINESECRET") {
			return fmt.Errorf("Secrets cannot contain multiple lines")
		}
		jr.masker.AddValue(value)
	}
	if !s.settable(con, name) {
		return nil
	}
	if output {
		jr.mu.Lock()
		if s.rec.Variables == nil {
			s.rec.Variables = map[string]RecordVariable{}
		}
		s.rec.Variables[name] = RecordVariable{Value: value, IsSecret: secret}
		jr.mu.Unlock()
		jr.updateRecord(s.rec)
		if s.step.Name != "" {
			jr.vars.SetFromStep(s.step.Name+"."+name, value, secret, true, preserve)
		}
		return nil
	}
	jr.vars.SetFromStep(name, value, secret, readOnly, preserve)
	return nil
}

// settable is TaskRestrictionsChecker.CheckSettableVariable: with a
// settableVariables list on the step's target, only names matching one of
// its patterns (minimatch, case-insensitive) may be set; others draw a
// warning and are left alone.
func (s *stepRun) settable(con *console, name string) bool {
	t := s.step.Target
	if t == nil || t.SettableVariables == nil || t.SettableVariables.Allowed == nil {
		return true
	}
	for _, pattern := range t.SettableVariables.Allowed {
		if ok, err := path.Match(strings.ToLower(pattern), strings.ToLower(name)); err == nil && ok {
			return true
		}
	}
	con.Warning(fmt.Sprintf("Setting variable '%s' has been disabled by the task or build definition.", name))
	return false
}

// logIssue is task.logissue (worker.md §5.2).
func (s *stepRun) logIssue(cmd *logcmd.Command) error {
	typ, _ := prop(cmd, "type")
	typ = strings.ToLower(strings.TrimSpace(typ))
	if typ != "error" && typ != "warning" {
		return fmt.Errorf("Invalid issue type: '%s'. Use 'error' or 'warning'", typ)
	}
	is := Issue{Type: typ, Category: "General", Message: cmd.Data, Data: map[string]string{}}
	for k, v := range cmd.Properties {
		if k != "type" {
			is.Data[k] = v
		}
	}
	if src := is.Data["sourcepath"]; src != "" {
		is.Category = "Code"
		loc := src
		if l := is.Data["linenumber"]; l != "" {
			loc += "(" + l
			if c := is.Data["columnnumber"]; c != "" {
				loc += "," + c
			}
			loc += ")"
		}
		code := ""
		if c := is.Data["code"]; c != "" {
			code = " " + c
		}
		is.Message = fmt.Sprintf("%s: %s%s: %s", loc, typ, code, cmd.Data)
	}
	if len(is.Data) == 0 {
		is.Data = nil
	}
	s.jr.addIssue(s.rec, is)
	return nil
}

func (s *stepRun) attach(cmd *logcmd.Command, typ, name string) error {
	path := strings.TrimSpace(cmd.Data)
	if path == "" {
		return fmt.Errorf("File path cannot be empty")
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("Path must be rooted: %s", path)
	}
	if name == "" {
		name = filepath.Base(path)
	}
	if !exists(path) {
		return fmt.Errorf("Cannot upload file '%s': it does not exist", path)
	}
	s.jr.rep.Attach(s.rec.ID, typ, name, path)
	return nil
}

// setEndpoint is task.setendpoint: change an endpoint's url, data or auth
// parameter (never the system connection).
func (s *stepRun) setEndpoint(cmd *logcmd.Command) error {
	id, _ := prop(cmd, "id")
	field, _ := prop(cmd, "field")
	key, _ := prop(cmd, "key")
	jr := s.jr
	jr.mu.Lock()
	defer jr.mu.Unlock()
	for i := range jr.endpoints {
		e := &jr.endpoints[i]
		if !strings.EqualFold(e.ID, id) || id == "" {
			continue
		}
		if strings.EqualFold(e.Name, "SystemVssConnection") {
			return fmt.Errorf("Cannot update the SystemVssConnection endpoint")
		}
		switch strings.ToLower(field) {
		case "url":
			e.URL = cmd.Data
		case "dataparameter":
			if e.Data == nil {
				e.Data = map[string]string{}
			}
			e.Data[key] = cmd.Data
		case "authparameter":
			if e.Authorization.Parameters == nil {
				e.Authorization.Parameters = map[string]string{}
			}
			e.Authorization.Parameters[key] = cmd.Data
			jr.masker.AddValue(cmd.Data)
		default:
			return fmt.Errorf("Invalid endpoint field: %s", field)
		}
		return nil
	}
	return fmt.Errorf("Endpoint %q not found", id)
}

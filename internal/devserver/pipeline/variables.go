package pipeline

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goagent-dev/goagent/internal/wire"
	"gopkg.in/yaml.v3"
)

// variable is a user-defined variable from YAML.
type variable struct {
	name, value string
	readonly    bool
	node        *yaml.Node
}

// variables reads a variables block in map form (name: value) or list form
// (- name: / value: / readonly:).
func (c *compiler) variables(n *yaml.Node, where string) []variable {
	var out []variable
	seen := map[string]bool{}
	add := func(v variable) {
		if !c.checkVarName(v.node, v.name, where) {
			return
		}
		if strings.Contains(v.value, "$[") {
			c.errf(v.node, "runtime expressions ($[ ]) in variable %q are not supported by the emulator", v.name)
			return
		}
		if seen[strings.ToLower(v.name)] {
			c.errf(v.node, "variable %q is defined twice %s", v.name, where)
			return
		}
		seen[strings.ToLower(v.name)] = true
		out = append(out, v)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for _, p := range c.pairs(n, "in variables "+where) {
			if s, ok := c.str(p.v, fmt.Sprintf("the value of variable %q", p.key)); ok {
				add(variable{name: p.key, value: s, node: p.kn})
			}
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			ps := c.pairs(item, "in variables "+where)
			if len(ps) == 0 {
				continue
			}
			switch ps[0].key {
			case "group":
				c.errf(ps[0].kn, "variable groups are not supported by the emulator: pass the values with --var (or Options.Variables/Secrets)")
				continue
			case "template":
				c.errf(ps[0].kn, "variable templates are not supported by the emulator")
				continue
			case "name":
			default:
				c.errf(ps[0].kn, "a variable in list form starts with \"name:\" (or group:/template:), found %q", ps[0].key)
				continue
			}
			v := variable{node: ps[0].kn}
			v.name, _ = c.str(ps[0].v, "the variable name")
			ok := true
			for _, p := range ps[1:] {
				switch p.key {
				case "value":
					v.value, ok = c.str(p.v, fmt.Sprintf("the value of variable %q", v.name))
				case "readonly":
					v.readonly, ok = c.boolean(p.v, fmt.Sprintf("readonly of variable %q", v.name))
				default:
					c.errf(p.kn, "unknown key %q in variable %q %s", p.key, v.name, where)
					ok = false
				}
			}
			if ok {
				add(v)
			}
		}
	default:
		c.errf(n, "variables %s must be a mapping or a list, found %s", where, kindName(n))
	}
	return out
}

// User variable names (learn.microsoft.com "Define variables"): letters,
// digits, '.' and '_', not starting with a prefix the system reserves.
var varNamePattern = regexp.MustCompile(`^[A-Za-z0-9._]+$`)

var reservedVarPrefixes = []string{"endpoint", "input", "secret", "path", "securefile"}

// checkVarName validates a user variable's name; n is nil for Options.
func (c *compiler) checkVarName(n *yaml.Node, name, where string) bool {
	if name == "" {
		c.errf(n, "a variable needs a name %s", where)
		return false
	}
	if !varNamePattern.MatchString(name) {
		c.errf(n, "variable name %q is invalid: use letters, digits, '.' and '_'", name)
		return false
	}
	lower := strings.ToLower(name)
	for _, p := range reservedVarPrefixes {
		if strings.HasPrefix(lower, p) {
			c.errf(n, "variable name %q starts with %q, a prefix the system reserves", name, p)
			return false
		}
	}
	if serviceVariables[lower] && !overridableVariables[lower] {
		c.errf(n, "variable %q is set by the service and cannot be defined in a pipeline", name)
		return false
	}
	return true
}

// checkOptions validates the variables given out of band. Messages name the
// variable, never its value: secrets must not reach an error.
func (c *compiler) checkOptions() {
	for _, m := range []struct {
		what string
		vars map[string]string
	}{{"Options.Variables", c.opts.Variables}, {"Options.Secrets", c.opts.Secrets}} {
		for _, name := range slices.Sorted(maps.Keys(m.vars)) {
			c.checkVarName(nil, name, "in "+m.what)
		}
	}
	for alias, r := range c.opts.Repositories {
		if r.ID != "" && !isGUID(r.ID) {
			c.errs = append(c.errs, &Error{Msg: fmt.Sprintf("options: repository %q has ID %q, which is not a GUID", alias, r.ID)})
		}
	}
}

// Names of the variables the service generates (the L1 sample's 62, by lower
// case). The four that carry a URL or the job's token are filled by the
// emulator when it queues (Job.Bind); they are reserved all the same.
var serviceVariables = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range []string{
		"system", "system.hosttype", "system.servertype", "system.culture", "system.collectionId",
		"system.debug", "system.collectionUri", "system.teamFoundationCollectionUri",
		"system.taskDefinitionsUri", "system.pipelineStartTime", "system.teamProject",
		"system.teamProjectId", "system.definitionId", "build.definitionName", "build.definitionVersion",
		"build.queuedBy", "build.queuedById", "build.requestedFor", "build.requestedForId",
		"build.requestedForEmail", "build.sourceVersion", "build.sourceBranch", "build.sourceBranchName",
		"build.reason", "system.pullRequest.isFork", "system.jobParallelismTag", "system.enableAccessToken",
		"MSDEPLOY_HTTP_USER_AGENT", "AZURE_HTTP_USER_AGENT", "build.buildId", "build.buildUri",
		"build.buildNumber", "build.containerId", "system.isScheduled", "system.definitionName",
		"system.planId", "system.timelineId", "system.stageDisplayName", "system.stageId",
		"system.stageName", "system.stageAttempt", "system.phaseDisplayName", "system.phaseId",
		"system.phaseName", "system.phaseAttempt", "system.jobIdentifier", "system.jobAttempt",
		"System.JobPositionInPhase", "System.TotalJobsInPhase", "system.jobDisplayName", "system.jobId",
		"system.jobName", "system.accessToken", "agent.retainDefaultEncoding", "agent.readOnlyVariables",
		"agent.disablelogplugin.TestResultLogPlugin", "agent.disablelogplugin.TestFilePublisherPlugin",
		"build.repository.id", "build.repository.name", "build.repository.uri",
		"build.sourceVersionAuthor", "build.sourceVersionMessage",
	} {
		m[strings.ToLower(n)] = true
	}
	return m
}()

// overridableVariables may be set by the pipeline or at queue time even
// though the service also sends them: `system.debug: true` is the documented
// way to turn on diagnostics.
var overridableVariables = map[string]bool{"system.debug": true}

// vars is a case-insensitive variable map that keeps the spelling of the
// definition that won.
type vars struct {
	m     map[string]wire.VariableValue
	names map[string]string // lower → spelling in m
}

func newVars() *vars {
	return &vars{m: map[string]wire.VariableValue{}, names: map[string]string{}}
}

func (v *vars) set(name string, val wire.VariableValue) {
	lower := strings.ToLower(name)
	if old, ok := v.names[lower]; ok {
		delete(v.m, old)
	}
	v.names[lower] = name
	v.m[name] = val
}

// merge sets a value. Flags are sticky, as in the agent's variable store:
// once read-only or secret, a later definition cannot clear them. The
// spelling of the first definition is kept.
func (v *vars) merge(name, value string, readonly, secret bool) {
	old, ok := v.names[strings.ToLower(name)]
	if !ok {
		v.set(name, wire.VariableValue{Value: value, IsReadonly: readonly, IsSecret: secret})
		return
	}
	val := v.m[old]
	val.Value = value
	val.IsReadonly = val.IsReadonly || readonly
	val.IsSecret = val.IsSecret || secret
	v.m[old] = val
}

// serviceVars builds the variables the service sends for a job, in the
// L1 sample's names and with its read-only flags.
func (c *compiler) serviceVars(jd *jobDef, jobID, buildNumber string, self *Repo) *vars {
	o := c.opts
	ro := func(s string) wire.VariableValue { return wire.VariableValue{Value: s, IsReadonly: true} }
	boolText := func(b bool) string { // .NET Boolean.ToString
		if b {
			return "True"
		}
		return "False"
	}
	phase := jd.name
	jobIdentifier := phase + "." + defaultJobName
	userAgent := fmt.Sprintf("VSTS_%s_build_%d_0", o.CollectionID, o.DefinitionID)

	v := newVars()
	for _, kv := range []struct {
		k string
		v wire.VariableValue
	}{
		{"system", ro("build")},
		{"system.hosttype", ro("build")},
		{"system.servertype", ro("Hosted")},
		{"system.culture", ro("en-US")},
		{"system.collectionId", ro(o.CollectionID)},
		{"system.debug", ro(strconv.FormatBool(o.Debug))},
		{"system.pipelineStartTime", ro(o.StartTime.Format("2006-01-02 15:04:05-07:00"))},
		{"system.teamProject", ro(o.ProjectName)},
		{"system.teamProjectId", ro(o.ProjectID)},
		{"system.definitionId", ro(strconv.Itoa(o.DefinitionID))},
		{"build.definitionName", ro(o.DefinitionName)},
		{"build.definitionVersion", ro(strconv.Itoa(o.DefinitionVersion))},
		{"build.queuedBy", ro(o.QueuedBy.Name)},
		{"build.queuedById", ro(o.QueuedBy.ID)},
		{"build.requestedFor", ro(o.RequestedFor.Name)},
		{"build.requestedForId", ro(o.RequestedFor.ID)},
		{"build.requestedForEmail", ro(o.RequestedFor.Email)},
		{"build.reason", ro(o.Reason)},
		{"system.pullRequest.isFork", ro("False")},
		{"system.jobParallelismTag", ro("Private")},
		{"system.enableAccessToken", ro("SecretVariable")},
		{"MSDEPLOY_HTTP_USER_AGENT", ro(userAgent)},
		{"AZURE_HTTP_USER_AGENT", ro(userAgent)},
		{"build.buildId", ro(strconv.Itoa(o.BuildID))},
		{"build.buildUri", ro(fmt.Sprintf("vstfs:///Build/Build/%d", o.BuildID))},
		{"build.buildNumber", ro(buildNumber)},
		{"build.containerId", ro(strconv.FormatInt(o.ContainerID, 10))},
		{"system.isScheduled", ro(boolText(strings.EqualFold(o.Reason, "Schedule")))},
		{"system.definitionName", ro(o.DefinitionName)},
		{"system.planId", ro(o.PlanID)},
		{"system.timelineId", ro(o.PlanID)},
		{"system.stageDisplayName", ro(defaultStageName)},
		{"system.stageId", ro(recordID(defaultStageName))},
		{"system.stageName", ro(defaultStageName)},
		{"system.stageAttempt", ro("1")},
		{"system.phaseDisplayName", ro(jd.displayName)},
		{"system.phaseId", ro(recordID(phase))},
		{"system.phaseName", ro(phase)},
		{"system.phaseAttempt", ro("1")},
		{"system.jobIdentifier", ro(jobIdentifier)},
		{"system.jobAttempt", ro("1")},
		{"System.JobPositionInPhase", ro("1")},
		{"System.TotalJobsInPhase", ro("1")},
		{"system.jobDisplayName", ro(jd.displayName)},
		{"system.jobId", ro(jobID)},
		{"system.jobName", ro(defaultJobName)},
		{"agent.retainDefaultEncoding", ro("false")},
		{"agent.readOnlyVariables", ro("true")},
		{"agent.disablelogplugin.TestResultLogPlugin", ro("true")},
		{"agent.disablelogplugin.TestFilePublisherPlugin", ro("true")},
	} {
		v.set(kv.k, kv.v)
	}
	if self != nil {
		ref := normalizeRef(self.Ref)
		v.set("build.repository.id", ro(repoID(*self, selfName(*self))))
		v.set("build.repository.name", ro(selfName(*self)))
		v.set("build.repository.uri", ro(self.URL))
		v.set("build.sourceVersion", ro(self.Commit))
		v.set("build.sourceBranch", ro(ref))
		v.set("build.sourceBranchName", ro(ref[strings.LastIndex(ref, "/")+1:]))
		if self.Author != "" {
			v.set("build.sourceVersionAuthor", ro(self.Author))
		}
		if self.Message != "" {
			v.set("build.sourceVersionMessage", ro(self.Message))
		}
	}
	return v
}

// jobVars merges the service's, the pipeline's, the job's and the
// out-of-band variables, later ones winning.
func (c *compiler) jobVars(base *vars, jd *jobDef) map[string]wire.VariableValue {
	// Names that collide with service variables were rejected when read,
	// except the overridable ones, which merge into the service's entry.
	apply := base.merge
	for _, list := range [][]variable{c.vars, jd.vars} {
		for _, uv := range list {
			apply(uv.name, uv.value, uv.readonly, false)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Variables)) {
		apply(name, c.opts.Variables[name], false, false)
	}
	for _, name := range slices.Sorted(maps.Keys(c.opts.Secrets)) {
		apply(name, c.opts.Secrets[name], false, true)
	}
	return base.m
}

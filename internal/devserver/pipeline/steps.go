package pipeline

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/goagent-dev/goagent/internal/wire"
	"gopkg.in/yaml.v3"
)

// taskDef is a task the compiler knows by name (worker.md §2.1).
type taskDef struct {
	id, name string
	major    int
	version  string // the version the service would resolve Name@major to
	// instanceName is task.json's instanceNameFormat: what the service shows
	// for a `task:` step without displayName.
	instanceName string
}

// The versions are representative of what the service resolves today; the
// agent only needs major versions it implements (and exactly 1.0.0 for
// checkout, which it synthesizes rather than downloads: A TaskManager.cs).
var (
	taskCmdLine    = taskDef{wire.TaskCmdLine, "CmdLine", 2, "2.250.1", "Command Line Script"}
	taskBash       = taskDef{wire.TaskBash, "Bash", 3, "3.250.1", "Bash Script"}
	taskPowerShell = taskDef{wire.TaskPowerShell, "PowerShell", 2, "2.250.1", "PowerShell Script"}
	taskCheckout   = taskDef{wire.TaskCheckout, "Checkout", 1, "1.0.0", "Checkout"}
	knownTasks     = []taskDef{taskCmdLine, taskBash, taskPowerShell, taskCheckout}
)

// Keys of each shorthand step that become inputs, per the official YAML
// schema (learn.microsoft.com yaml-schema steps-script, steps-bash,
// steps-pwsh, steps-powershell, steps-checkout). Any other key is an error,
// as on the service.
var shorthandInputs = map[string]map[string]bool{
	"script":     set("failOnStderr", "workingDirectory"),
	"bash":       set("failOnStderr", "workingDirectory"),
	"pwsh":       set("errorActionPreference", "failOnStderr", "ignoreLASTEXITCODE", "workingDirectory"),
	"powershell": set("errorActionPreference", "failOnStderr", "ignoreLASTEXITCODE", "workingDirectory"),
	"checkout": set("clean", "fetchDepth", "fetchFilter", "fetchTags", "lfs", "persistCredentials",
		"submodules", "path", "sparseCheckoutDirectories", "sparseCheckoutPatterns", "workspaceRepo"),
	"task": set(),
}

// Checkout inputs whose schema type is true|false.
var checkoutBooleans = set("clean", "workspaceRepo")

var unsupportedSteps = map[string]string{
	"template":      "step templates are not supported by the emulator",
	"download":      "the download step is not supported by the emulator",
	"downloadBuild": "the downloadBuild step is not supported by the emulator",
	"getPackage":    "the getPackage step is not supported by the emulator",
	"publish":       "the publish step is not supported by the emulator",
	"reviewApp":     "the reviewApp step is not supported by the emulator",
	"restoreCache":  "the restoreCache step is not supported by the emulator",
	"saveCache":     "the saveCache step is not supported by the emulator",
}

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// draft is a step as compiled before names and ids are assigned.
type draft struct {
	node     *yaml.Node
	nameNode *yaml.Node
	enabled  bool
	repo     string // checkout: the alias as written
	implicit bool
	def      taskDef
	step     wire.Step
}

func (d *draft) isCheckout() bool { return d.step.Reference.ID == wire.TaskCheckout }

var stepNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// step compiles one entry of a steps list. The step's kind must be its first
// key ("Required as first property" in the schema).
func (c *compiler) step(n *yaml.Node, idx int, job string) *draft {
	where := fmt.Sprintf("in step %d of job %q", idx+1, job)
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		c.errf(n, "step %d of job %q must be a mapping starting with script, bash, pwsh, powershell, checkout or task", idx+1, job)
		return nil
	}
	ps := c.pairs(n, where)
	if len(ps) == 0 {
		return nil
	}
	kind := ps[0].key
	if msg, ok := unsupportedSteps[kind]; ok {
		c.errf(ps[0].kn, "%s (%s)", msg, where)
		return nil
	}
	extra, ok := shorthandInputs[kind]
	if !ok {
		c.errf(ps[0].kn, "a step starts with script, bash, pwsh, powershell, checkout or task, found %q %s", kind, where)
		return nil
	}
	value, ok := c.str(ps[0].v, kind+" "+where)
	if !ok {
		return nil
	}

	d := &draft{node: ps[0].kn, enabled: true, step: wire.Step{Type: "task"}}
	inputs := map[string]string{}
	var taskInputs map[string]string
	for _, p := range ps[1:] {
		what := p.key + " " + where
		switch p.key {
		case "name":
			if s, ok := c.str(p.v, what); ok {
				d.step.Name, d.nameNode = s, p.v
			}
		case "displayName":
			d.step.DisplayName, _ = c.str(p.v, what)
		case "condition":
			d.step.Condition, _ = c.str(p.v, what)
		case "continueOnError":
			d.step.ContinueOnError, _ = c.boolean(p.v, what)
		case "enabled":
			if v, ok := c.boolean(p.v, what); ok {
				d.enabled = v
			}
		case "timeoutInMinutes":
			d.step.TimeoutInMinutes, _ = c.count(p.v, what)
		case "retryCountOnTaskFailure":
			d.step.RetryCountOnTaskFailure, _ = c.count(p.v, what)
		case "env":
			d.step.Environment = c.strMap(p.v, "in env "+where)
		case "target":
			c.errf(p.kn, "step targets are not supported by the emulator (%s)", where)
		case "inputs":
			if kind != "task" {
				c.errf(p.kn, "unknown key %q %s: inputs belong to task steps", p.key, where)
				continue
			}
			taskInputs = c.strMap(p.v, "in inputs "+where)
		default:
			if !extra[p.key] {
				c.errf(p.kn, "unknown key %q %s", p.key, where)
				continue
			}
			if s, ok := c.str(p.v, what); ok {
				if kind == "checkout" && checkoutBooleans[p.key] {
					if _, ok := c.boolean(p.v, what); !ok {
						continue
					}
				}
				inputs[p.key] = s
			}
		}
	}

	// worker.md §2.1: the shorthand's own value and fixed inputs are set
	// after the extra keys, so they win.
	switch kind {
	case "script":
		d.def = taskCmdLine
		inputs["script"] = value
	case "bash":
		d.def = taskBash
		inputs["targetType"] = "inline"
		inputs["script"] = value
	case "pwsh", "powershell":
		d.def = taskPowerShell
		inputs["targetType"] = "inline"
		if kind == "pwsh" {
			inputs["pwsh"] = "true"
		}
		inputs["script"] = value
	case "checkout":
		d.def = taskCheckout
		d.repo = value
		inputs["repository"] = value
		if value == "" {
			c.errf(ps[0].kn, "checkout needs a repository: self, none or a repository alias (%s)", where)
			return nil
		}
	case "task":
		def, ok := c.taskRef(ps[0].v, value, where)
		if !ok {
			return nil
		}
		d.def = def
		for k, v := range taskInputs {
			inputs[k] = v
		}
		if def.id == wire.TaskCheckout {
			d.repo = inputs["repository"]
			if d.repo == "" {
				c.errf(ps[0].kn, "the Checkout task needs inputs.repository (%s)", where)
				return nil
			}
		}
	}
	d.step.Reference = wire.TaskReference{ID: d.def.id, Name: d.def.name, Version: d.def.version}
	if len(inputs) > 0 {
		d.step.Inputs = inputs
	}
	if d.step.DisplayName == "" {
		switch {
		case kind == "task":
			d.step.DisplayName = d.def.instanceName
		default:
			// The service shows shorthand steps by task name: "CmdLine" in
			// the L1 sample.
			d.step.DisplayName = d.def.name
		}
	}
	if d.step.Condition == "" {
		d.step.Condition = defaultCondition
	}
	if d.step.Name != "" && (!stepNamePattern.MatchString(d.step.Name) || len(d.step.Name) > maxNodeName) {
		c.errf(d.nameNode, "step name %q is invalid: use letters, digits and _, not starting with a digit, at most %d characters", d.step.Name, maxNodeName)
		return nil
	}
	return d
}

// taskRef resolves "Name@Major" (or "<guid>@Major").
func (c *compiler) taskRef(n *yaml.Node, ref, where string) (taskDef, bool) {
	at := strings.LastIndexByte(ref, '@')
	if at <= 0 {
		c.errf(n, "task %q needs a major version, as in CmdLine@2 (%s)", ref, where)
		return taskDef{}, false
	}
	name, ver := ref[:at], ref[at+1:]
	major, err := strconv.Atoi(ver)
	if err != nil || major < 0 || strconv.Itoa(major) != ver {
		c.errf(n, "task %q: the version after @ must be a major version number, as in CmdLine@2 (%s)", ref, where)
		return taskDef{}, false
	}
	version := fmt.Sprintf("%d.0.0", major)
	for _, t := range knownTasks {
		if strings.EqualFold(name, t.name) || strings.EqualFold(name, t.id) {
			if t.major == major {
				return t, true
			}
			// A major version the agent may not implement: same task, so it
			// reports the version as unsupported rather than the task.
			return taskDef{t.id, t.name, major, version, t.name}, true
		}
	}
	if strings.ContainsAny(name, " \t\r\n") {
		c.errf(n, "task name %q must not contain spaces (%s)", name, where)
		return taskDef{}, false
	}
	// Unknown tasks get a stable id and version so the agent can report
	// them as unsupported by name.
	id := nameUUID("task/" + strings.ToLower(name))
	if isGUID(name) {
		id = strings.ToLower(name)
	}
	return taskDef{id, name, major, version, name}, true
}

// refNames hands out step reference names unique within a job
// (case-insensitive), like the service's ReferenceNameBuilder.
type refNames struct {
	used map[string]bool
	next map[string]int // per base: the suffix to try first, so n steps cost O(n)
}

func (r *refNames) reserve(name string) bool {
	k := strings.ToLower(name)
	if r.used[k] {
		return false
	}
	r.used[k] = true
	return true
}

// generate returns base made legal, or base followed by 1, 2, … when taken.
func (r *refNames) generate(base string) string {
	name := legalName(base)
	key := strings.ToLower(name)
	for i := r.next[key]; ; i++ {
		cand := name
		if i > 0 {
			suffix := strconv.Itoa(i)
			cand = name[:min(len(name), maxNodeName-len(suffix))] + suffix
		}
		if r.reserve(cand) {
			r.next[key] = i + 1
			return cand
		}
	}
}

// legalName maps a task name onto [A-Za-z_][A-Za-z0-9_]*: other characters
// become '_' and a leading digit gets a '_' in front (ReferenceNameBuilder).
func legalName(s string) string {
	var b strings.Builder
	for i, r := range s {
		legal := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
		if i == 0 && r >= '0' && r <= '9' {
			b.WriteByte('_')
		}
		if legal {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "step"
	}
	s = b.String()
	return s[:min(len(s), maxNodeName)]
}

// implicitCheckout is the step the service puts first in a job that has no
// checkout step: exactly the L1 sample's.
func implicitCheckout() *draft {
	return &draft{enabled: true, implicit: true, repo: selfAlias, def: taskCheckout, step: wire.Step{
		Type:        "task",
		DisplayName: taskCheckout.name,
		Condition:   "true",
		Reference:   wire.TaskReference{ID: taskCheckout.id, Name: taskCheckout.name, Version: taskCheckout.version},
		Inputs:      map[string]string{"repository": selfAlias},
	}}
}

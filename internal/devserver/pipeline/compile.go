package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// compiler holds one compilation's state.
type compiler struct {
	opts    Options
	errs    ErrorList
	nameFmt string
	hasName bool
	vars    []variable           // pipeline-level
	repos   map[string]*repoDecl // resources.repositories by lower-case alias
	jobs    []*jobDef
}

// repoDecl is a resources.repositories entry.
type repoDecl struct{ alias, name, ref string }

// jobDef is a job as written, before its message is built.
type jobDef struct {
	node          *yaml.Node // for error lines
	name          string
	displayName   string
	dependsOn     []string
	dependsOnNode []*yaml.Node
	condition     string
	vars          []variable
	steps         *yaml.Node
	timeout       int
	cancelTimeout int
	contOnError   bool
	clean         string
}

// Compile turns pipeline YAML into job messages. A returned error is an
// ErrorList naming every problem with its line.
func Compile(src []byte, opts Options) (*Pipeline, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, ErrorList{{Msg: err.Error()}}
	}
	c := &compiler{opts: o, repos: map[string]*repoDecl{}}
	c.checkOptions()

	root := c.parse(src)
	if root == nil {
		return nil, c.errs
	}
	// What the service would have expanded first makes everything after it
	// guesswork: report it alone (with any Options problems).
	n := len(c.errs)
	if c.screen(root); len(c.errs) > n {
		return nil, c.errs
	}
	c.root(root)

	// Jobs are compiled even after errors elsewhere, so one run reports the
	// problems of every job.
	p := &Pipeline{PlanID: o.PlanID}
	p.Name = c.buildNumber()
	for _, jd := range c.jobs {
		if j := c.job(jd, p.Name); j != nil {
			p.Jobs = append(p.Jobs, j)
		}
	}
	if len(c.errs) > 0 {
		slices.SortStableFunc(c.errs, func(a, b *Error) int { return a.Line - b.Line })
		return nil, c.errs
	}
	if _, err := p.Order(); err != nil {
		return nil, ErrorList{{Msg: err.Error()}}
	}
	return p, nil
}

// parse decodes exactly one YAML document into a node tree.
func (c *compiler) parse(src []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.errs = append(c.errs, &Error{Msg: "the pipeline file is empty: it needs steps or jobs"})
		} else {
			c.errs = append(c.errs, &Error{Msg: yamlError(err)})
		}
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			c.errs = append(c.errs, &Error{Msg: yamlError(err)})
			return nil
		}
		c.errs = append(c.errs, &Error{Line: line, Msg: "a pipeline file holds one YAML document; remove the second document (after ---)"})
		return nil
	}
	if len(doc.Content) == 0 {
		c.errs = append(c.errs, &Error{Msg: "the pipeline file is empty: it needs steps or jobs"})
		return nil
	}
	return doc.Content[0]
}

// yamlError rewrites yaml.v3's "yaml: line N: msg" as "line N: msg".
func yamlError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	return "invalid YAML: " + s
}

// Keys the service knows that the emulator does not implement: named so the
// error says "not supported" rather than "unknown".
var unsupportedTopLevel = map[string]string{
	"stages":     "stages are not supported by the emulator yet; use jobs or steps",
	"extends":    "extends templates are not supported by the emulator",
	"parameters": "runtime parameters are not supported by the emulator",
	"container":  "container jobs are not supported by the emulator",
	"services":   "service containers are not supported by the emulator",
	"strategy":   "matrix and parallel strategies are not supported by the emulator",
}

var unsupportedJobKeys = map[string]string{
	"strategy":        "matrix and parallel strategies are not supported by the emulator",
	"container":       "container jobs are not supported by the emulator",
	"services":        "service containers are not supported by the emulator",
	"uses":            "uses (resource pre-authorization) is not supported by the emulator",
	"templateContext": "templateContext is not supported by the emulator",
}

// root reads the top-level mapping.
func (c *compiler) root(n *yaml.Node) {
	const where = "at the top level"
	var stepsNode, jobsNode *yaml.Node
	single := &jobDef{node: n, name: implicitJobName, displayName: implicitJobName,
		timeout: defaultJobTimeout, cancelTimeout: defaultJobCancelTimeout, condition: defaultCondition}
	var jobKeys []pair // job-level keys written at the top level
	for _, p := range c.pairs(n, where) {
		switch p.key {
		case "name":
			if s, ok := c.str(p.v, "name (the run number format)"); ok {
				c.nameFmt, c.hasName = s, true
			}
		case "trigger", "pr", "schedules", "pool", "lockBehavior", "appendCommitMessageToRunName":
			// They decide when and where a run happens, not what it does; a
			// local run is triggered by hand on the local agent.
		case "variables":
			c.vars = c.variables(p.v, where)
		case "resources":
			c.resources(p.v)
		case "steps":
			stepsNode = p.v
		case "jobs":
			jobsNode = p.v
		case "timeoutInMinutes", "cancelTimeoutInMinutes", "continueOnError", "workspace":
			jobKeys = append(jobKeys, p)
		default:
			c.unknown(p, where, unsupportedTopLevel)
		}
	}
	switch {
	case stepsNode != nil && jobsNode != nil:
		c.errf(jobsNode, "a pipeline has either steps or jobs at the top level, not both")
	case stepsNode != nil:
		single.node = stepsNode
		for _, p := range jobKeys {
			c.jobKey(single, p, where)
		}
		single.steps = stepsNode
		c.jobs = []*jobDef{single}
	case jobsNode != nil:
		for _, p := range jobKeys {
			c.errf(p.kn, "%q at the top level applies to top-level steps only; set it on each job", p.key)
		}
		c.jobList(jobsNode)
	default:
		if len(c.errs) == 0 {
			c.errf(n, "the pipeline has no steps or jobs")
		}
	}
}

// unknown reports a key the context does not accept.
func (c *compiler) unknown(p pair, where string, unsupported map[string]string) {
	if msg, ok := unsupported[p.key]; ok {
		c.errf(p.kn, "%s (%q %s)", msg, p.key, where)
		return
	}
	c.errf(p.kn, "unknown key %q %s", p.key, where)
}

// resources reads resources.repositories.
func (c *compiler) resources(n *yaml.Node) {
	for _, p := range c.pairs(n, "in resources") {
		switch p.key {
		case "repositories":
			if p.v.Kind != yaml.SequenceNode {
				c.errf(p.v, "resources.repositories must be a list, found %s", kindName(p.v))
				continue
			}
			for _, item := range p.v.Content {
				c.repository(item)
			}
		case "pipelines", "containers", "builds", "packages", "webhooks":
			c.errf(p.kn, "%s resources are not supported by the emulator", p.key)
		default:
			c.errf(p.kn, "unknown key %q in resources", p.key)
		}
	}
}

var aliasPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c *compiler) repository(n *yaml.Node) {
	ps := c.pairs(n, "in resources.repositories")
	if len(ps) == 0 {
		return
	}
	if ps[0].key != "repository" {
		c.errf(ps[0].kn, "a repository resource starts with \"repository: <alias>\", found %q", ps[0].key)
		return
	}
	alias, ok := c.str(ps[0].v, "the repository alias")
	if !ok {
		return
	}
	where := fmt.Sprintf("in repository resource %q", alias)
	if !aliasPattern.MatchString(alias) {
		c.errf(ps[0].v, "repository alias %q is invalid: use letters, digits and _, not starting with a digit", alias)
		return
	}
	if strings.EqualFold(alias, selfAlias) || strings.EqualFold(alias, "none") {
		c.errf(ps[0].v, "repository alias %q is reserved", alias)
		return
	}
	if c.repos[strings.ToLower(alias)] != nil {
		c.errf(ps[0].v, "repository alias %q is declared twice", alias)
		return
	}
	d := &repoDecl{alias: alias}
	typ := ""
	for _, p := range ps[1:] {
		switch p.key {
		case "type":
			typ, _ = c.str(p.v, "type "+where)
		case "name":
			d.name, _ = c.str(p.v, "name "+where)
		case "ref":
			d.ref, _ = c.str(p.v, "ref "+where)
		case "trigger":
			// CI triggers of other repositories do not apply to a local run.
		case "endpoint":
			c.errf(p.kn, "service connections (endpoint) are not supported by the emulator %s; use type: git", where)
		default:
			c.errf(p.kn, "unknown key %q %s", p.key, where)
		}
	}
	switch {
	case typ == "":
		c.errf(ps[0].kn, "repository resource %q needs a type (git)", alias)
	case !strings.EqualFold(typ, "git"):
		c.errf(ps[0].kn, "repository type %q is not supported by the emulator %s; use type: git (Azure Repos)", typ, where)
	}
	if d.name == "" {
		c.errf(ps[0].kn, "repository resource %q needs a name (project/repository or repository)", alias)
	}
	c.repos[strings.ToLower(alias)] = d
}

var nodeNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// maxNodeName is PipelineConstants.MaxNodeNameLength.
const maxNodeName = 100

func (c *compiler) jobList(n *yaml.Node) {
	if n.Kind != yaml.SequenceNode {
		c.errf(n, "jobs must be a list, found %s", kindName(n))
		return
	}
	if len(n.Content) == 0 {
		c.errf(n, "jobs is empty")
		return
	}
	seen := map[string]bool{}
	for _, item := range n.Content {
		ps := c.pairs(item, "in jobs")
		if len(ps) == 0 {
			if item.Kind == yaml.MappingNode {
				c.errf(item, "empty job: a job starts with \"job: <name>\"")
			}
			continue
		}
		switch ps[0].key {
		case "job":
		case "deployment":
			c.errf(ps[0].kn, "deployment jobs are not supported by the emulator")
			continue
		case "template":
			c.errf(ps[0].kn, "job templates are not supported by the emulator")
			continue
		default:
			c.errf(ps[0].kn, "a job starts with \"job: <name>\", found %q", ps[0].key)
			continue
		}
		name, ok := c.str(ps[0].v, "the job name")
		if !ok {
			continue
		}
		if name == "" {
			c.errf(ps[0].kn, "the job needs a name (job: <name>)")
			continue
		}
		if !nodeNamePattern.MatchString(name) || len(name) > maxNodeName {
			c.errf(ps[0].v, "job name %q is invalid: use letters, digits and _, not starting with a digit, at most %d characters", name, maxNodeName)
			continue
		}
		if seen[strings.ToLower(name)] {
			c.errf(ps[0].v, "job name %q is used twice", name)
			continue
		}
		seen[strings.ToLower(name)] = true
		jd := &jobDef{node: ps[0].kn, name: name, timeout: defaultJobTimeout,
			cancelTimeout: defaultJobCancelTimeout, condition: defaultCondition}
		where := fmt.Sprintf("in job %q", name)
		for _, p := range ps[1:] {
			switch p.key {
			case "displayName":
				jd.displayName, _ = c.str(p.v, "displayName "+where)
			case "dependsOn":
				c.dependsOn(jd, p.v, where)
			case "condition":
				if s, ok := c.str(p.v, "condition "+where); ok && s != "" {
					jd.condition = s
				}
			case "variables":
				jd.vars = c.variables(p.v, where)
			case "steps":
				jd.steps = p.v
			case "pool":
				// Every job runs on the agent the emulator serves.
			case "timeoutInMinutes", "cancelTimeoutInMinutes", "continueOnError", "workspace":
				c.jobKey(jd, p, where)
			default:
				c.unknown(p, where, unsupportedJobKeys)
			}
		}
		if jd.displayName == "" {
			jd.displayName = name
		}
		if jd.steps == nil {
			c.errf(ps[0].kn, "job %q has no steps", name)
			continue
		}
		c.jobs = append(c.jobs, jd)
	}
	// dependsOn must name jobs of this pipeline.
	for _, jd := range c.jobs {
		for i, d := range jd.dependsOn {
			if !seen[strings.ToLower(d)] {
				c.errf(jd.dependsOnNode[i], "job %q depends on %q, which is not a job of this pipeline", jd.name, d)
			}
		}
	}
}

func (c *compiler) dependsOn(jd *jobDef, n *yaml.Node, where string) {
	add := func(v *yaml.Node) {
		s, ok := c.str(v, "dependsOn "+where)
		if !ok || s == "" {
			if ok {
				c.errf(v, "empty job name in dependsOn %s", where)
			}
			return
		}
		for _, d := range jd.dependsOn {
			if strings.EqualFold(d, s) {
				c.errf(v, "job %q is listed twice in dependsOn %s", s, where)
				return
			}
		}
		jd.dependsOn = append(jd.dependsOn, s)
		jd.dependsOnNode = append(jd.dependsOnNode, v)
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, v := range n.Content {
			add(v)
		}
	case yaml.ScalarNode:
		if s, _ := c.str(n, "dependsOn"); s != "" {
			add(n)
		}
	default:
		c.errf(n, "dependsOn %s must be a job name or a list of job names, found %s", where, kindName(n))
	}
}

// jobKey reads the job-level keys that may also stand at the top level.
func (c *compiler) jobKey(jd *jobDef, p pair, where string) {
	switch p.key {
	case "timeoutInMinutes":
		if v, ok := c.count(p.v, "timeoutInMinutes "+where); ok {
			jd.timeout = v
		}
	case "cancelTimeoutInMinutes":
		if v, ok := c.count(p.v, "cancelTimeoutInMinutes "+where); ok {
			jd.cancelTimeout = v
		}
	case "continueOnError":
		if v, ok := c.boolean(p.v, "continueOnError "+where); ok {
			jd.contOnError = v
		}
	case "workspace":
		for _, wp := range c.pairs(p.v, "in workspace "+where) {
			if wp.key != "clean" {
				c.errf(wp.kn, "unknown key %q in workspace %s", wp.key, where)
				continue
			}
			s, ok := c.str(wp.v, "workspace clean "+where)
			if !ok {
				continue
			}
			switch strings.ToLower(s) {
			case "outputs", "resources", "all":
				jd.clean = strings.ToLower(s)
			default:
				c.errf(wp.v, "workspace clean %s must be outputs, resources or all, found %q", where, s)
			}
		}
	}
}

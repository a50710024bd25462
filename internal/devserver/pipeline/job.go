package pipeline

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/goagent-dev/goagent/internal/wire"
	"gopkg.in/yaml.v3"
)

// job compiles one job into its message.
func (c *compiler) job(jd *jobDef, buildNumber string) *Job {
	if jd.steps.Kind != yaml.SequenceNode {
		c.errf(jd.steps, "steps of job %q must be a list, found %s", jd.name, kindName(jd.steps))
		return nil
	}
	if len(jd.steps.Content) == 0 {
		c.errf(jd.steps, "job %q has no steps", jd.name)
		return nil
	}
	nerr := len(c.errs)
	var drafts []*draft
	for i, sn := range jd.steps.Content {
		if d := c.step(sn, i, jd.name); d != nil && d.enabled {
			drafts = append(drafts, d)
		}
	}
	// Carry on with the steps that compiled, to report repository and name
	// problems too; but a step that failed may have been the checkout, so
	// no implicit one is inserted then.
	stepsFailed := len(c.errs) > nerr

	// checkout: none removes the job's checkout; no checkout at all gets
	// the implicit one.
	hadNone, hasCheckout := false, false
	kept := drafts[:0]
	for _, d := range drafts {
		if d.isCheckout() && strings.EqualFold(d.repo, "none") {
			hadNone = true
			continue
		}
		hasCheckout = hasCheckout || d.isCheckout()
		kept = append(kept, d)
	}
	drafts = kept
	if !hasCheckout && !hadNone && !stepsFailed {
		d := implicitCheckout()
		d.node = jd.node
		drafts = append([]*draft{d}, drafts...)
	}
	if len(drafts) == 0 {
		if !stepsFailed {
			c.errf(jd.steps, "job %q has no enabled steps", jd.name)
		}
		return nil
	}

	repos := c.jobRepositories(jd, drafts)

	names := &refNames{used: map[string]bool{}, next: map[string]int{}}
	for _, d := range drafts {
		if d.step.Name != "" && !names.reserve(d.step.Name) {
			c.errf(d.nameNode, "step name %q is used twice in job %q", d.step.Name, jd.name)
		}
	}
	jobIdentifier := jd.name + "." + defaultJobName
	steps := make([]wire.Step, 0, len(drafts))
	for _, d := range drafts {
		if d.step.Name == "" {
			d.step.Name = names.generate(d.def.name)
		}
		d.step.ID = recordID(jobIdentifier + "." + d.step.Name)
		steps = append(steps, d.step)
	}
	if len(c.errs) > nerr {
		return nil
	}

	jobID := recordID(jobIdentifier)
	var self *Repo
	if r, ok := c.repo(selfAlias); ok && r.URL != "" {
		self = &r
	}
	o := c.opts
	msg := &wire.JobRequestMessage{
		MessageType: wire.MessageJobRequest,
		Plan: wire.PlanReference{
			ScopeIdentifier: o.ProjectID,
			PlanType:        planType,
			Version:         planVersion,
			PlanID:          o.PlanID,
			PlanGroup:       fmt.Sprintf("%s:%s:%d", planType, o.ProjectID, o.BuildID),
			ArtifactURI:     fmt.Sprintf("vstfs:///Build/Build/%d", o.BuildID),
			Definition:      rawJSON(map[string]any{"id": o.DefinitionID, "name": o.DefinitionName}),
			Owner:           rawJSON(map[string]any{"id": o.BuildID, "name": buildNumber}),
		},
		Timeline:       wire.TimelineReference{ID: o.PlanID, ChangeID: 1},
		JobID:          jobID,
		JobDisplayName: jd.displayName,
		JobName:        defaultJobName,
		RequestID:      0, // the emulator assigns it when it queues
		LockedUntil:    "0001-01-01T00:00:00",
		Resources:      wire.JobResources{Repositories: repos},
		Variables:      c.jobVars(c.serviceVars(jd, jobID, buildNumber, self), jd),
		Steps:          steps,
		Workspace:      &wire.WorkspaceOptions{Clean: jd.clean},
	}
	return &Job{
		Name:                   jd.name,
		DisplayName:            jd.displayName,
		DependsOn:              c.canonicalJobNames(jd.dependsOn),
		Condition:              jd.condition,
		ContinueOnError:        jd.contOnError,
		TimeoutInMinutes:       jd.timeout,
		CancelTimeoutInMinutes: jd.cancelTimeout,
		Message:                msg,
	}
}

// canonicalJobNames spells dependsOn entries as the jobs are declared (the
// service matches job names case-insensitively).
func (c *compiler) canonicalJobNames(deps []string) []string {
	var out []string
	for _, d := range deps {
		for _, jd := range c.jobs {
			if strings.EqualFold(jd.name, d) {
				d = jd.name
				break
			}
		}
		out = append(out, d)
	}
	return out
}

// repo looks an alias up in Options.Repositories, case-insensitively.
func (c *compiler) repo(alias string) (Repo, bool) {
	if r, ok := c.opts.Repositories[alias]; ok {
		return r, true
	}
	for k, r := range c.opts.Repositories {
		if strings.EqualFold(k, alias) {
			return r, true
		}
	}
	return Repo{}, false
}

// jobRepositories resolves the checkout steps' repositories and returns the
// job's repository resources: self (whenever the emulator has it, as the
// service always sends the pipeline's own repository) and every other
// repository the job checks out.
func (c *compiler) jobRepositories(jd *jobDef, drafts []*draft) []wire.RepositoryResource {
	var out []wire.RepositoryResource
	added := map[string]bool{}
	if r, ok := c.repo(selfAlias); ok && r.URL != "" {
		out = append(out, c.selfResource(r))
		added[selfAlias] = true
	}
	for _, d := range drafts {
		if !d.isCheckout() {
			continue
		}
		alias := d.repo
		if strings.EqualFold(alias, selfAlias) {
			d.step.Inputs["repository"] = selfAlias
			if added[selfAlias] {
				continue
			}
			if d.implicit {
				c.errf(d.node, "job %q checks out self implicitly, but the emulator was given no URL for the self repository (Options.Repositories[\"self\"]); pass it, or add \"- checkout: none\" as the job's first step", jd.name)
			} else {
				c.errf(d.node, "job %q checks out self, but the emulator was given no URL for the self repository (Options.Repositories[\"self\"])", jd.name)
			}
			continue
		}
		if strings.Contains(alias, "://") || strings.Contains(alias, "@") {
			c.errf(d.node, "inline repository references (%q) are not supported by the emulator; declare the repository under resources.repositories and check out its alias", alias)
			continue
		}
		decl := c.repos[strings.ToLower(alias)]
		if decl == nil {
			c.errf(d.node, "checkout of %q: there is no repository resource with that alias; declare it under resources.repositories", alias)
			continue
		}
		d.step.Inputs["repository"] = decl.alias
		if added[strings.ToLower(decl.alias)] {
			continue
		}
		r, ok := c.repo(decl.alias)
		if !ok || r.URL == "" {
			c.errf(d.node, "checkout of %q: the emulator was given no URL for this repository (Options.Repositories[%q])", decl.alias, decl.alias)
			continue
		}
		out = append(out, c.declaredResource(decl, r))
		added[strings.ToLower(decl.alias)] = true
	}
	return out
}

// selfResource is the self repository as in the L1 sample's resources.
func (c *compiler) selfResource(r Repo) wire.RepositoryResource {
	name := selfName(r)
	ref := normalizeRef(r.Ref)
	props := map[string]any{
		"id":              repoID(r, name),
		"type":            "Git",
		"name":            name,
		"project":         c.opts.ProjectID,
		"defaultBranch":   ref,
		"ref":             ref,
		"url":             r.URL,
		"checkoutOptions": map[string]any{},
	}
	if r.Commit != "" {
		props["version"] = r.Commit
	}
	if vi := versionInfo(r); vi != nil {
		props["versionInfo"] = vi
	}
	return wire.RepositoryResource{
		Alias:      selfAlias,
		Endpoint:   &wire.ResourceReference{Name: wire.SystemConnectionName},
		Properties: rawProps(props),
	}
}

// declaredResource is a resources.repositories entry of type git (Azure
// Repos), reached through the job's own connection like self.
func (c *compiler) declaredResource(d *repoDecl, r Repo) wire.RepositoryResource {
	name := r.Name
	if name == "" {
		name = d.name
	}
	project := c.opts.ProjectID
	if i := strings.IndexByte(d.name, '/'); i > 0 && !strings.EqualFold(d.name[:i], c.opts.ProjectName) {
		project = nameUUID("project/" + strings.ToLower(d.name[:i]))
	}
	ref := d.ref
	if ref == "" {
		ref = r.Ref
	}
	props := map[string]any{
		"id":              repoID(r, name),
		"type":            "Git",
		"name":            name,
		"project":         project,
		"ref":             normalizeRef(ref),
		"url":             r.URL,
		"checkoutOptions": map[string]any{},
	}
	if r.Commit != "" {
		props["version"] = r.Commit
	}
	return wire.RepositoryResource{
		Alias:      d.alias,
		Endpoint:   &wire.ResourceReference{Name: wire.SystemConnectionName},
		Properties: rawProps(props),
	}
}

// versionInfo is the commit's author and message; the agent's PII scrubber
// (A WorkerUtilties.ScrubPiiData) shows the shape.
func versionInfo(r Repo) map[string]string {
	if r.Author == "" && r.Message == "" {
		return nil
	}
	vi := map[string]string{}
	if r.Author != "" {
		vi["author"] = r.Author
	}
	if r.Message != "" {
		vi["message"] = r.Message
	}
	return vi
}

func selfName(r Repo) string {
	if r.Name != "" {
		return r.Name
	}
	if u, err := url.Parse(r.URL); err == nil && u.Path != "" {
		if base := strings.TrimSuffix(path.Base(strings.TrimRight(u.Path, "/")), ".git"); base != "" && base != "." && base != "/" {
			return base
		}
	}
	return selfAlias
}

func repoID(r Repo, name string) string {
	if r.ID != "" {
		return strings.ToLower(r.ID)
	}
	return nameUUID("repository/" + strings.ToLower(name))
}

// normalizeRef makes a branch name a full ref, as the service does for
// `ref: main`.
func normalizeRef(ref string) string {
	switch {
	case ref == "":
		return defaultRef
	case strings.HasPrefix(ref, "refs/"):
		return ref
	}
	return "refs/heads/" + ref
}

func rawProps(m map[string]any) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = rawJSON(v)
	}
	return out
}

// rawJSON marshals values built by this package (strings, ints, maps of
// them), which cannot fail.
func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("pipeline: marshal %T: %v", v, err))
	}
	return b
}

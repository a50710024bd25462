package devserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// The Build area: the builds the queued jobs belong to, with the two calls
// the agent's build.updatebuildnumber and build.addbuildtag commands make
// (rename, tag) and their GETs. A build is known from the first job message
// that names it (build.buildId in the plan's project).

// Exception type keys of the Build area.
const (
	exBuildNotFound   = "BuildNotFoundException"
	exProjectNotFound = "ProjectDoesNotExistException"
	// The service answers an invalid build number with TF209010 (its message
	// is in public pipeline logs); the type key is the emulator's guess.
	exBuildNumberFormat = "InvalidBuildNumberException"
)

// Build is a build (pipeline run) as the emulator's Build area holds it.
type Build struct {
	ProjectID string   // the project GUID, lower case
	ID        int      // build.buildId
	Number    string   // the build number (run name); ##vso[build.updatebuildnumber] changes it
	Tags      []string // case-insensitively unique, sorted
	Changed   time.Time
}

type buildState struct {
	Build
	projectName string
	planID      string
}

// buildTable holds the builds, keyed by lower-case "project/id". Its zero
// value is ready to use; Server.mu guards it.
type buildTable struct {
	byKey map[string]*buildState
}

func buildKey(project string, id int) string {
	return strings.ToLower(project) + "/" + strconv.Itoa(id)
}

func (t *buildTable) get(project string, id int) *buildState {
	return t.byKey[buildKey(project, id)]
}

// register records the build a queued job message belongs to, if it names
// one; a build already known keeps its state (a later job of the same run).
func (t *buildTable) register(m *wire.JobRequestMessage, now time.Time) {
	raw, ok := lookupVar(m.Variables, "build.buildId")
	if !ok {
		return
	}
	id, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || id <= 0 {
		return
	}
	project := strings.ToLower(m.Plan.ScopeIdentifier)
	if t.get(project, id) != nil {
		return
	}
	if t.byKey == nil {
		t.byKey = map[string]*buildState{}
	}
	number, _ := lookupVar(m.Variables, "build.buildNumber")
	name, _ := lookupVar(m.Variables, "system.teamProject")
	t.byKey[buildKey(project, id)] = &buildState{
		Build:       Build{ProjectID: project, ID: id, Number: number, Tags: []string{}, Changed: now.UTC()},
		projectName: name, planID: m.Plan.PlanID,
	}
}

func lookupVar(vars map[string]wire.VariableValue, name string) (string, bool) {
	for k, v := range vars {
		if strings.EqualFold(k, name) {
			return v.Value, true
		}
	}
	return "", false
}

func (b *buildState) snapshot() Build {
	c := b.Build
	c.Tags = append([]string{}, b.Tags...)
	return c
}

// Build returns a build of a project by id.
func (s *Server) Build(projectID string, buildID int) (Build, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.builds.get(projectID, buildID); b != nil {
		return b.snapshot(), true
	}
	return Build{}, false
}

// Build returns the build the job belongs to, if its message names one.
func (h *Job) Build() (Build, bool) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	raw, ok := lookupVar(h.j.msg.Variables, "build.buildId")
	if !ok {
		return Build{}, false
	}
	id, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil {
		return Build{}, false
	}
	if b := h.s.builds.get(h.j.plan.scope, id); b != nil {
		return b.snapshot(), true
	}
	return Build{}, false
}

// handleBuild serves the builds and tags routes. Like the plan routes it
// takes the per-job access token, valid for the job's own project.
func (s *Server) handleBuild(q *request) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, aerr := s.jobCaller(q, "the build routes", "update builds")
	if aerr != nil {
		return aerr
	}
	project := q.vals["project"]
	if job == nil || !strings.EqualFold(project, job.plan.scope) {
		s.violation(job, "the access token of job %s was used for project %q", q.p.token.jobID, project)
		return notFound(exProjectNotFound, "TF200016: The following project does not exist: %s. Verify that the name of the project is correct and that the project exists on the specified Azure DevOps Server.", project)
	}
	raw, ok := q.vals["buildId"]
	if !ok {
		return methodNotAllowed(q.r)
	}
	id, err := strconv.Atoi(raw)
	if err != nil {
		return badRequest("The build id '%s' is not a number.", raw)
	}
	b := s.builds.get(project, id)
	if b == nil {
		return notFound(exBuildNotFound, "The requested build %s could not be found.", raw)
	}
	switch q.loc.ResourceName {
	case "builds":
		return s.buildRoute(q, b)
	case "tags":
		return s.tagsRoute(q, b)
	}
	return notFound(exResourceNotFound, "No handler for %s.", q.loc.ResourceName)
}

// jobCaller is the job whose access token made the call (nil when the job
// is gone). Routes the agent calls with the job's connection refuse any other
// credential, and note it as a violation. s.mu must be held.
func (s *Server) jobCaller(q *request, routes, permission string) (*jobState, *apiError) {
	if q.p.kind != kindJob {
		s.violation(nil, "%s %s used a %s; %s take the job's access token from SystemVssConnection", q.r.Method, q.r.URL.Path, q.p.kind, routes)
		return nil, accessDenied("Access denied. %s does not have permission to %s.", q.p.displayName, permission)
	}
	return s.jobs[q.p.token.jobID], nil
}

// buildRoute: GET the build, PATCH it (only buildNumber is applied).
func (s *Server) buildRoute(q *request, b *buildState) *apiError {
	switch q.r.Method {
	case http.MethodGet:
		q.reply(http.StatusOK, s.buildJSON(b))
		return nil
	case http.MethodPatch:
	default:
		return methodNotAllowed(q.r)
	}
	var in struct {
		ID          *int    `json:"id"`
		BuildNumber *string `json:"buildNumber"`
		Project     *struct {
			ID string `json:"id"`
		} `json:"project"`
	}
	if err := json.Unmarshal(trimBOM(q.body), &in); err != nil {
		return badRequest("The request body is not a build: %v", err)
	}
	if in.ID != nil && *in.ID != b.ID {
		return badRequest("The build id in the request body (%d) does not match the build id in the URL (%d).", *in.ID, b.ID)
	}
	if in.Project != nil && in.Project.ID != "" && !strings.EqualFold(in.Project.ID, b.ProjectID) {
		return badRequest("The project in the request body (%s) does not match the project in the URL (%s).", in.Project.ID, b.ProjectID)
	}
	if in.BuildNumber != nil {
		n := *in.BuildNumber
		if !validBuildNumber(n) {
			return errf(http.StatusBadRequest, exBuildNumberFormat, "TF209010: The build number format %s contains invalid character(s), is too long, or ends with '.'. The maximum length of a build number is 255 characters. Characters which are not allowed include '\"', '/', ':', '<', '>', '\\', '|', '?', '@', and '*'.", n)
		}
		if n != b.Number {
			b.Number = n
			b.Changed = q.now.UTC()
		}
	}
	q.reply(http.StatusOK, s.buildJSON(b))
	return nil
}

// validBuildNumber applies the documented run number rules: at most 255
// characters, none of "/:<>\|?@*, not ending in '.', not blank.
func validBuildNumber(n string) bool {
	return strings.TrimSpace(n) != "" && len([]rune(n)) <= 255 && !strings.ContainsAny(n, "\"/:<>\\|?@*") && !strings.HasSuffix(n, ".")
}

// tagsRoute: GET the tags, PUT …/tags/{tag}, POST …/tags with a JSON array,
// DELETE …/tags/{tag}. Every answer is the build's tag list.
func (s *Server) tagsRoute(q *request, b *buildState) *apiError {
	tag, hasTag := q.vals["tag"]
	switch {
	case q.r.Method == http.MethodGet && !hasTag:
	case q.r.Method == http.MethodPut && hasTag:
		if err := b.addTags(q.now, tag); err != nil {
			return err
		}
	case q.r.Method == http.MethodPost && !hasTag:
		var tags []string
		if err := json.Unmarshal(trimBOM(q.body), &tags); err != nil || tags == nil {
			return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. (Parameter 'tags'): the body must be a JSON array of tags")
		}
		if err := b.addTags(q.now, tags...); err != nil {
			return err
		}
	case q.r.Method == http.MethodDelete && hasTag:
		out := b.Tags[:0]
		for _, t := range b.Tags {
			if !strings.EqualFold(t, strings.TrimSpace(tag)) {
				out = append(out, t)
			}
		}
		b.Tags = out
		b.Changed = q.now.UTC()
	default:
		return methodNotAllowed(q.r)
	}
	q.reply(http.StatusOK, collection(append([]string{}, b.Tags...)))
	return nil
}

// addTags adds tags (trimmed) not already there in any case, keeping the list
// sorted case-insensitively.
func (b *buildState) addTags(now time.Time, tags ...string) *apiError {
	for _, t := range tags {
		if strings.TrimSpace(t) == "" {
			return badRequest("A build tag cannot be empty.")
		}
	}
	for _, t := range tags {
		t = strings.TrimSpace(t)
		dup := false
		for _, x := range b.Tags {
			dup = dup || strings.EqualFold(x, t)
		}
		if !dup {
			b.Tags = append(b.Tags, t)
			b.Changed = now.UTC()
		}
	}
	sort.SliceStable(b.Tags, func(i, j int) bool { return strings.ToLower(b.Tags[i]) < strings.ToLower(b.Tags[j]) })
	return nil
}

// buildJSON is the Build as the service returns it, reduced to the fields
// the emulator knows.
func (s *Server) buildJSON(b *buildState) map[string]any {
	status := "inProgress"
	if p := s.plans[b.planID]; p != nil && len(p.jobs) > 0 {
		done := true
		for _, j := range p.jobs {
			done = done && j.state.terminal()
		}
		if done {
			status = "completed"
		}
	}
	id := strconv.Itoa(b.ID)
	return map[string]any{
		"id":              b.ID,
		"buildNumber":     b.Number,
		"status":          status,
		"uri":             "vstfs:///Build/Build/" + id,
		"url":             s.orgURL + "/" + b.ProjectID + "/_apis/build/Builds/" + id,
		"tags":            append([]string{}, b.Tags...),
		"lastChangedDate": b.Changed.Format(time.RFC3339Nano),
		"project": map[string]any{
			"id": b.ProjectID, "name": b.projectName, "state": "wellFormed", "visibility": "private",
			"url": s.orgURL + "/_apis/projects/" + b.ProjectID,
		},
		"orchestrationPlan": map[string]any{"planId": b.planID},
		"_links": map[string]any{
			"self": map[string]string{"href": s.orgURL + "/" + b.ProjectID + "/_apis/build/Builds/" + id},
			"web":  map[string]string{"href": fmt.Sprintf("%s/%s/_build/results?buildId=%s", s.orgURL, b.ProjectID, id)},
		},
	}
}

// Package pipeline compiles a subset of Azure Pipelines YAML into the job
// messages the service sends to agents (wire.JobRequestMessage), shaped like
// the real service's: the model is the job message the official agent keeps
// as test data (microsoft/azure-pipelines-agent src/Test/L1/Worker/
// L1TestBase.cs JobMessageTemplate, captured from a live service; a copy is
// testdata/jobmessages/l1-checkout-cmdline.json at the module root), read
// together with ../shared/protocol/worker.md §1–§2.
//
// Supported: top-level steps (one job) or jobs (dependsOn, condition,
// variables, timeouts, workspace); variables in map and list form; repository
// resources of type git; the script, bash, pwsh, powershell, checkout and task
// steps with the keys the official YAML schema gives them. Everything else is
// an error naming the key and its line, so a pipeline never silently means
// something different here than on the service.
//
// Decisions where the service's behaviour is not visible from outside (each
// is marked UNCONFIRMED in worker.md §10 or below):
//
//   - Ids: stage, phase, job and step ids follow the service's
//     TimelineRecordIdGenerator over instance names (see ids.go); they
//     reproduce every id in the L1 sample. A job's id is therefore the same
//     in every run of a pipeline, as on the service; the plan id tells runs
//     apart.
//   - Job naming: a job is a "phase" named by `job:` (or "Job" for top-level
//     steps) holding one job instance "__default": jobName "__default",
//     system.phaseName the YAML name, system.jobIdentifier "<phase>.__default"
//     (L1 sample; runner.server MessageController sets the same).
//   - Step reference names: a given `name:` is kept; otherwise the task name
//     ("CmdLine", "Bash", "PowerShell", "Checkout"), made unique within the
//     job by appending 1, 2, … ("CmdLine", "CmdLine1"). The bare first name is
//     confirmed by the L1 sample (CmdLine, Checkout); the numbering after it
//     is UNCONFIRMED (runner.server's Azure flavour of ReferenceNameBuilder
//     appends a number starting at 1).
//   - Display names: shorthand steps show the task name ("CmdLine" in the L1
//     sample), `task:` steps the task's instanceNameFormat ("Command Line
//     Script"), checkout "Checkout" (the agent then shows "Checkout repo@branch
//     to s").
//   - Implicit checkout: a job without a checkout step gets one at index 0
//     exactly as in the L1 sample: inputs {repository: self} only, condition
//     "true", name and displayName "Checkout". Whether today's service also
//     injects fetchDepth (the "shallow fetch" pipeline setting) is UNCONFIRMED.
//   - `checkout: none` sends no checkout step (runner.server does this; the
//     agent's plugin would fail on alias "none"). UNCONFIRMED for the service.
//   - Steps with `enabled: false` are not sent (the agent asserts every step
//     it gets is enabled); names are assigned after they are dropped.
//   - Steps without a condition carry "succeeded()"; jobs default to
//     "succeeded()" too.
package pipeline

import (
	"fmt"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Pipeline is a compiled pipeline: one job message per job.
type Pipeline struct {
	// Name is the run's name (build number): Options.BuildNumber, else the
	// YAML `name:` format evaluated, else the service's default format
	// $(Date:yyyyMMdd)$(Rev:.r).
	Name string `json:"name"`
	// PlanID is the plan every job belongs to; the timeline id is the same
	// (build plans share their id with their timeline, as in the L1 sample).
	PlanID string `json:"planId"`
	Jobs   []*Job `json:"jobs"`
}

// Job is one job of the pipeline and the message that runs it.
type Job struct {
	Name        string   `json:"name"`        // YAML job name, "Job" for top-level steps; dependsOn refers to it
	DisplayName string   `json:"displayName"` // displayName, defaulting to Name
	DependsOn   []string `json:"dependsOn"`   // job names, in YAML order
	Condition   string   `json:"condition"`   // default "succeeded()"; evaluated by the emulator, not the agent
	// ContinueOnError, TimeoutInMinutes (default 60; 0 means no limit) and
	// CancelTimeoutInMinutes (default 5) are enforced by the server, so they
	// are not in the message.
	ContinueOnError        bool                    `json:"continueOnError"`
	TimeoutInMinutes       int                     `json:"timeoutInMinutes"`
	CancelTimeoutInMinutes int                     `json:"cancelTimeoutInMinutes"`
	Message                *wire.JobRequestMessage `json:"message"`
}

// Repo is a repository the emulator serves; the compiler turns it into a
// repository resource. URL is required for every repository a job checks out.
type Repo struct {
	URL    string
	Commit string // resource version; empty lets the agent check out Ref
	Ref    string // default "refs/heads/main"; a bare branch name gets refs/heads/
	Name   string // default: the YAML name, else the URL's last path segment
	ID     string // default: a stable id derived from Name
	// Author and Message of Commit, for build.sourceVersionAuthor /
	// build.sourceVersionMessage and versionInfo (self only); omitted when empty.
	Author  string
	Message string
}

// Identity is a user as the build.* variables name it.
type Identity struct {
	Name, ID, Email string
}

// Options are the facts of a run the YAML does not hold. Zero values get
// defaults (see withDefaults), so Options{Repositories: …} is enough.
type Options struct {
	CollectionID      string // system.collectionId (GUID)
	ProjectID         string // plan.scopeIdentifier, system.teamProjectId (GUID)
	ProjectName       string // system.teamProject, default "goagent"
	DefinitionID      int    // default 1
	DefinitionName    string // default ProjectName
	DefinitionVersion int    // default 1
	BuildID           int    // default 1
	BuildNumber       string // overrides the evaluated `name:`
	Revision          int    // $(Rev:r), default 1
	ContainerID       int64  // build.containerId, default BuildID
	PlanID            string // default: derived from collection, project and build id
	StartTime         time.Time
	Reason            string // build.reason, default "Manual"
	RequestedFor      Identity
	QueuedBy          Identity // default RequestedFor
	Debug             bool     // system.debug

	// Repositories by alias. "self" is the repository the pipeline file lives
	// in; it is required when a job checks it out (explicitly or implicitly).
	Repositories map[string]Repo
	// Variables override pipeline and job variables (goagent exec --var k=v).
	Variables map[string]string
	// Secrets become secret variables; their values never appear in errors.
	Secrets map[string]string
}

const (
	defaultCollectionID = "7c1a3a10-3c5e-4a7e-9d8b-0b7c3f1f6a01"
	defaultProjectID    = "4f8e0c7e-2a55-4b8a-9f4c-9d4a6c2e5b02"
	defaultProjectName  = "goagent"

	defaultJobTimeout       = 60 // minutes (SDK-decomp DefaultJobTimeoutInMinutes)
	defaultJobCancelTimeout = 5
	defaultCondition        = "succeeded()"

	// planVersion ≥ 8 makes the agent raise the JobCompleted event
	// (A Util/PlanUtil.cs); 9 is what the L1 sample carries.
	planVersion = 9
	planType    = "Build"

	defaultStageName = "__default"
	defaultJobName   = "__default"
	implicitJobName  = "Job"
	selfAlias        = "self"
	defaultRef       = "refs/heads/main"
)

func (o Options) withDefaults() (Options, error) {
	if o.CollectionID == "" {
		o.CollectionID = defaultCollectionID
	}
	if o.ProjectID == "" {
		o.ProjectID = defaultProjectID
	}
	if o.ProjectName == "" {
		o.ProjectName = defaultProjectName
	}
	if o.DefinitionID == 0 {
		o.DefinitionID = 1
	}
	if o.DefinitionName == "" {
		o.DefinitionName = o.ProjectName
	}
	if o.DefinitionVersion == 0 {
		o.DefinitionVersion = 1
	}
	if o.BuildID == 0 {
		o.BuildID = 1
	}
	if o.Revision == 0 {
		o.Revision = 1
	}
	if o.ContainerID == 0 {
		o.ContainerID = int64(o.BuildID)
	}
	if o.PlanID == "" {
		o.PlanID = nameUUID(fmt.Sprintf("plan/%s/%s/%d", strings.ToLower(o.CollectionID), strings.ToLower(o.ProjectID), o.BuildID))
	}
	if o.StartTime.IsZero() {
		o.StartTime = time.Now()
	}
	if o.Reason == "" {
		o.Reason = "Manual"
	}
	if o.RequestedFor.Name == "" {
		o.RequestedFor.Name = "goagent"
	}
	if o.RequestedFor.ID == "" {
		o.RequestedFor.ID = nameUUID("identity/" + o.RequestedFor.Name)
	}
	if o.RequestedFor.Email == "" {
		o.RequestedFor.Email = o.RequestedFor.Name + "@localhost"
	}
	if o.QueuedBy == (Identity{}) {
		o.QueuedBy = o.RequestedFor
	}
	for _, g := range []struct{ field, v string }{
		{"CollectionID", o.CollectionID}, {"ProjectID", o.ProjectID}, {"PlanID", o.PlanID},
	} {
		if !isGUID(g.v) {
			return o, fmt.Errorf("options: %s %q is not a GUID (8-4-4-4-12 hex digits)", g.field, g.v)
		}
	}
	if o.DefinitionID < 0 || o.BuildID < 0 || o.Revision < 0 {
		return o, fmt.Errorf("options: DefinitionID, BuildID and Revision must not be negative")
	}
	return o, nil
}

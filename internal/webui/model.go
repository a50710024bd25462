package webui

import (
	"strings"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// Run is a pipeline run as the page shows it: the jobs of one orchestration
// plan, summarised.
type Run struct {
	ID       string     `json:"id"`                 // the plan id
	Name     string     `json:"name"`               // build number, else the first job's name
	Pipeline string     `json:"pipeline,omitempty"` // build.definitionName
	State    string     `json:"state"`              // queued, running or completed
	Result   string     `json:"result,omitempty"`   // set once every job ended
	Jobs     int        `json:"jobs"`
	Done     int        `json:"done"` // jobs that ended
	Errors   int        `json:"errors"`
	Warnings int        `json:"warnings"`
	Queued   *time.Time `json:"queued,omitempty"`
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
}

// Job is one job request of a run.
type Job struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	RequestID int64      `json:"requestId"`
	State     string     `json:"state"` // devserver.JobState
	Result    string     `json:"result,omitempty"`
	Agent     int        `json:"agent,omitempty"`
	Queued    *time.Time `json:"queued,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Finished  *time.Time `json:"finished,omitempty"`
	Records   []Record   `json:"records,omitempty"` // snapshots only
}

// Record is a timeline record (the job's own, or a step's).
type Record struct {
	ID        string     `json:"id"`
	ParentID  string     `json:"parentId,omitempty"`
	Type      string     `json:"type"` // Job, Task
	Name      string     `json:"name"`
	Order     int        `json:"order"`
	State     string     `json:"state,omitempty"`  // pending, inProgress, completed
	Result    string     `json:"result,omitempty"` // succeeded, failed, …
	Start     *time.Time `json:"start,omitempty"`
	Finish    *time.Time `json:"finish,omitempty"`
	Errors    int        `json:"errors,omitempty"`
	Warnings  int        `json:"warnings,omitempty"`
	Issues    []Issue    `json:"issues,omitempty"`
	Log       int        `json:"log,omitempty"` // log id, 0 until uploaded
	Operation string     `json:"operation,omitempty"`

	change int // the timeline's changeId when this version was written
}

// Issue is an error or warning a step reported.
type Issue struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func str[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}

func num(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func when(t *azuredevops.Time) *time.Time {
	if t == nil || t.Time.IsZero() {
		return nil
	}
	// Years JSON cannot carry (time.Time.MarshalJSON refuses them) are
	// dropped: whatever an agent sends, messages encode.
	v := t.Time.UTC()
	if v.Year() < 1 || v.Year() > 9999 {
		return nil
	}
	return &v
}

// recordOf converts the emulator's merged record.
func recordOf(r *taskagent.TimelineRecord) Record {
	out := Record{
		Type: str(r.Type), Name: str(r.Name), Order: num(r.Order),
		State: str(r.State), Result: str(r.Result),
		Start: when(r.StartTime), Finish: when(r.FinishTime),
		Errors: num(r.ErrorCount), Warnings: num(r.WarningCount),
		Operation: str(r.CurrentOperation), change: num(r.ChangeId),
	}
	if r.Id != nil {
		out.ID = r.Id.String()
	}
	if r.ParentId != nil {
		out.ParentID = r.ParentId.String()
	}
	if r.Log != nil {
		out.Log = num(r.Log.Id)
	}
	if r.Issues != nil {
		for _, is := range *r.Issues {
			out.Issues = append(out.Issues, Issue{Type: str(is.Type), Message: str(is.Message)})
		}
	}
	return out
}

// jobOf reads a job's request state from the emulator.
func jobOf(h *devserver.Job, name string) Job {
	req := h.Request()
	j := Job{
		ID: h.ID(), Name: name, RequestID: h.RequestID(),
		State: string(h.State()), Result: h.Result(), Agent: h.AgentID(),
		Queued: when(req.QueueTime), Finished: when(req.FinishTime),
	}
	if j.Started = when(req.ReceiveTime); j.Started == nil {
		j.Started = when(req.AssignTime)
	}
	return j
}

func sameJob(a, b Job) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.State == b.State && a.Result == b.Result && a.Agent == b.Agent &&
		eq(a.Queued, b.Queued) && eq(a.Started, b.Started) && eq(a.Finished, b.Finished)
}

func terminal(state string) bool {
	return state == string(devserver.JobCompleted) || state == string(devserver.JobAbandoned)
}

// resultRank orders results from best to worst, as the run's result is its
// worst job's (a build with a failed job failed; one with issues only
// partially succeeded).
func resultRank(r string) int {
	switch strings.ToLower(r) {
	case "succeeded":
		return 1
	case "skipped":
		return 0
	case "succeededwithissues":
		return 2
	case "canceled":
		return 3
	case "failed", "abandoned":
		return 4
	}
	return 4 // an unknown result is not a success
}

// variable looks a job message variable up case-insensitively. Secret
// variables are never read: the page shows nothing the agent would mask.
func variable(vars map[string]wire.VariableValue, name string) string {
	for k, v := range vars {
		if strings.EqualFold(k, name) && !v.IsSecret {
			return v.Value
		}
	}
	return ""
}

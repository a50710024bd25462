package jobs

import (
	"context"
	"time"
)

// Reporter is how the runner tells the service about a job: timeline
// records, console lines, attachments and completion. The runner knows
// nothing about HTTP; internal/jobs/report implements this over the job's own
// REST connection, tests use an in-memory one.
//
// UpdateRecord and WriteLine must not block on the network: the reporter
// queues, batches and retries on its own goroutines, keeping order, and only
// Finish waits for everything to be delivered.
type Reporter interface {
	// UpdateRecord publishes the full current state of a record. The
	// reporter may coalesce successive updates of the same record.
	UpdateRecord(rec Record)
	// WriteLine appends one console line (already masked) to a record's log.
	// For a step (Task) record the line also goes to the job log and to the
	// live console feed with that step's id; for the Job record it goes to
	// the job log and feed only.
	WriteLine(recordID string, line string)
	// WriteLines is WriteLine for each line in order, in one call: the
	// reporter can take its locks and clock once for the batch. The lines of
	// one call may share one timestamp. The reporter must not keep the slice.
	WriteLines(recordID string, lines []string)
	// UpdateDetailRecord publishes the current state of a record on a step's
	// detail timeline (##vso[task.logdetail]). The step's record names the
	// timeline in Record.Details and is published first; the reporter
	// creates the timeline on the service before sending its records, and may
	// coalesce successive updates of the same record.
	UpdateDetailRecord(timelineID string, rec DetailRecord)
	// Attach uploads a file as a record attachment (task.addattachment,
	// task.uploadfile, task.uploadsummary, build.uploadlog).
	Attach(recordID, attachmentType, name, path string)
	// Finish drains every queue, uploads the remaining log pages, sends the
	// final record updates, and reports completion (the JobCompleted plan
	// event for plan version >= 8). It returns an error when the job's
	// outputs (record variables) or the completion could not be delivered.
	Finish(ctx context.Context, c Completion) error
}

// Completion is the end of a job.
type Completion struct {
	Result            string // succeeded|succeededWithIssues|failed|canceled|skipped|abandoned
	AgentShuttingDown bool
	FinishTime        time.Time
}

// Record is the runner's view of one timeline record (worker.md §7.2).
type Record struct {
	ID               string
	ParentID         string // the job id for Task records; empty for the Job record
	Type             string // "Job" or "Task"
	Name             string
	RefName          string
	Order            int // 0 for the Job record
	State            string
	Result           string // empty until completed
	ResultCode       string
	StartTime        time.Time
	FinishTime       time.Time
	PercentComplete  int
	CurrentOperation string
	ErrorCount       int
	WarningCount     int
	Issues           []Issue
	Variables        map[string]RecordVariable
	WorkerName       string
	Attempt          int
	// Details is the id of the step's detail timeline (the record's
	// "details": {"id": …}), set when its first ##vso[task.logdetail] runs.
	Details string
}

// DetailRecord is a record of a step's detail timeline, as
// ##vso[task.logdetail] builds it (TaskDetailCommand): its fields are those
// the commands set so far, merged; empty strings, zero times and nil
// pointers were never set and are left out of the update, so that the
// service keeps what it has.
type DetailRecord struct {
	ID               string
	ParentID         string // may be the zero GUID, which the official agent sends as is
	Type             string
	Name             string
	Order            *int
	State            string
	Result           string
	StartTime        time.Time
	FinishTime       time.Time
	PercentComplete  *int
	CurrentOperation string
}

// Issue is an error or warning on a record.
type Issue struct {
	Type     string // "error" or "warning"
	Category string // "General" or "Code"
	Message  string
	Data     map[string]string
}

// RecordVariable is an output variable on a step record.
type RecordVariable struct {
	Value    string
	IsSecret bool
}

// Record states and results as the wire spells them.
const (
	StatePending    = "pending"
	StateInProgress = "inProgress"
	StateCompleted  = "completed"

	ResultSucceeded           = "succeeded"
	ResultSucceededWithIssues = "succeededWithIssues"
	ResultFailed              = "failed"
	ResultCanceled            = "canceled"
	ResultSkipped             = "skipped"
	ResultAbandoned           = "abandoned"
)

package listener

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/jobs/report"
)

// Engine runs jobs with the job engine (internal/jobs) and reports them over
// the job's own connection (internal/jobs/report).
type Engine struct {
	Runner   *jobs.Runner
	PagesDir string // log pages spool (official: _diag/pages)
	Logger   *slog.Logger
	// Report tunes the reporter (tests shorten cadences); Plan, JobID,
	// RequestID, PlanVersion and PagesDir are filled per job.
	Report report.Options
}

// RunJob implements JobRunner.
func (e *Engine) RunJob(ctx context.Context, job *Job) (string, error) {
	msg := job.Message
	plan := &azdo.Plan{
		Client:     job.Client,
		Scope:      msg.Plan.ScopeIdentifier,
		Hub:        msg.Plan.PlanType,
		PlanID:     msg.Plan.PlanID,
		TimelineID: msg.Timeline.ID,
	}
	o := e.Report
	o.Plan, o.JobID, o.RequestID, o.PlanVersion, o.PagesDir = plan, msg.JobID, msg.RequestID, msg.Plan.Version, e.PagesDir
	if o.Logger == nil {
		o.Logger = e.Logger
	}
	// The reporter outlives a cancelled job: it must still deliver the
	// canceled result.
	rep, err := report.New(context.WithoutCancel(ctx), o)
	if err != nil {
		return jobs.ResultFailed, fmt.Errorf("start reporting for job %s: %w", msg.JobID, err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case d := <-job.FeedInterval:
				rep.SetFeedInterval(d)
			case <-stop:
				return
			}
		}
	}()
	r := *e.Runner
	r.Agent.RunOnce = job.RunOnce
	return r.Run(ctx, jobs.Job{Message: msg, Reporter: rep, Hard: job.Hard, Build: report.NewBuildService(job.Client)})
}

var _ JobRunner = (*Engine)(nil)

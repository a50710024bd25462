package azdo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Plan addresses one orchestration plan's hub routes. Its client is the job's
// own: base URL from the SystemVssConnection endpoint, authenticated with the
// job's access token. The SDK's task.Client binds to a connection's static
// auth string and has no feed or plan-event calls, hence these.
type Plan struct {
	Client     *Client
	Scope      string // plan.scopeIdentifier (project id)
	Hub        string // plan.planType, used as the hub name
	PlanID     string
	TimelineID string
}

func (p *Plan) values(extra ...string) map[string]string {
	m := map[string]string{"scopeIdentifier": p.Scope, "hubName": p.Hub, "planId": p.PlanID}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// UpdateRecords PATCHes records of the job's timeline (the server merges
// by id).
func (p *Plan) UpdateRecords(ctx context.Context, records []taskagent.TimelineRecord) ([]taskagent.TimelineRecord, error) {
	return p.UpdateTimelineRecords(ctx, p.TimelineID, records)
}

// UpdateTimelineRecords PATCHes records of another timeline of the plan, such
// as a step's detail timeline, which must have been created first
// (TimelineNotFoundException otherwise).
func (p *Plan) UpdateTimelineRecords(ctx context.Context, timelineID string, records []taskagent.TimelineRecord) ([]taskagent.TimelineRecord, error) {
	var out collection[taskagent.TimelineRecord]
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPatch, Location: wire.LocationRecords, APIVersion: wire.APITask,
		RouteValues: p.values("timelineId", timelineID),
		Body:        collection[taskagent.TimelineRecord]{Count: len(records), Value: records},
	}, &out)
	return out.Value, err
}

// AppendFeed posts live console lines for a step to the job record's feed.
// The server orders and de-duplicates by startLine, so a retry is safe.
func (p *Plan) AppendFeed(ctx context.Context, recordID string, lines taskagent.TimelineRecordFeedLinesWrapper) error {
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationFeed, APIVersion: wire.APITask,
		RouteValues: p.values("timelineId", p.TimelineID, "recordId", recordID),
		Body:        lines, Retry: true,
	}, nil)
	return err
}

// CreateLog creates a log whose content is appended later.
func (p *Plan) CreateLog(ctx context.Context, path string) (*taskagent.TaskLog, error) {
	var out taskagent.TaskLog
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationLogs, APIVersion: wire.APITask,
		RouteValues: p.values(),
		Body:        wire.TaskLogCreate{Path: path},
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// AppendLog uploads log content. Not retried: an append that reached the
// server twice would duplicate lines; callers re-create the page instead.
func (p *Plan) AppendLog(ctx context.Context, logID int, content []byte) (*taskagent.TaskLog, error) {
	var out taskagent.TaskLog
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationLogs, APIVersion: wire.APITask,
		RouteValues: p.values("logId", strconv.Itoa(logID)),
		Body:        content, ContentType: "application/octet-stream",
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// RaiseEvent posts a plan event such as JobCompleted (worker.md §7.6).
func (p *Plan) RaiseEvent(ctx context.Context, ev wire.JobEvent) error {
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationPlanEvents, APIVersion: wire.APIPlanEvents,
		RouteValues: p.values(),
		Body:        ev, NoRetry: true,
	}, nil)
	return err
}

// ErrTimelineExists: CreateTimeline named a timeline the plan already has
// (TimelineExistsException). JobServerQueue takes it as created, as a create
// that reached the service before its answer was lost is.
var ErrTimelineExists = errors.New("timeline exists")

// CreateTimeline creates a (detail) timeline under the plan. Not retried by
// the client (a POST); the caller retries, and ErrTimelineExists tells it an
// earlier attempt got through.
func (p *Plan) CreateTimeline(ctx context.Context, id string) error {
	_, err := p.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationTimelines, APIVersion: wire.APITask,
		RouteValues: p.values(),
		Body:        map[string]any{"id": id},
	}, nil)
	if e, ok := errors.AsType[*Error](err); ok && e.TypeKey == "TimelineExistsException" {
		return fmt.Errorf("create timeline %s: %w: %w", id, ErrTimelineExists, err)
	}
	return err
}

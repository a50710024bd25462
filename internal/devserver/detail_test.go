package devserver_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// detailRecords PATCHes records of a timeline other than the job's.
func (w *worker) detailRecords(timelineID string, recs ...map[string]any) answer {
	w.t.Helper()
	return w.plan("PATCH", "timelines/"+timelineID+"/records", mustJSON(w.t, map[string]any{"count": len(recs), "value": recs}), "")
}

// TestDetailTimelines: a detail timeline is created once (a second create
// is TimelineExistsException, as JobServerQueue expects); records of a
// timeline never created are refused with TimelineNotFoundException; detail
// records are merged without the agent-behaviour checks of the job's
// timeline; the Go API finds them through the step record's details.
func TestDetailTimelines(t *testing.T) {
	s, w := startJob(t, devserver.Options{}, 0)
	sub := s.Subscribe(64)
	defer sub.Cancel()
	detail := uuid.NewString()
	step := uuid.NewString()
	parent, child := uuid.NewString(), uuid.NewString()

	wantError(t, w.detailRecords(detail, map[string]any{"id": parent, "name": "p", "type": "build"}), 404, "TimelineNotFoundException")
	if r := w.plan("POST", "timelines", mustJSON(t, map[string]any{"id": detail}), ""); r.status != 200 {
		t.Fatalf("create timeline: %s", r)
	}
	wantError(t, w.plan("POST", "timelines", mustJSON(t, map[string]any{"id": detail}), ""), 409, "TimelineExistsException")
	wantError(t, w.plan("POST", "timelines", mustJSON(t, map[string]any{"id": w.m.Timeline.ID}), ""), 409, "TimelineExistsException")

	w.mustRecords(map[string]any{"id": step, "parentId": w.m.JobID, "type": "Task", "name": "Step", "order": 1, "state": "inProgress",
		"details": map[string]any{"id": detail}})
	for _, recs := range [][]map[string]any{
		{{"id": parent, "name": "Parent", "type": "build", "state": "inProgress", "order": 1}},
		// A parent in another step's timeline; completed without result;
		// a state going back: what scripts can make the official agent send.
		{{"id": child, "parentId": uuid.NewString(), "name": "Child", "type": "test", "state": "completed", "percentComplete": 40}},
		{{"id": child, "state": "inProgress", "currentOperation": "again"}},
		{{"id": parent, "state": "completed", "result": "failed"}},
	} {
		if r := w.detailRecords(detail, recs...); r.status != 200 {
			t.Fatalf("detail records: %s", r)
		}
	}
	if v := w.job.Violations(); len(v) != 0 {
		t.Errorf("violations on a detail timeline: %q", v)
	}
	id, recs, ok := w.job.DetailTimeline(step)
	if !ok || id != detail || len(recs) != 2 {
		t.Fatalf("DetailTimeline = %q, %d records, %v", id, len(recs), ok)
	}
	if str(recs[0].Name) != "Parent" || string(*recs[0].State) != "completed" || string(*recs[0].Result) != "failed" || *recs[0].Order != 1 {
		t.Errorf("parent %+v", recs[0])
	}
	if str(recs[1].Name) != "Child" || string(*recs[1].State) != "inProgress" || *recs[1].PercentComplete != 40 || str(recs[1].CurrentOperation) != "again" {
		t.Errorf("child %+v", recs[1])
	}
	for _, r := range w.job.Timeline() {
		if r.Id.String() == parent || r.Id.String() == child {
			t.Errorf("detail record %s in the job's timeline", r.Id)
		}
	}
	if _, _, ok := w.job.DetailTimeline(w.m.JobID); ok {
		t.Error("the Job record names no detail timeline")
	}

	// Events: detail records have their own kind and name their timeline.
	detailEvents := 0
	for len(sub.C) > 0 {
		e := <-sub.C
		switch e.Kind {
		case devserver.EventDetailRecordUpdated:
			detailEvents++
			if e.TimelineID != detail || e.Record == nil || e.JobID != w.job.ID() {
				t.Errorf("detail event %+v", e)
			}
		case devserver.EventRecordUpdated:
			if e.TimelineID != w.m.Timeline.ID {
				t.Errorf("record event on timeline %s", e.TimelineID)
			}
		}
	}
	if detailEvents != 4 {
		t.Errorf("%d detail record events, want 4", detailEvents)
	}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

package jobs_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// detailScript creates a parent and a child detail record, moves the child
// along and completes it, and leaves the parent open.
var detailScript = strings.Join([]string{
	"echo '##vso[task.logdetail id=" + dParent + ";name=Build all;type=build;order=1]compiling'",
	"echo '##vso[task.logdetail id=" + dChild + ";parentid=" + dParent + ";name=Unit tests;type=test;order=2;progress=10]running'",
	"echo '##vso[task.logdetail id=" + dChild + ";progress=75]almost'",
	"echo '##vso[task.logdetail id=" + dChild + ";state=Completed;result=SucceededWithIssues]done'",
	"echo after",
}, "\n")

// TestEmulatorLogDetail: the step's detail timeline is created once, before
// its records and before the step record that names it; the records carry
// the merged fields; the open one is completed when the step ends. With
// the timeline create failing twice, it is retried and nothing is lost.
func TestEmulatorLogDetail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		faults int
	}{{"clean", 0}, {"timeline create fails twice", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, labOptions{})
			var fault *devserver.FaultHandle
			if tc.faults > 0 {
				fault = l.srv.Faults().Add(devserver.Fault{Method: http.MethodPost, Resource: "timelines", Status: http.StatusServiceUnavailable, Times: tc.faults})
			}
			j := l.queue(emuMessage(nil, stepSpec{name: "detailed", script: detailScript}, stepSpec{name: "plain", script: "echo plain"}))
			if res := l.wait(j); res != "succeeded" {
				t.Fatalf("result %s", res)
			}
			if fault != nil && fault.Hits() != tc.faults {
				t.Errorf("fault hit %d times, want %d", fault.Hits(), tc.faults)
			}
			tlID, recs, ok := j.DetailTimeline(stepID(0))
			if !ok || recs == nil {
				t.Fatalf("step record names detail timeline %q (ok %v), records %v", tlID, ok, recs)
			}
			if _, _, ok := j.DetailTimeline(stepID(1)); ok {
				t.Error("the step without logdetail names a detail timeline")
			}
			raw, _ := j.RecordJSON(stepID(0))
			var details struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw["details"], &details); err != nil || details.ID != tlID {
				t.Errorf("step record details %s", raw["details"])
			}
			if len(recs) != 2 {
				t.Fatalf("detail records %d, want 2", len(recs))
			}
			parent, child := recs[0], recs[1]
			if parent.Id.String() != dParent || str(parent.Name) != "Build all" || str(parent.Type) != "build" || num(parent.Order) != 1 ||
				parent.ParentId != nil || state(parent) != "completed" || result(parent) != "succeeded" || num(parent.PercentComplete) != 100 ||
				str(parent.CurrentOperation) != "compiling" || parent.StartTime == nil || parent.FinishTime == nil {
				t.Errorf("parent %s", recordString(parent))
			}
			// Completing a known record without progress sets 100 over the
			// 75 it had (TaskDetailCommand fills the update, then it merges).
			if child.Id.String() != dChild || str(child.Name) != "Unit tests" || str(child.Type) != "test" || num(child.Order) != 2 ||
				child.ParentId == nil || child.ParentId.String() != dParent || state(child) != "completed" || result(child) != "succeededWithIssues" ||
				num(child.PercentComplete) != 100 || str(child.CurrentOperation) != "done" || child.StartTime == nil || child.FinishTime == nil {
				t.Errorf("child %s", recordString(child))
			}
			if log := logMessages(j, stepID(0)); !hasLine(log, "after") || strings.Contains(strings.Join(log, "\n"), "compiling") {
				t.Errorf("step log:\n%s", strings.Join(log, "\n"))
			}

			// The wire order: the create is tried before the PATCH of the step
			// record naming the timeline (JobServerQueue sends that record
			// even when the create failed); it succeeds exactly once, after
			// its failures, before any PATCH to the timeline.
			attempted, created, failed, namedAt, firstDetailAt := -1, -1, 0, -1, -1
			for i, ex := range l.srv.Recorder().Exchanges() {
				switch {
				case ex.Method == http.MethodPost && ex.Resource == "timelines":
					if attempted < 0 {
						attempted = i
					}
					if ex.Status != http.StatusOK {
						failed++
						continue
					}
					if created >= 0 {
						t.Errorf("timeline created twice")
					}
					created = i
				case ex.Method == http.MethodPatch && ex.Resource == "records" && strings.Contains(ex.Path, "/timelines/"+tlID+"/"):
					if firstDetailAt < 0 {
						firstDetailAt = i
					}
					if ex.Status != http.StatusOK {
						t.Errorf("detail PATCH answered %d: %s", ex.Status, ex.ResponseBody)
					}
				case ex.Method == http.MethodPatch && ex.Resource == "records" && namedAt < 0 && bytes.Contains(ex.RequestBody, []byte(`"details":{"id":"`+tlID+`"}`)):
					namedAt = i
				}
			}
			if created < 0 || failed != tc.faults || namedAt < 0 || firstDetailAt < 0 || attempted > namedAt || created > firstDetailAt {
				t.Errorf("create first tried at %d, done at %d after %d failures; step record naming it at %d; first detail PATCH at %d",
					attempted, created, failed, namedAt, firstDetailAt)
			}
			l.checkViolations()
		})
	}
}

func recordString(r taskagent.TimelineRecord) string {
	b, _ := json.Marshal(r)
	return string(b)
}

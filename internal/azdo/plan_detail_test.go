package azdo

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// UpdateTimelineRecords addresses the timeline it is given, not the job's.
func TestUpdateTimelineRecordsRoute(t *testing.T) {
	const detail = "11111111-2222-4333-8444-555555555555"
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		writeJSON(w, http.StatusOK, map[string]any{"count": 0, "value": []any{}})
	})
	c, _ := newClient(t, f, StaticToken{Scheme: "Bearer", Value: "t"}, Options{})
	p := &Plan{Client: c, Scope: tScope, Hub: "build", PlanID: tPlan, TimelineID: tTimeline}
	id := uuid.New()
	if _, err := p.UpdateTimelineRecords(testContext(t), detail, []taskagent.TimelineRecord{{Id: &id}}); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	want := "/org/" + tScope + "/_apis/distributedtask/hubs/build/plans/" + tPlan + "/timelines/" + detail + "/records"
	if len(reqs) != 1 || reqs[0].Method != http.MethodPatch || reqs[0].Path != want {
		t.Fatalf("requests %+v, want PATCH %s", reqs, want)
	}
}

// CreateTimeline tells "the timeline exists" (an earlier create got
// through) from other failures, by the service's typeKey.
func TestCreateTimelineExists(t *testing.T) {
	for _, tc := range []struct {
		status  int
		typeKey string
		exists  bool
	}{
		{http.StatusConflict, "TimelineExistsException", true},
		{http.StatusConflict, "SomethingElseException", false},
		{http.StatusNotFound, "TaskOrchestrationPlanNotFoundException", false},
		{http.StatusInternalServerError, "", false},
	} {
		f := newFake(t, "/org")
		f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
			vssError(w, tc.status, tc.typeKey, "no")
		})
		c, _ := newClient(t, f, StaticToken{Scheme: "Bearer", Value: "t"}, Options{Retries: 1})
		p := &Plan{Client: c, Scope: tScope, Hub: "build", PlanID: tPlan, TimelineID: tTimeline}
		err := p.CreateTimeline(testContext(t), "11111111-2222-4333-8444-555555555555")
		if err == nil {
			t.Fatalf("%d %s: no error", tc.status, tc.typeKey)
		}
		if errors.Is(err, ErrTimelineExists) != tc.exists {
			t.Errorf("%d %s: %v; exists = %v, want %v", tc.status, tc.typeKey, err, !tc.exists, tc.exists)
		}
	}
}

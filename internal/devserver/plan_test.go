package devserver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// worker is the test-side worker of one job: it calls the plan routes with
// the job's own token.
type worker struct {
	t   *testing.T
	a   *agent
	m   *wire.JobRequestMessage
	job *devserver.Job
}

func startJob(t *testing.T, o devserver.Options, planVersion int) (*devserver.Server, *worker) {
	t.Helper()
	o.PollHold = 20 * time.Millisecond
	s := startServer(t, o)
	a := newAgentWithSession(t, s, httpClient(t, s), "worker")
	job, err := s.QueueJob(simpleJob(planVersion), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := a.takeJob()
	a.renew(m.RequestID)
	return s, &worker{t: t, a: a, m: m, job: job}
}

func (w *worker) plan(method, rel string, body []byte, contentType string) answer {
	w.t.Helper()
	return do(w.t, w.a.c, call{method: method, url: planURL(w.m, rel), auth: bearer(jobToken(w.m)), version: "5.1-preview.1", body: body, contentType: contentType})
}

func (w *worker) records(recs ...map[string]any) answer {
	w.t.Helper()
	if recs == nil {
		recs = []map[string]any{}
	}
	return w.plan("PATCH", "timelines/"+w.m.Timeline.ID+"/records", mustJSON(w.t, map[string]any{"count": len(recs), "value": recs}), "")
}

func (w *worker) mustRecords(recs ...map[string]any) {
	w.t.Helper()
	if r := w.records(recs...); r.status != 200 {
		w.t.Fatalf("update records: %s", r)
	}
}

func (w *worker) complete(result string) {
	w.t.Helper()
	r := w.plan("POST", "events", mustJSON(w.t, map[string]any{"name": "JobCompleted", "jobId": w.m.JobID, "requestId": w.m.RequestID, "result": result}), "")
	if r.status != 204 && r.status != 200 {
		w.t.Fatalf("JobCompleted: %s", r)
	}
}

func TestRecordsMergeAndTransitions(t *testing.T) {
	s, w := startJob(t, devserver.Options{}, 0)
	step := uuid.NewString()
	w.mustRecords(
		map[string]any{"id": w.m.JobID, "state": "inProgress", "workerName": "worker"},
		map[string]any{"id": step, "parentId": w.m.JobID, "type": "Task", "name": "Step", "order": 1, "state": "pending", "percentComplete": 0},
	)
	// Only fields present change; null means unchanged; casing is free.
	w.mustRecords(map[string]any{"ID": step, "State": "InProgress", "name": nil, "currentOperation": "working"})
	rec, _ := w.job.RecordJSON(step)
	if string(rec["name"]) != `"Step"` || string(rec["state"]) != `"inProgress"` || string(rec["currentOperation"]) != `"working"` || string(rec["order"]) != "1" {
		t.Fatalf("merged record: %s", mustJSON(t, rec))
	}
	if len(w.job.Violations()) != 0 {
		t.Fatalf("violations after valid updates: %q", w.job.Violations())
	}
	cases := []struct {
		name string
		recs []map[string]any
		want string
	}{
		{"back to pending", []map[string]any{{"id": step, "state": "pending"}}, "back to pending"},
		{"completed without result", []map[string]any{{"id": step, "state": "completed"}}, "without a result"},
		{"result changed after completion", []map[string]any{{"id": step, "state": "completed", "result": "failed"}}, "changed its result"},
		{"unknown log", []map[string]any{{"id": step, "log": map[string]any{"id": 77}}}, "log 77"},
		{"unknown parent", []map[string]any{{"id": uuid.NewString(), "parentId": uuid.NewString(), "state": "pending"}}, "not in the timeline"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(w.job.Violations())
			if r := w.records(tc.recs...); r.status != 200 {
				t.Fatalf("update: %s", r)
			}
			v := w.job.Violations()
			if len(v) <= before || !strings.Contains(strings.Join(v[before:], "\n"), tc.want) {
				t.Fatalf("violations %q, want one about %q", v[before:], tc.want)
			}
		})
		if tc.name == "completed without result" {
			w.mustRecords(map[string]any{"id": step, "result": "succeeded"})
		}
	}
	for name, body := range map[string]map[string]any{
		"bad state":  {"id": step, "state": "running"},
		"bad result": {"id": step, "result": "great"},
		"no id":      {"state": "pending"},
		"bad id":     {"id": "x"},
		"bad order":  {"id": step, "order": "first"},
	} {
		t.Run(name, func(t *testing.T) { wantError(t, w.records(body), 400, "ArgumentException") })
	}
	wantError(t, w.plan("PATCH", "timelines/"+w.m.Timeline.ID+"/records", []byte(`{"count":0}`), ""), 400, "ArgumentNullException")
	wantError(t, w.plan("PATCH", "timelines/"+uuid.NewString()+"/records", []byte(`{"value":[]}`), ""), 404, "TimelineNotFoundException")
	// GET timeline with records.
	r := w.plan("GET", "timelines/"+w.m.Timeline.ID+"?includeRecords=true", nil, "")
	var tl struct {
		ID      string           `json:"id"`
		Records []map[string]any `json:"records"`
	}
	decode(t, r, &tl)
	if tl.ID != w.m.Timeline.ID || len(tl.Records) != 3 {
		t.Fatalf("timeline: %s", r)
	}
	if len(s.Bugs()) != 0 {
		t.Fatal(s.Bugs())
	}
}

func TestFeed(t *testing.T) {
	_, w := startJob(t, devserver.Options{}, 0)
	step := w.m.Steps[0].ID
	post := func(start int, lines ...string) {
		t.Helper()
		r := w.plan("POST", "timelines/"+w.m.Timeline.ID+"/records/"+w.m.JobID+"/feed",
			mustJSON(t, map[string]any{"count": len(lines), "value": lines, "stepId": step, "startLine": start}), "")
		if r.status != 204 {
			t.Fatalf("feed: %s", r)
		}
	}
	// Batches show in arrival order; only an exact retry is dropped. Line
	// numbers may repeat (an ##[endgroup] and the next line share one).
	post(1, "one", "two")
	post(3, "three", "four")
	post(3, "three", "four") // a retry of a batch already stored
	post(4, "five")          // shares a number with "four", still a new line
	if got := strings.Join(w.job.Feed(step), ","); got != "one,two,three,four,five" {
		t.Fatalf("feed = %s", got)
	}
	if len(w.job.Violations()) != 0 {
		t.Fatalf("violations: %q", w.job.Violations())
	}
	r := w.plan("POST", "timelines/"+w.m.Timeline.ID+"/records/"+w.m.JobID+"/feed", mustJSON(t, map[string]any{"count": 3, "value": []string{"x"}}), "")
	if r.status != 204 || len(w.job.Violations()) != 2 {
		t.Fatalf("feed without stepId and with a wrong count: %s %q", r, w.job.Violations())
	}
	wantError(t, w.plan("POST", "timelines/"+w.m.Timeline.ID+"/records/"+w.m.JobID+"/feed", []byte(`{"stepId":"`+step+`"}`), ""), 400, "ArgumentNullException")
}

func TestLogs(t *testing.T) {
	_, w := startJob(t, devserver.Options{}, 0)
	r := w.plan("POST", "logs", []byte(`{"path":"logs\\`+w.m.JobID+`"}`), "")
	var log struct {
		ID        int    `json:"id"`
		Path      string `json:"path"`
		LineCount int    `json:"lineCount"`
		CreatedOn string `json:"createdOn"`
		Location  string `json:"location"`
	}
	decode(t, r, &log)
	if log.ID != 1 || log.Path != `logs\`+w.m.JobID || log.CreatedOn == "" || !strings.HasPrefix(log.Location, "https://") {
		t.Fatalf("create log: %s", r)
	}
	for _, chunk := range []string{"line one\nline t", "wo\n", "line three"} {
		r = w.plan("POST", "logs/1", []byte(chunk), "application/octet-stream")
		if r.status != 200 {
			t.Fatalf("append: %s", r)
		}
	}
	decode(t, r, &log)
	if log.LineCount != 3 {
		t.Fatalf("lineCount %d, want 3", log.LineCount)
	}
	big := strings.Repeat("0123456789abcdef\n", 1<<16) // 1 MiB
	if r = w.plan("POST", "logs/1", []byte(big), "application/octet-stream"); r.status != 200 {
		t.Fatalf("big append: %s", r)
	}
	w.mustRecords(map[string]any{"id": w.m.JobID, "log": map[string]any{"id": 1}})
	lines := w.job.LogLines(w.m.JobID)
	if len(lines) != 2+1<<16 || lines[1] != "line two" || lines[2] != "line three0123456789abcdef" {
		t.Fatalf("log lines: %d, %q %q", len(lines), lines[1], lines[2])
	}
	wantError(t, w.plan("POST", "logs/9", []byte("x"), "application/octet-stream"), 404, "TaskLogNotFoundException")
	wantError(t, w.plan("POST", "logs", []byte(`{}`), ""), 400, "ArgumentNullException")
	if len(w.job.Violations()) != 0 {
		t.Fatalf("violations: %q", w.job.Violations())
	}
}

func TestJobCompletedEvent(t *testing.T) {
	t.Run("complete job", func(t *testing.T) {
		s, w := startJob(t, devserver.Options{}, 0)
		step := w.m.Steps[0].ID
		w.mustRecords(
			map[string]any{"id": w.m.JobID, "state": "completed", "result": "succeededWithIssues"},
			map[string]any{"id": step, "parentId": w.m.JobID, "state": "completed", "result": "succeededWithIssues"},
		)
		wantError(t, w.plan("POST", "events", mustJSON(t, map[string]any{"name": "JobCompleted", "jobId": w.m.JobID, "requestId": w.m.RequestID + 5, "result": "succeeded"}), ""), 400, "ArgumentException")
		wantError(t, w.plan("POST", "events", mustJSON(t, map[string]any{"name": "JobCompleted", "jobId": w.m.JobID, "requestId": w.m.RequestID, "result": "fine"}), ""), 400, "ArgumentException")
		wantError(t, w.plan("POST", "events", mustJSON(t, map[string]any{"name": "JobCompleted", "jobId": uuid.NewString(), "requestId": w.m.RequestID, "result": "succeeded"}), ""), 404, "TaskOrchestrationJobNotFoundException")
		w.complete("SucceededWithIssues")
		if res, err := w.job.Wait(waitCtx(t)); res != "succeededWithIssues" || err != nil {
			t.Fatalf("result %q %v", res, err)
		}
		if v := w.job.Violations(); len(v) != 0 {
			t.Fatalf("violations: %q", v)
		}
		// The token is void once the job ended (JobTokenGrace 0).
		if r := w.plan("POST", "logs", []byte(`{"path":"x"}`), ""); r.status != 401 {
			t.Fatalf("job token after the job: %s", r)
		}
		// The two malformed events above, and nothing else.
		if v := s.Violations(); len(v) != 2 {
			t.Fatalf("server violations: %q", v)
		}
	})
	t.Run("incomplete records and old plans", func(t *testing.T) {
		_, w := startJob(t, devserver.Options{JobTokenGrace: time.Hour}, 7)
		w.complete("failed")
		v := strings.Join(w.job.Violations(), "\n")
		if !strings.Contains(v, "the Job record was pending") || !strings.Contains(v, "plan version 7") {
			t.Fatalf("violations: %q", v)
		}
		// Within the grace period the token still works; a second event is noted.
		w.complete("failed")
		if !strings.Contains(strings.Join(w.job.Violations(), "\n"), "raised again") {
			t.Fatal("second JobCompleted not recorded")
		}
	})
}

func TestJobCompletedBeforeRenewal(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	a := newAgentWithSession(t, s, httpClient(t, s), "hasty")
	job, _ := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	w := &worker{t: t, a: a, m: a.takeJob(), job: job}
	w.mustRecords(map[string]any{"id": w.m.JobID, "state": "completed", "result": "succeeded"})
	w.complete("succeeded")
	if v := job.Violations(); len(v) != 1 || !strings.Contains(v[0], "never renewed") {
		t.Fatalf("violations: %q", v)
	}
}

func TestPlanRouteChecks(t *testing.T) {
	s, w := startJob(t, devserver.Options{}, 0)
	c := w.a.c
	wrongScope := strings.Replace(planURL(w.m, "logs"), w.m.Plan.ScopeIdentifier, uuid.NewString(), 1)
	wantError(t, do(t, c, call{method: "POST", url: wrongScope, auth: bearer(jobToken(w.m)), body: []byte(`{"path":"x"}`)}), 404, "TaskOrchestrationPlanNotFoundException")
	wrongHub := strings.Replace(planURL(w.m, "logs"), "/hubs/Build/", "/hubs/Release/", 1)
	wantError(t, do(t, c, call{method: "POST", url: wrongHub, auth: bearer(jobToken(w.m)), body: []byte(`{"path":"x"}`)}), 404, "TaskOrchestrationPlanNotFoundException")
	caseHub := strings.Replace(planURL(w.m, "logs"), "/hubs/Build/", "/hubs/build/", 1)
	if r := do(t, c, call{method: "POST", url: caseHub, auth: bearer(jobToken(w.m)), body: []byte(`{"path":"x"}`)}); r.status != 200 {
		t.Fatalf("hub name is case-insensitive: %s", r)
	}
	// Attachments.
	att := "timelines/" + w.m.Timeline.ID + "/records/" + w.m.JobID + "/attachments/DistributedTask.Core.Summary/summary.md"
	if r := w.plan("PUT", att, []byte("# summary"), "application/octet-stream"); r.status != 200 {
		t.Fatalf("attachment: %s", r)
	}
	if got := w.job.Attachments(); len(got) != 1 || string(got[0].Data) != "# summary" || got[0].Type != "DistributedTask.Core.Summary" {
		t.Fatalf("attachments: %+v", got)
	}
	// Detail timelines.
	detail := uuid.NewString()
	if r := w.plan("POST", "timelines", []byte(`{"id":"`+detail+`"}`), ""); r.status != 200 {
		t.Fatalf("create timeline: %s", r)
	}
	if r := w.records(); r.status != 200 {
		t.Fatalf("empty record batch: %s", r)
	}
	// ExpireJobToken.
	if err := s.ExpireJobToken(w.job.ID()); err != nil {
		t.Fatal(err)
	}
	if r := w.plan("GET", "timelines", nil, ""); r.status != 401 {
		t.Fatalf("expired job token: %s", r)
	}
}

package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"log/slog"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/jobs"
)

func jobRecord(f *fake, state string) jobs.Record {
	return jobs.Record{ID: f.jobID, Type: "Job", Name: "Build job", RefName: "build", State: state, WorkerName: "agent-1", Attempt: 1}
}

func stepRecord(f *fake, id string, order int) jobs.Record {
	return jobs.Record{ID: id, ParentID: f.jobID, Type: "Task", Name: fmt.Sprintf("Step %d", order), RefName: fmt.Sprintf("step%d", order),
		Order: order, State: jobs.StatePending, WorkerName: "agent-1", Attempt: 1}
}

func mustNew(t *testing.T, o Options) *Reporter {
	t.Helper()
	r, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a failed test must not leave goroutines to the next
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Finish(ctx, jobs.Completion{})
	})
	return r
}

func finish(t *testing.T, r *Reporter, c jobs.Completion) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.Finish(ctx, c)
	noReporterGoroutines(t)
	return err
}

func TestNewValidates(t *testing.T) {
	f := newFake(t)
	base := f.options(t)
	for name, mut := range map[string]func(*Options){
		"no plan":     func(o *Options) { o.Plan = nil },
		"bad job id":  func(o *Options) { o.JobID = "job" },
		"no pagesdir": func(o *Options) { o.PagesDir = "" },
	} {
		t.Run(name, func(t *testing.T) {
			o := base
			mut(&o)
			if r, err := New(context.Background(), o); err == nil {
				r.Finish(context.Background(), jobs.Completion{})
				t.Fatal("New accepted invalid options")
			}
		})
	}
}

// Updates within one tick collapse per state: every state transition of a
// record reaches the service, in order, and the last one carries the final
// state, start time and all; the wire shape follows worker.md §7.2.
func TestRecordsCoalescedToFinalState(t *testing.T) {
	f := newFake(t)
	o := f.options(t)
	o.TimelineInterval = time.Hour // nothing is sent before Finish
	o.PlanVersion = 7
	r := mustNew(t, o)

	start := time.Date(2024, 5, 6, 7, 8, 9, 123456700, time.FixedZone("CEST", 2*3600))
	end := start.Add(90 * time.Second)
	job := jobRecord(f, jobs.StateInProgress)
	job.StartTime = start
	r.UpdateRecord(job)
	stepID := uuid.NewString()
	step := stepRecord(f, stepID, 1)
	r.UpdateRecord(step)
	step.State, step.StartTime = jobs.StateInProgress, start
	r.UpdateRecord(step)
	step.Issues = []jobs.Issue{{Type: "error", Category: "General", Message: "boom", Data: map[string]string{"logFileLineNumber": "3"}}}
	step.ErrorCount = 1
	step.Variables = map[string]jobs.RecordVariable{"out": {Value: "v"}, "sec": {Value: "s3cret", IsSecret: true}}
	r.UpdateRecord(step)
	// The caller mutating its copy afterwards must not change what is sent.
	step.Issues[0].Message = "mutated"
	step.Variables["out"] = jobs.RecordVariable{Value: "mutated"}
	step.State, step.Result, step.FinishTime, step.PercentComplete = jobs.StateCompleted, jobs.ResultFailed, end, 100
	step.Issues = []jobs.Issue{{Type: "error", Category: "General", Message: "boom", Data: map[string]string{"logFileLineNumber": "3"}}}
	step.Variables = map[string]jobs.RecordVariable{"out": {Value: "v"}, "sec": {Value: "s3cret", IsSecret: true}}
	r.UpdateRecord(step)
	job.State, job.Result, job.FinishTime, job.PercentComplete = jobs.StateCompleted, jobs.ResultFailed, end, 100
	r.UpdateRecord(job)

	if err := finish(t, r, jobs.Completion{Result: jobs.ResultFailed}); err != nil {
		t.Fatal(err)
	}
	f.checkProblems(t)
	// Per record, the states sent in order; no state is lost and none repeats.
	states := map[string][]string{}
	var lastStep, lastJob map[string]any
	for _, p := range f.patches {
		seen := map[any]bool{}
		for _, rec := range p {
			if seen[rec["id"]] {
				t.Errorf("a PATCH carried record %v twice", rec["id"])
			}
			seen[rec["id"]] = true
			id := rec["id"].(string)
			states[id] = append(states[id], rec["state"].(string))
			if id == stepID {
				lastStep = rec
			} else {
				lastJob = rec
			}
		}
	}
	if got, want := states[stepID], []string{"pending", "inProgress", "completed"}; !reflect.DeepEqual(got, want) {
		t.Errorf("step states on the wire %v, want %v", got, want)
	}
	if got, want := states[f.jobID], []string{"inProgress", "completed"}; !reflect.DeepEqual(got, want) {
		t.Errorf("job states on the wire %v, want %v", got, want)
	}
	if len(f.patches) != 3 {
		t.Errorf("%d PATCHes, want 3 (updates of the same state coalesced)", len(f.patches))
	}
	if id := f.patches[0][0]["id"]; id != f.jobID {
		t.Errorf("first record %v, want the job record (queued first)", id)
	}
	wantStep := map[string]any{
		"id": stepID, "parentId": f.jobID, "type": "Task", "name": "Step 1", "refName": "step1", "order": 1.0,
		"state": "completed", "result": "failed", "startTime": "2024-05-06T05:08:09.1234567Z", "finishTime": "2024-05-06T05:09:39.1234567Z",
		"percentComplete": 100.0, "errorCount": 1.0, "warningCount": 0.0, "workerName": "agent-1", "attempt": 1.0,
		"issues": []any{map[string]any{"type": "error", "category": "General", "message": "boom", "data": map[string]any{"logFileLineNumber": "3"}}},
		"variables": map[string]any{
			"out": map[string]any{"value": "v", "isSecret": false},
			"sec": map[string]any{"value": "s3cret", "isSecret": true},
		},
	}
	if got := lastStep; !reflect.DeepEqual(got, wantStep) {
		t.Errorf("step record on the wire:\n got %v\nwant %v", got, wantStep)
	}
	gotJob := lastJob
	if _, ok := gotJob["order"]; ok {
		t.Error("the Job record carries an order")
	}
	if _, ok := gotJob["parentId"]; ok {
		t.Error("the Job record carries a parentId")
	}
	if gotJob["type"] != "Job" || gotJob["state"] != "completed" || gotJob["result"] != "failed" || gotJob["startTime"] != "2024-05-06T05:08:09.1234567Z" {
		t.Errorf("job record on the wire: %v", gotJob)
	}
	if len(f.events) != 0 {
		t.Errorf("plan version 7: %d JobCompleted events raised, want none (the listener finishes the request)", len(f.events))
	}
}

func TestFinishRaisesJobCompleted(t *testing.T) {
	for _, tc := range []struct {
		planVersion int
		c           jobs.Completion
		want        int
	}{
		{planVersion: 7, c: jobs.Completion{Result: jobs.ResultSucceeded}, want: 0},
		{planVersion: 8, c: jobs.Completion{Result: jobs.ResultSucceeded}, want: 1},
		{planVersion: 9, c: jobs.Completion{Result: jobs.ResultCanceled, AgentShuttingDown: true}, want: 1},
	} {
		t.Run(fmt.Sprint(tc.planVersion, tc.c.Result), func(t *testing.T) {
			f := newFake(t)
			o := f.options(t)
			o.PlanVersion = tc.planVersion
			r := mustNew(t, o)
			r.UpdateRecord(jobRecord(f, jobs.StateCompleted))
			if err := finish(t, r, tc.c); err != nil {
				t.Fatal(err)
			}
			f.checkProblems(t)
			if len(f.events) != tc.want {
				t.Fatalf("%d events, want %d", len(f.events), tc.want)
			}
			if tc.want == 0 {
				return
			}
			ev := f.events[0]
			if ev.Name != "JobCompleted" || ev.JobID != f.jobID || ev.RequestID != 4711 || ev.Result != tc.c.Result || ev.AgentShuttingDown != tc.c.AgentShuttingDown {
				t.Errorf("event %+v", ev)
			}
			if f.records[f.jobID]["state"] != "completed" {
				t.Error("the job record was not completed before the event")
			}
		})
	}
}

func TestJobCompletedRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      int // leading event requests that fail
		status    int
		typeKey   string
		wantCalls int
		wantErr   error
	}{
		{name: "transient then ok", fail: 3, status: 500, wantCalls: 4},
		{name: "always failing", fail: 99, status: 503, wantCalls: 5, wantErr: ErrNotCompleted},
		{name: "plan not found", fail: 99, status: 404, typeKey: "TaskOrchestrationPlanNotFoundException", wantCalls: 1, wantErr: azdo.ErrPlanNotFound},
		{name: "plan security", fail: 99, status: 403, typeKey: "TaskOrchestrationPlanSecurityException", wantCalls: 1, wantErr: azdo.ErrPlanSecurity},
		// A dead job token (a lost lock ends it) is not retried for 25 s: the
		// client re-asks its token source once, then the reporter gives up.
		{name: "job token rejected", fail: 99, status: 401, wantCalls: 2, wantErr: azdo.ErrUnauthorized},
		{name: "job token expired", fail: 99, status: 400, typeKey: "TaskAgentJobTokenExpiredException", wantCalls: 1, wantErr: azdo.ErrJobTokenExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			// The events route answers from a wrapper so the status and type key can vary.
			calls := 0
			inner := f.srv.Config.Handler
			f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if strings.HasSuffix(req.URL.Path, "/events") {
					f.mu.Lock()
					calls++
					n := calls
					f.mu.Unlock()
					if n <= tc.fail {
						writeJSON(w, tc.status, map[string]any{"message": "no", "typeKey": tc.typeKey})
						return
					}
				}
				inner.ServeHTTP(w, req)
			})
			r := mustNew(t, f.options(t))
			err := finish(t, r, jobs.Completion{Result: jobs.ResultSucceeded})
			if calls != tc.wantCalls {
				t.Errorf("%d JobCompleted attempts, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(f.events) != 1 {
					t.Fatalf("%d events delivered", len(f.events))
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !errors.Is(err, ErrNotCompleted) {
				t.Fatalf("Finish: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// Output variables that cannot be delivered fail the job and the event says
// so; records without variables are best effort.
func TestUndeliveredRecords(t *testing.T) {
	for _, withVars := range []bool{true, false} {
		t.Run(fmt.Sprint("variables=", withVars), func(t *testing.T) {
			f := newFake(t)
			inner := f.srv.Config.Handler
			f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.Method == http.MethodPatch {
					writeJSON(w, http.StatusBadRequest, map[string]any{"message": "bad record"})
					return
				}
				inner.ServeHTTP(w, req)
			})
			r := mustNew(t, f.options(t))
			step := stepRecord(f, uuid.NewString(), 1)
			step.State = jobs.StateCompleted
			if withVars {
				step.Variables = map[string]jobs.RecordVariable{"x": {Value: "1"}}
			}
			r.UpdateRecord(step)
			err := finish(t, r, jobs.Completion{Result: jobs.ResultSucceeded})
			if len(f.events) != 1 {
				t.Fatalf("%d events", len(f.events))
			}
			if withVars {
				if !errors.Is(err, ErrOutputVariables) || !strings.Contains(err.Error(), "Failed to publish output variables.") {
					t.Fatalf("Finish: %v, want ErrOutputVariables", err)
				}
				if f.events[0].Result != jobs.ResultFailed {
					t.Errorf("event result %q, want failed", f.events[0].Result)
				}
				return
			}
			if err != nil {
				t.Fatalf("Finish: %v, want nil (records without variables are best effort)", err)
			}
			if f.events[0].Result != jobs.ResultSucceeded {
				t.Errorf("event result %q", f.events[0].Result)
			}
		})
	}
}

func TestMergeFailed(t *testing.T) {
	for in, want := range map[string]string{
		"succeeded": "failed", "succeededWithIssues": "failed", "failed": "failed",
		"canceled": "canceled", "skipped": "skipped", "abandoned": "abandoned",
	} {
		if got := mergeFailed(in); got != want {
			t.Errorf("mergeFailed(%q) = %q, want %q", in, got, want)
		}
	}
}

// Paged logs: every page is a log of its own, linked to the record in
// order; the job log holds the step lines too.
func TestLogPagesAndLinks(t *testing.T) {
	f := newFake(t)
	o := f.options(t)
	o.PageSize = 1024
	o.PlanVersion = 7
	clock := time.Date(2019, 10, 2, 23, 50, 6, 501601400, time.UTC)
	o.Clock = func() time.Time { clock = clock.Add(time.Millisecond); return clock }
	r := mustNew(t, o)
	step1, step2 := uuid.NewString(), uuid.NewString()
	var want1, want2, wantJob []string
	write := func(id string, line string) {
		r.WriteLine(id, line)
		switch id {
		case step1:
			want1 = append(want1, line)
		case step2:
			want2 = append(want2, line)
		}
		wantJob = append(wantJob, line)
	}
	r.UpdateRecord(jobRecord(f, jobs.StateInProgress))
	write(f.jobID, "##[section]Starting: job")
	r.UpdateRecord(stepRecord(f, step1, 1))
	for i := range 100 {
		write(step1, fmt.Sprintf("step one line %d with some padding to fill pages", i))
	}
	s1 := stepRecord(f, step1, 1)
	s1.State, s1.Result = jobs.StateCompleted, jobs.ResultSucceeded
	r.UpdateRecord(s1)
	r.UpdateRecord(stepRecord(f, step2, 2))
	write(step2, "only line of step two")
	write(f.jobID, "##[section]Finishing: job")
	s2 := stepRecord(f, step2, 2)
	s2.State = jobs.StateCompleted
	r.UpdateRecord(s2)
	if err := finish(t, r, jobs.Completion{Result: jobs.ResultSucceeded}); err != nil {
		t.Fatal(err)
	}
	f.checkProblems(t)

	for _, c := range []struct {
		id    string
		want  []string
		pages int
	}{{step1, want1, 5}, {step2, want2, 1}, {f.jobID, wantJob, 6}} {
		if got := stripTimestamps(t, f.logText(c.id)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("log of %s:\n got %q\nwant %q", c.id, got, c.want)
		}
		if n := len(f.linked[c.id]); n < c.pages {
			t.Errorf("record %s linked to %d logs, want at least %d pages", c.id, n, c.pages)
		}
		links := f.linked[c.id]
		final, _ := f.records[c.id]["log"].(map[string]any)
		if final == nil || int(final["id"].(float64)) != links[len(links)-1] || final["location"] == nil {
			t.Errorf("record %s ends pointing at log %v, want the last page's log %d with its location", c.id, final, links[len(links)-1])
		}
	}
	if text := f.logText(step1); !strings.HasPrefix(text, "2019-10-02T23:50:06.5036014Z step one line 0") {
		t.Errorf("first line of step 1 log %q", text[:60])
	}
	left, _ := os.ReadDir(o.PagesDir)
	if len(left) != 0 {
		t.Errorf("%d uploaded pages left in %s", len(left), o.PagesDir)
	}
}

func TestTimestampFormat(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2019, 10, 2, 23, 50, 6, 501601400, time.UTC), "2019-10-02T23:50:06.5016014Z"},
		{time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), "2024-01-01T00:00:00.0000000Z"},
		{time.Date(2024, 1, 1, 2, 0, 0, 100, time.FixedZone("x", 2*3600)), "2024-01-01T00:00:00.0000001Z"},
	} {
		if got := string(tc.in.UTC().AppendFormat(nil, timestampLayout)); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.in, got, tc.want)
		}
		var st stamp
		if got := string(st.format(tc.in)); got != tc.want {
			t.Errorf("stamp %v: %q, want %q", tc.in, got, tc.want)
		}
	}
	// The stamp reuses the formatted second: successive times, within a
	// second, across seconds, backwards, and outside four-digit years.
	var st stamp
	rng := rand.New(rand.NewPCG(9, 9))
	at := time.Date(2026, 12, 31, 23, 59, 58, 0, time.UTC)
	for i := range 5000 {
		switch i % 500 {
		case 100:
			at = time.Date(9999, 12, 31, 23, 59, 59, 999999900, time.UTC)
		case 200:
			at = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
		case 300:
			at = at.Add(-time.Duration(rng.IntN(int(3 * time.Second))))
		default:
			at = at.Add(time.Duration(rng.IntN(int(3 * time.Millisecond))))
		}
		want := at.UTC().AppendFormat(nil, timestampLayout)
		if got := st.format(at.In(time.FixedZone("y", -5*3600))); !bytes.Equal(got, want) {
			t.Fatalf("stamp %v: %q, want %q", at, got, want)
		}
	}
}

// Lines written in batches of any size make the same pages, byte for byte,
// as the same lines written one at a time, and the same console lines: page
// ends inside a batch, batches longer than the formatting buffer, lines the
// feed cuts. (TestLineNumbers covers the numbering of group tags and
// embedded newlines; the feed numbers a posted batch consecutively.)
func TestWriteLinesSameAsWriteLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var lines []string
	for i := range 3000 {
		var l string
		switch rng.IntN(12) {
		case 0:
			l = "##[group]group " + strconv.Itoa(i)
		case 1:
			l = strings.Repeat("long ", 300+rng.IntN(20000))
		case 2:
			l = ""
		default:
			l = fmt.Sprintf("line %d %s", i, strings.Repeat("x", rng.IntN(120)))
		}
		lines = append(lines, l)
	}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	run := func(batched bool) (*fake, string) {
		f := newFake(t)
		o := f.options(t)
		o.PageSize = 5000
		o.PlanVersion = 7
		o.Clock = func() time.Time { return clock }
		r := mustNew(t, o)
		step := "8b0d4b32-65d9-4c77-9a53-7f2ac1cb1f0e"
		r.UpdateRecord(jobRecord(f, jobs.StateInProgress))
		r.UpdateRecord(stepRecord(f, step, 1))
		r.WriteLine(f.jobID, "job line")
		for rest := lines; len(rest) > 0; {
			n := 1
			if batched {
				n = min(len(rest), 1+rng.IntN(400))
			}
			if n == 1 {
				r.WriteLine(step, rest[0])
			} else {
				r.WriteLines(step, rest[:n])
			}
			rest = rest[n:]
		}
		s := stepRecord(f, step, 1)
		s.State = jobs.StateCompleted
		r.UpdateRecord(s)
		if err := finish(t, r, jobs.Completion{}); err != nil {
			t.Fatal(err)
		}
		f.checkProblems(t)
		return f, step
	}
	one, step := run(false)
	many, _ := run(true)
	for _, ids := range [][2]string{{step, step}, {one.jobID, many.jobID}} {
		a, b := one.pages(ids[0]), many.pages(ids[1])
		if len(a) < 10 {
			t.Fatalf("log of %s: %d pages, want many", ids[0], len(a))
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("log of %s: written in batches, %d pages differ from %d written line by line", ids[0], len(b), len(a))
		}
	}
	// Every console line posted has its number in the step's log and is
	// cut to the feed's limit.
	for _, f := range []*fake{one, many} {
		got := f.feedLines[step]
		if len(got) == 0 {
			t.Fatal("no console lines posted")
		}
		for n, l := range got {
			if want := truncateFeedLine(lines[n-1]); l != want {
				t.Fatalf("console line %d: %.40q, want %.40q", n, l, want)
			}
		}
	}
}

// Line numbers follow PagingLogger.TotalLines: an embedded newline counts,
// an ##[endgroup] closing a group does not.
func TestLineNumbers(t *testing.T) {
	pl := &pageLog{}
	r := &Reporter{o: Options{PagesDir: t.TempDir(), PageSize: 1 << 20}}
	r.log = discardLogger()
	lines := []string{"a", "two\nlines", "##[group]G", "in group", "##[endgroup]", "after", "##[ENDGROUP]", "x"}
	want := []int64{1, 2, 4, 5, 6, 6, 7, 8}
	// In one batch, and one line at a time (the count carries over).
	var b batch
	b.format([]byte("ts"), lines, maxBatchText)
	pl.writeBatch(r, lines, &b, true)
	if !reflect.DeepEqual(b.nums, want) {
		t.Errorf("line numbers %v, want %v", b.nums, want)
	}
	var got []int64
	for _, l := range lines {
		b.format([]byte("ts"), []string{l}, maxBatchText)
		pl.writeBatch(r, []string{l}, &b, true)
		got = append(got, b.nums...)
	}
	for i := range want {
		want[i] += 8
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("line numbers after the first batch %v, want %v", got, want)
	}
	if pl.f != nil {
		pl.f.Close()
	}
}

// truncateFeedLine is a line as the feed posts it.
func truncateFeedLine(s string) string {
	keep, cut := feedCut(s)
	if cut {
		return keep + feedEllipsis
	}
	return keep
}

func TestTruncateFeedLine(t *testing.T) {
	long := strings.Repeat("a", 3000)
	emoji := strings.Repeat("😀", 600)
	for _, tc := range []struct {
		name, in, want string
	}{
		{"short", "hello", "hello"},
		{"exactly 1024", strings.Repeat("b", 1024), strings.Repeat("b", 1024)},
		{"1025", strings.Repeat("b", 1025), strings.Repeat("b", 1024) + "..."},
		{"ascii", long, long[:1024] + "..."},
		{"two-byte runes count once", strings.Repeat("é", 1500), strings.Repeat("é", 1024) + "..."},
		{"1024 two-byte runes fit", strings.Repeat("é", 1024), strings.Repeat("é", 1024)},
		{"surrogate pairs count twice", emoji, strings.Repeat("😀", 512) + "..."},
		{"pair not split", "a" + emoji, "a" + strings.Repeat("😀", 511) + "..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := truncateFeedLine(tc.in); got != tc.want {
				t.Errorf("got %d bytes %q…, want %d bytes", len(got), got[:min(len(got), 20)], len(tc.want))
			}
		})
	}
}

func FuzzTruncateFeedLine(f *testing.F) {
	for _, s := range []string{"", "x", strings.Repeat("a", 1025), strings.Repeat("é", 1100), "a" + strings.Repeat("😀", 600), "\xff\xfe" + strings.Repeat("z", 2000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := truncateFeedLine(s)
		units := len(utf16.Encode([]rune(s)))
		if units <= maxFeedLineUnits {
			if got != s {
				t.Fatalf("line of %d units changed", units)
			}
			return
		}
		body, ok := strings.CutSuffix(got, "...")
		if !ok || !strings.HasPrefix(s, body) {
			t.Fatalf("not a prefix plus ...: %q", got)
		}
		n := len(utf16.Encode([]rune(body)))
		if n > maxFeedLineUnits || n < maxFeedLineUnits-1 {
			t.Fatalf("kept %d units", n)
		}
		if utf8.ValidString(s) && !utf8.ValidString(body) {
			t.Fatal("cut inside a character")
		}
	})
}

func TestFeedDelay(t *testing.T) {
	for _, tc := range []struct {
		ticks    int
		interval time.Duration
		want     time.Duration
	}{
		{0, time.Second, 500 * time.Millisecond},
		{29, time.Second, 500 * time.Millisecond},
		{30, time.Second, time.Second},
		{30, 10 * time.Second, 10 * time.Second},
		{0, 100 * time.Millisecond, 100 * time.Millisecond},
	} {
		if got := feedDelay(tc.ticks, tc.interval); got != tc.want {
			t.Errorf("feedDelay(%d, %v) = %v, want %v", tc.ticks, tc.interval, got, tc.want)
		}
	}
}

// The feed driven by hand (no goroutines): first line alone, ≤ 500 lines a
// tick, batches of ≤ 100 with continuous startLine, per-step numbering, a
// drain sending only the newest two batches.
func TestFeedBatching(t *testing.T) {
	f := newFake(t)
	r, err := newReporter(context.Background(), f.options(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.cancel()
	stepA, stepB := uuid.NewString(), uuid.NewString()
	r.WriteLine(stepA, "first")
	r.WriteLine(stepA, "second")
	r.feedTick(false)
	if len(f.feedPosts) != 1 || len(f.feedPosts[0].lines) != 1 || f.feedPosts[0].startLine != 1 || f.feedPosts[0].step != stepA {
		t.Fatalf("first tick posted %+v, want the first line alone", f.feedPosts)
	}
	for i := 3; i <= 700; i++ {
		id := stepA
		if i%7 == 0 {
			id = stepB
		}
		r.WriteLine(id, fmt.Sprintf("line %d", i))
	}
	r.WriteLine(f.jobID, "job line")
	r.feedTick(false)
	taken := 0
	for _, p := range f.feedPosts[1:] {
		taken += len(p.lines)
		if len(p.lines) > maxFeedBatch {
			t.Errorf("batch of %d lines", len(p.lines))
		}
	}
	if taken != maxFeedLinesPerTick {
		t.Errorf("one tick posted %d lines, want %d", taken, maxFeedLinesPerTick)
	}
	for len(f.feedPosts) < 1000 {
		n := len(f.feedPosts)
		r.feedTick(false)
		if len(f.feedPosts) == n {
			break
		}
	}
	f.checkProblems(t)
	var wantA, wantB []string
	wantA = []string{"first", "second"}
	for i := 3; i <= 700; i++ {
		if i%7 == 0 {
			wantB = append(wantB, fmt.Sprintf("line %d", i))
		} else {
			wantA = append(wantA, fmt.Sprintf("line %d", i))
		}
	}
	if got := f.feedText(stepA); !reflect.DeepEqual(got, wantA) {
		t.Errorf("step A feed: %d lines, want %d", len(got), len(wantA))
	}
	if got := f.feedText(stepB); !reflect.DeepEqual(got, wantB) {
		t.Errorf("step B feed: %d lines, want %d", len(got), len(wantB))
	}
	// The job's own line is numbered in the job log, which holds every step line.
	if got := f.feedLines[f.jobID]; len(got) != 1 || got[701] != "job line" {
		t.Errorf("job feed %v, want line 701", got)
	}
	next := map[string]int64{}
	for _, p := range f.feedPosts {
		if want, ok := next[p.step]; ok && p.startLine != want {
			t.Errorf("step %s batch starts at %d, want %d", p.step, p.startLine, want)
		}
		next[p.step] = p.startLine + int64(len(p.lines))
	}

	// Completing a step drains: of a 450-line backlog only the newest two batches go.
	posts := len(f.feedPosts)
	for i := 1; i <= 450; i++ {
		r.WriteLine(stepB, fmt.Sprintf("tail %d", i))
	}
	b := stepRecord(f, stepB, 2)
	b.State = jobs.StateCompleted
	r.UpdateRecord(b)
	// The next step's lines, queued before the drain runs, are not drained.
	stepC := uuid.NewString()
	var wantC []string
	for i := 1; i <= 300; i++ {
		wantC = append(wantC, fmt.Sprintf("next %d", i))
		r.WriteLine(stepC, wantC[i-1])
	}
	r.feedTick(false)
	drained := f.feedPosts[posts:]
	if len(drained) != 2 || len(drained[0].lines) != 100 || len(drained[1].lines) != 50 ||
		drained[0].lines[0] != "tail 301" || drained[1].lines[49] != "tail 450" {
		t.Errorf("drain posted %d batches: %+v", len(drained), drained)
	}
	if st := r.feed.stats(); st.dropped != 300 {
		t.Errorf("%d lines skipped by the drain, want 300", st.dropped)
	}
	r.feedTick(false)
	if got := f.feedText(stepC); !reflect.DeepEqual(got, wantC) {
		t.Errorf("step C feed after the drain: %d lines, want all %d", len(got), len(wantC))
	}
}

// Long lines are cut in the feed, never in the log.
func TestFeedCutsLongLinesLogKeepsThem(t *testing.T) {
	f := newFake(t)
	o := f.options(t)
	o.PlanVersion = 7
	r := mustNew(t, o)
	step := uuid.NewString()
	long := strings.Repeat("x", 5000)
	r.WriteLine(step, "short")
	r.WriteLine(step, long)
	waitFor(t, "the feed", func() bool { return f.feedHas(step, 2) })
	s := stepRecord(f, step, 1)
	s.State = jobs.StateCompleted
	r.UpdateRecord(s)
	if err := finish(t, r, jobs.Completion{}); err != nil {
		t.Fatal(err)
	}
	if got := f.feedText(step); len(got) != 2 || got[1] != long[:1024]+"..." {
		t.Errorf("feed lines %d, second of %d bytes", len(got), len(got[1]))
	}
	if got := stripTimestamps(t, f.logText(step)); len(got) != 2 || got[1] != long {
		t.Errorf("log lost the long line")
	}
}

func TestAttach(t *testing.T) {
	f := newFake(t)
	r := mustNew(t, f.options(t))
	step := uuid.NewString()
	dir := t.TempDir()
	path := filepath.Join(dir, "summary.md")
	content := []byte("# Summary\n" + strings.Repeat("data ", 10000))
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	r.Attach(step, "DistributedTask.Core.Summary", "my summary.md", path)
	// The temp directory may be cleaned before the upload; the file was opened.
	os.Remove(path)
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o600)
	r.Attach(step, "Distributedtask.Core.FileAttachment", "empty.txt", empty)
	r.Attach(step, "x", "missing", filepath.Join(dir, "nope"))
	if err := finish(t, r, jobs.Completion{Result: jobs.ResultSucceeded}); err != nil {
		t.Fatal(err)
	}
	f.checkProblems(t)
	if got := f.attachments[step+"/DistributedTask.Core.Summary/my summary.md"]; string(got) != string(content) {
		t.Errorf("attachment: %d bytes, want %d", len(got), len(content))
	}
	if got, ok := f.attachments[step+"/Distributedtask.Core.FileAttachment/empty.txt"]; !ok || len(got) != 0 {
		t.Errorf("empty attachment %v %v", ok, got)
	}
	for _, ct := range f.attachCT {
		if ct != "application/octet-stream; api-version=5.1-preview.1" {
			t.Errorf("attachment Content-Type %q", ct)
		}
	}
}

// Faults everywhere (5xx, connections dropped before and after the server
// acted): every log line arrives exactly once, in order, in the logs linked
// to its record; every console line once under its number; the final
// records and the completion event arrive.
func TestFaultInjectionExactlyOnce(t *testing.T) {
	f := newFake(t)
	f.setFault(randomFaults(42, 0.3, fault500, faultDropBefore, faultDropAfter))
	o := f.options(t)
	o.PageSize = 2048
	r := mustNew(t, o)

	want := map[string][]string{}
	var wantJob []string
	write := func(id, line string) {
		r.WriteLine(id, line)
		if id != f.jobID {
			want[id] = append(want[id], line)
		}
		wantJob = append(wantJob, line)
	}
	job := jobRecord(f, jobs.StateInProgress)
	r.UpdateRecord(job)
	write(f.jobID, "##[section]Starting: job")
	var steps []string
	for s := 1; s <= 3; s++ {
		id := uuid.NewString()
		steps = append(steps, id)
		rec := stepRecord(f, id, s)
		r.UpdateRecord(rec)
		rec.State, rec.StartTime = jobs.StateInProgress, time.Now()
		r.UpdateRecord(rec)
		for i := range 240 {
			line := fmt.Sprintf("step %d line %d", s, i)
			if i%50 == 0 {
				line += " " + strings.Repeat("long", 400)
			}
			write(id, line)
		}
		path := filepath.Join(t.TempDir(), "a.txt")
		os.WriteFile(path, []byte(fmt.Sprintf("attachment of step %d", s)), 0o600)
		r.Attach(id, "DistributedTask.Core.FileAttachment", "a.txt", path)
		// Let the console catch up so that the completion drain skips nothing.
		waitFor(t, "the feed of step "+fmt.Sprint(s), func() bool { return f.feedHas(id, 240) })
		rec.Variables = map[string]jobs.RecordVariable{"out": {Value: fmt.Sprint(s)}}
		rec.State, rec.Result, rec.FinishTime, rec.PercentComplete = jobs.StateCompleted, jobs.ResultSucceeded, time.Now(), 100
		r.UpdateRecord(rec)
		write(f.jobID, fmt.Sprintf("between steps %d", s))
	}
	job.State, job.Result = jobs.StateCompleted, jobs.ResultSucceeded
	r.UpdateRecord(job)
	if err := finish(t, r, jobs.Completion{Result: jobs.ResultSucceeded}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	f.setFault(nil)
	f.checkProblems(t)
	for _, id := range steps {
		if got := stripTimestamps(t, f.logText(id)); !reflect.DeepEqual(got, want[id]) {
			t.Errorf("log of step %s: %d lines, want %d exactly once in order", id, len(got), len(want[id]))
		}
		var wantFeed []string
		for _, l := range want[id] {
			wantFeed = append(wantFeed, truncateFeedLine(l))
		}
		if got := f.feedText(id); !reflect.DeepEqual(got, wantFeed) {
			t.Errorf("feed of step %s: %d lines, want %d", id, len(got), len(wantFeed))
		}
		rec := f.records[id]
		if rec["state"] != "completed" || rec["variables"] == nil {
			t.Errorf("step record %v", rec)
		}
		if _, ok := f.attachments[id+"/DistributedTask.Core.FileAttachment/a.txt"]; !ok {
			t.Errorf("attachment of step %s missing", id)
		}
	}
	if got := stripTimestamps(t, f.logText(f.jobID)); !reflect.DeepEqual(got, wantJob) {
		t.Errorf("job log: %d lines, want %d exactly once in order", len(got), len(wantJob))
	}
	if f.records[f.jobID]["state"] != "completed" {
		t.Error("job record not completed")
	}
	if len(f.events) == 0 {
		t.Fatal("no JobCompleted event")
	}
	for _, ev := range f.events {
		if !reflect.DeepEqual(ev, f.events[0]) {
			t.Errorf("retried events differ: %+v vs %+v", ev, f.events[0])
		}
	}
	t.Logf("requests: %v, faults: %v", f.requests, f.injected)
	for _, k := range []string{kindRecords, kindFeed, kindLogs, "500", "drop-before", "drop-after"} {
		if f.injected[k] == 0 {
			t.Errorf("no %s fault injected; the test proves nothing about it", k)
		}
	}
}

// Finish is bounded by its context even when the service never answers.
func TestFinishDeadline(t *testing.T) {
	f := newFake(t)
	f.setFault(func(string) faultKind { return faultHang })
	o := f.options(t)
	o.PageSize = 64
	r := mustNew(t, o)
	step := stepRecord(f, uuid.NewString(), 1)
	r.UpdateRecord(step)
	for i := range 50 {
		r.WriteLine(step.ID, fmt.Sprint("line ", i))
	}
	step.State, step.Variables = jobs.StateCompleted, map[string]jobs.RecordVariable{"o": {Value: "1"}}
	r.UpdateRecord(step)
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("x"), 0o600)
	r.Attach(step.ID, "t", "n", path)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Finish(ctx, jobs.Completion{Result: jobs.ResultSucceeded}) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Finish did not return after its deadline")
	}
	if !errors.Is(err, ErrOutputVariables) || !errors.Is(err, ErrNotCompleted) {
		t.Errorf("Finish: %v, want output variables and completion undelivered", err)
	}
	noReporterGoroutines(t)
	if err := r.Finish(context.Background(), jobs.Completion{}); !errors.Is(err, ErrFinished) {
		t.Errorf("second Finish: %v", err)
	}
	// Calls after Finish are ignored, not panics.
	r.WriteLine(step.ID, "late")
	r.UpdateRecord(step)
	r.Attach(step.ID, "t", "n", path)
}

// Memory stays flat while a step writes far more output than the heap
// bound: the lines live in page files and are streamed to the service.
func TestMemoryFlat(t *testing.T) {
	f := newFake(t)
	f.lean = true
	o := f.options(t)
	o.PlanVersion = 7
	o.Logger = discardLogger()
	r := mustNew(t, o)
	step := uuid.NewString()
	lines := memTestLines
	const bound = 32 << 20
	var peak uint64
	sample := func() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}
	for i := 1; i <= lines; i++ {
		r.WriteLine(step, "L"+strconv.Itoa(i))
		if i%(lines/10) == 0 {
			sample()
		}
	}
	s := stepRecord(f, step, 1)
	s.State = jobs.StateCompleted
	r.UpdateRecord(s)
	if err := finish(t, r, jobs.Completion{}); err != nil {
		t.Fatal(err)
	}
	sample()
	f.checkProblems(t)
	if peak > bound {
		t.Errorf("heap reached %d MiB writing %d lines; want under %d MiB", peak>>20, lines, bound>>20)
	}
	for _, id := range []string{step, f.jobID} {
		next := 1
		for _, lid := range f.linked[id] {
			l := f.logs[lid]
			if l.broken != "" || l.first != next {
				t.Fatalf("log %d of %s: first L%d, want L%d (%s)", lid, id, l.first, next, l.broken)
			}
			next = l.last + 1
		}
		if next != lines+1 {
			t.Errorf("logs of %s end at L%d, want L%d", id, next-1, lines)
		}
	}
	t.Logf("%d lines, %d pages, peak heap %d MiB, %d console lines posted", lines, len(f.logs), peak>>20, f.feedCount)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The feed queue copies lines into reused chunks: what comes out is what
// went in (cut to the feed's limit), in order, the oldest skipped beyond the
// cap, however pushes and takes interleave, and the chunks stay few.
func TestFeedQueueReusesChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	var f feed
	f.init(time.Second)
	f.delivered = true
	type want struct {
		line string
		num  int64
	}
	var model []want
	num := int64(0)
	chunks := map[*feedChunk]bool{}
	for round := range 400 {
		var lines []string
		var nums []int64
		size := rng.IntN(300)
		if round%50 == 49 {
			size = feedQueueCap + rng.IntN(100) // more than the queue holds
		}
		for range size {
			num++
			var l string
			switch rng.IntN(10) {
			case 0:
				l = strings.Repeat("é", 600+rng.IntN(600))
			case 1:
				l = ""
			default:
				l = fmt.Sprintf("line %d %s", num, strings.Repeat("y", rng.IntN(200)))
			}
			lines = append(lines, l)
			nums = append(nums, num)
			model = append(model, want{truncateFeedLine(l), num})
		}
		f.push("step", lines, nums)
		if len(model) > feedQueueCap {
			model = model[len(model)-feedQueueCap:]
		}
		// What is queued still reads as pushed.
		if n := len(f.q) - f.head; n != len(model) {
			t.Fatalf("round %d: %d lines queued, want %d", round, n, len(model))
		}
		live, bytes := map[*feedChunk]bool{}, 0
		for i, q := range f.q[f.head:] {
			chunks[q.chunk], live[q.chunk] = true, true
			bytes += int(q.n)
			if text := string(q.chunk.buf[q.off : q.off+q.n]); text != model[i].line {
				t.Fatalf("round %d: queued line %d reads %.30q, want %.30q", round, i, text, model[i].line)
			}
		}
		// Memory follows what is queued: chunks are filled in turn, so
		// only the first and the last can be partly empty (a chunk also
		// ends early when the next line does not fit: at most 3 KiB).
		if maxLive := bytes/(feedChunkSize-3<<10) + 2; len(live) > maxLive {
			t.Fatalf("round %d: %d chunks hold %d queued bytes", round, len(live), bytes)
		}
		if rng.IntN(3) == 0 {
			got, _ := f.take(false)
			n := min(len(model), maxFeedLinesPerTick)
			if len(got) != n {
				t.Fatalf("round %d: took %d lines, want %d", round, len(got), n)
			}
			for i, g := range got {
				if g.line != model[i].line || g.num != model[i].num || g.step != "step" {
					t.Fatalf("round %d: line %d is %.30q (%d), want %.30q (%d)", round, i, g.line, g.num, model[i].line, model[i].num)
				}
			}
			model = model[n:]
		}
	}
	got, _ := f.take(true)
	if len(got) != len(model) {
		t.Fatalf("final take: %d lines, want %d", len(got), len(model))
	}
	for i, g := range got {
		if g.line != model[i].line || g.num != model[i].num {
			t.Fatalf("final take, line %d: %.30q, want %.30q", i, g.line, model[i].line)
		}
	}
	t.Logf("%d lines pushed through %d chunks", num, len(chunks))
}

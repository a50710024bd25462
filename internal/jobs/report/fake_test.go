package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/wire"
)

// fake serves the plan routes of one job the way worker.md §7.1 describes
// them: OPTIONS _apis/ with the location GUIDs and route templates, then the
// records, feed, logs, attachments and events resources. It checks the job
// token and api-version on every call, decodes every body, and can inject
// faults.
type fake struct {
	t                                     *testing.T
	srv                                   *httptest.Server
	token                                 string
	scope, hub, planID, timelineID, jobID string
	lean                                  bool // keep counts, not content (memory test)
	closing                               chan struct{}

	mu          sync.Mutex
	fault       func(kind string) faultKind
	patches     [][]map[string]any
	records     map[string]map[string]any
	feedPosts   []feedPost
	feedLines   map[string]map[int64]string
	feedCount   int
	logs        map[int]*fakeLog
	nextLog     int
	linked      map[string][]int // record id -> log ids referenced by PATCHes, in order
	attachments map[string][]byte
	attachCT    []string
	events      []wire.JobEvent
	requests    map[string]int
	injected    map[string]int // faults by resource kind and by fault kind
	problems    []string
}

type feedPost struct {
	step      string
	startLine int64
	lines     []string
}

type fakeLog struct {
	path string
	data []byte
	// lean mode: lines are "L<n>"; first/last n, count, consecutive
	first, last, count int
	broken             string
}

type faultKind int

const (
	faultNone       faultKind = iota
	fault500                  // 500 with a VSS error body, nothing stored
	faultDropBefore           // connection closed before the request is handled
	faultDropAfter            // request handled, connection closed instead of the response
	faultHang                 // no answer until the client gives up
)

func (k faultKind) String() string {
	return [...]string{"none", "500", "drop-before", "drop-after", "hang"}[k]
}

// Resource kinds the fault hook sees.
const (
	kindRecords     = "records"
	kindFeed        = "feed"
	kindLogs        = "logs"
	kindAttachments = "attachments"
	kindEvents      = "events"
)

func newFake(t *testing.T) *fake {
	t.Helper()
	f := &fake{
		t: t, token: "job-token-" + uuid.NewString(),
		scope: uuid.NewString(), hub: "build", planID: uuid.NewString(), timelineID: uuid.NewString(), jobID: uuid.NewString(),
		records: map[string]map[string]any{}, feedLines: map[string]map[int64]string{},
		logs: map[int]*fakeLog{}, linked: map[string][]int{}, attachments: map[string][]byte{},
		requests: map[string]int{}, injected: map[string]int{},
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.closing = make(chan struct{})
	t.Cleanup(func() { close(f.closing) }) // runs first: releases hung handlers
	return f
}

func (f *fake) problem(format string, args ...any) {
	f.mu.Lock()
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

// checkProblems fails the test on any protocol violation the fake saw.
func (f *fake) checkProblems(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.problems {
		t.Error("fake server: " + p)
	}
}

func (f *fake) plan(t *testing.T) *azdo.Plan {
	t.Helper()
	c, err := azdo.New(f.srv.URL+"/org", azdo.StaticToken{Scheme: "Bearer", Value: f.token}, azdo.Options{
		HTTPClient: f.srv.Client(), Backoff: 2 * time.Millisecond, MaxBackoff: 10 * time.Millisecond, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &azdo.Plan{Client: c, Scope: f.scope, Hub: f.hub, PlanID: f.planID, TimelineID: f.timelineID}
}

func (f *fake) options(t *testing.T) Options {
	return Options{
		Plan: f.plan(t), JobID: f.jobID, RequestID: 4711, PlanVersion: 8, PagesDir: t.TempDir(),
		FeedInterval: 5 * time.Millisecond, TimelineInterval: 5 * time.Millisecond,
		RetryDelay: 2 * time.Millisecond, CompletionRetryDelay: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

var locationTemplates = []struct{ id, resource, template string }{
	{wire.LocationPlanEvents, "events", "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}"},
	{wire.LocationTimelines, "timelines", "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{timelineId}"},
	{wire.LocationRecords, "records", "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/{resource}"},
	{wire.LocationFeed, "feed", "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}"},
	{wire.LocationLogs, "logs", "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{logId}"},
	{wire.LocationAttachments, "attachments", "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}/{type}/{name}"},
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	if got, want := r.Header.Get("Authorization"), "Bearer "+f.token; got != want {
		f.problem("%s %s: Authorization is not the job token", r.Method, r.URL.Path)
		http.Error(w, `{"message":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if r.Method == http.MethodOptions && r.URL.Path == "/org/_apis/" {
		var locs []map[string]any
		for _, l := range locationTemplates {
			locs = append(locs, map[string]any{
				"id": l.id, "area": wire.AreaDistributedTask, "resourceName": l.resource, "routeTemplate": l.template,
				"resourceVersion": 1, "minVersion": "2.0", "maxVersion": "7.2", "releasedVersion": "7.1",
			})
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": len(locs), "value": locs})
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "api-version=") {
		f.problem("%s %s: no api-version in Accept %q", r.Method, r.URL.Path, r.Header.Get("Accept"))
	}
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/org/"), "/")
	for i, s := range segs {
		segs[i], _ = url.PathUnescape(s)
	}
	if len(segs) < 7 || segs[0] != f.scope || segs[1] != "_apis" || segs[2] != "distributedtask" || segs[3] != "hubs" ||
		segs[4] != f.hub || segs[5] != "plans" || segs[6] != f.planID {
		f.problem("unexpected route %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	rest := segs[7:]
	var kind string
	var handle func(body []byte) (int, any)
	switch {
	case r.Method == http.MethodPatch && len(rest) == 3 && rest[0] == "timelines" && rest[1] == f.timelineID && rest[2] == "records":
		kind, handle = kindRecords, f.patchRecords
	case r.Method == http.MethodPost && len(rest) == 5 && rest[0] == "timelines" && rest[1] == f.timelineID && rest[2] == "records" && rest[4] == "feed":
		kind, handle = kindFeed, func(b []byte) (int, any) { return f.postFeed(rest[3], b) }
	case r.Method == http.MethodPost && len(rest) == 1 && rest[0] == "logs":
		kind, handle = kindLogs, f.createLog
	case r.Method == http.MethodPost && len(rest) == 2 && rest[0] == "logs":
		kind, handle = kindLogs, func(b []byte) (int, any) { return f.appendLog(r, rest[1], b) }
	case r.Method == http.MethodPut && len(rest) == 7 && rest[0] == "timelines" && rest[1] == f.timelineID && rest[2] == "records" && rest[4] == "attachments":
		kind, handle = kindAttachments, func(b []byte) (int, any) { return f.putAttachment(r, rest[3], rest[5], rest[6], b) }
	case r.Method == http.MethodPost && len(rest) == 1 && rest[0] == "events":
		kind, handle = kindEvents, f.postEvent
	default:
		f.problem("unexpected route %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.requests[kind]++
	hook := f.fault
	f.mu.Unlock()
	fk := faultNone
	if hook != nil {
		fk = hook(kind)
	}
	if fk != faultNone {
		f.mu.Lock()
		f.injected[kind]++
		f.injected[fk.String()]++
		f.mu.Unlock()
	}
	switch fk {
	case fault500:
		io.Copy(io.Discard, r.Body)
		writeJSON(w, http.StatusInternalServerError, map[string]any{"message": "injected failure", "typeKey": "InjectedException"})
		return
	case faultDropBefore:
		hangUp(w)
		return
	case faultHang:
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-f.closing:
		}
		return
	}
	var body []byte
	if kind != kindLogs || len(rest) != 2 || !f.lean {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return
		}
	}
	status, out := handle(body)
	if fk == faultDropAfter {
		hangUp(w)
		return
	}
	writeJSON(w, status, out)
}

func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

func (f *fake) decode(what string, body []byte, v any) bool {
	if err := json.Unmarshal(body, v); err != nil {
		f.problem("%s: body is not JSON: %v", what, err)
		return false
	}
	return true
}

func (f *fake) patchRecords(body []byte) (int, any) {
	var in struct {
		Count int              `json:"count"`
		Value []map[string]any `json:"value"`
	}
	if !f.decode("PATCH records", body, &in) {
		return http.StatusBadRequest, nil
	}
	if in.Count != len(in.Value) {
		f.problem("PATCH records: count %d for %d records", in.Count, len(in.Value))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.patches = append(f.patches, in.Value)
	for _, rec := range in.Value {
		id, _ := rec["id"].(string)
		st := f.records[id]
		if st == nil {
			st = map[string]any{}
			f.records[id] = st
		}
		for k, v := range rec { // the service merges the fields sent
			st[k] = v
		}
		if lg, ok := rec["log"].(map[string]any); ok {
			lid := int(lg["id"].(float64))
			if l := f.linked[id]; len(l) == 0 || l[len(l)-1] != lid {
				f.linked[id] = append(l, lid)
			}
		}
	}
	return http.StatusOK, map[string]any{"count": len(in.Value), "value": in.Value}
}

func (f *fake) postFeed(recordID string, body []byte) (int, any) {
	var in taskagent.TimelineRecordFeedLinesWrapper
	if !f.decode("POST feed", body, &in) {
		return http.StatusBadRequest, nil
	}
	if recordID != f.jobID {
		f.problem("feed posted to record %s, want the job record %s", recordID, f.jobID)
	}
	if in.StepId == nil || in.StartLine == nil || in.Value == nil || in.Count == nil || *in.Count != len(*in.Value) {
		f.problem("feed body incomplete: %s", body)
		return http.StatusBadRequest, nil
	}
	step := in.StepId.String()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lean {
		f.feedCount += len(*in.Value)
		return http.StatusOK, nil
	}
	f.feedPosts = append(f.feedPosts, feedPost{step: step, startLine: int64(*in.StartLine), lines: *in.Value})
	m := f.feedLines[step]
	if m == nil {
		m = map[int64]string{}
		f.feedLines[step] = m
	}
	for i, l := range *in.Value {
		n := int64(*in.StartLine) + int64(i)
		if old, ok := m[n]; ok && old != l { // (f.problem would lock f.mu again)
			f.problems = append(f.problems, fmt.Sprintf("feed line %d of step %s posted twice with different text", n, step))
		}
		m[n] = l
	}
	return http.StatusOK, nil
}

func (f *fake) createLog(body []byte) (int, any) {
	var in struct {
		Path string `json:"path"`
	}
	if !f.decode("POST logs", body, &in) {
		return http.StatusBadRequest, nil
	}
	if !strings.HasPrefix(in.Path, `logs\`) {
		f.problem("log path %q, want logs\\<recordId>", in.Path)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextLog++
	id := f.nextLog
	f.logs[id] = &fakeLog{path: in.Path}
	loc := fmt.Sprintf("%s/org/%s/_apis/distributedtask/hubs/%s/plans/%s/logs/%d", f.srv.URL, f.scope, f.hub, f.planID, id)
	return http.StatusOK, map[string]any{"id": id, "path": in.Path, "location": loc, "createdOn": time.Now().UTC()}
}

func (f *fake) appendLog(r *http.Request, idStr string, body []byte) (int, any) {
	if mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" || params["api-version"] == "" {
		f.problem("log append Content-Type %q", r.Header.Get("Content-Type"))
	}
	id, err := strconv.Atoi(idStr)
	f.mu.Lock()
	l := f.logs[id]
	f.mu.Unlock()
	if err != nil || l == nil {
		f.problem("append to unknown log %q", idStr)
		return http.StatusNotFound, map[string]any{"message": "no such log"}
	}
	if f.lean {
		f.scanLean(l, r.Body)
	} else {
		f.mu.Lock()
		l.data = append(l.data, body...)
		f.mu.Unlock()
	}
	return http.StatusOK, map[string]any{"id": id, "path": l.path}
}

// scanLean checks an appended page line by line without keeping it: lines
// are "<timestamp> L<n>" with n counting up by one.
func (f *fake) scanLean(l *fakeLog, body io.Reader) {
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) < 30 || line[27] != 'Z' || line[28] != ' ' || line[29] != 'L' {
			l.broken = fmt.Sprintf("malformed line %q", line)
			continue
		}
		n, err := strconv.Atoi(string(line[30:]))
		if err != nil {
			l.broken = fmt.Sprintf("malformed line %q", line)
			continue
		}
		if l.count > 0 && n != l.last+1 && l.broken == "" {
			l.broken = fmt.Sprintf("line L%d follows L%d", n, l.last)
		}
		if l.count == 0 {
			l.first = n
		}
		l.last = n
		l.count++
	}
}

func (f *fake) putAttachment(r *http.Request, recordID, typ, name string, body []byte) (int, any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attachments[recordID+"/"+typ+"/"+name] = body
	f.attachCT = append(f.attachCT, r.Header.Get("Content-Type"))
	return http.StatusOK, map[string]any{"name": name, "type": typ, "recordId": recordID, "timelineId": f.timelineID}
}

func (f *fake) postEvent(body []byte) (int, any) {
	var ev wire.JobEvent
	if !f.decode("POST events", body, &ev) {
		return http.StatusBadRequest, nil
	}
	var raw map[string]any
	json.Unmarshal(body, &raw)
	for _, k := range []string{"name", "jobId", "requestId", "result", "agentShuttingDown"} {
		if _, ok := raw[k]; !ok {
			f.problem("JobCompleted event without %q: %s", k, body)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	return http.StatusOK, nil
}

// logText is the concatenated content of the logs a record was linked to.
func (f *fake) logText(recordID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, id := range f.linked[recordID] {
		l := f.logs[id]
		if l.path != `logs\`+recordID {
			f.problems = append(f.problems, fmt.Sprintf("record %s linked to log %d of %q", recordID, id, l.path))
		}
		b.Write(l.data)
	}
	return b.String()
}

// pages is the content of each log a record was linked to, in order.
func (f *fake) pages(recordID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, id := range f.linked[recordID] {
		out = append(out, string(f.logs[id].data))
	}
	return out
}

// feedText is a step's console lines as the service would show them: by
// line number, each once.
func (f *fake) feedText(step string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.feedLines[step]
	out := make([]string, 0, len(m))
	for n := int64(1); ; n++ {
		l, ok := m[n]
		if !ok {
			break
		}
		out = append(out, l)
	}
	if len(out) != len(m) {
		f.problems = append(f.problems, fmt.Sprintf("feed of step %s has gaps: %d lines, numbered up to %d", step, len(m), len(out)))
	}
	return out
}

func (f *fake) feedHas(step string, n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.feedLines[step]) >= n
}

func (f *fake) setFault(h func(kind string) faultKind) {
	f.mu.Lock()
	f.fault = h
	f.mu.Unlock()
}

// randomFaults fails the first request of every resource kind (taking the
// fault kinds in turn) and then a share p of requests at random, but after a
// fault lets the next two requests of that kind through, so that every
// retry policy the reporter has gets its item delivered.
func randomFaults(seed uint64, p float64, kinds ...faultKind) func(string) faultKind {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	grace := map[string]int{}
	seen := map[string]bool{}
	return func(kind string) faultKind {
		mu.Lock()
		defer mu.Unlock()
		if !seen[kind] {
			seen[kind] = true
			grace[kind] = 2
			return kinds[len(seen)%len(kinds)]
		}
		if grace[kind] > 0 {
			grace[kind]--
			return faultNone
		}
		if rng.Float64() >= p {
			return faultNone
		}
		grace[kind] = 2
		return kinds[rng.IntN(len(kinds))]
	}
}

// stripTimestamps checks and removes the "<O timestamp> " prefix of every
// log line.
func stripTimestamps(t *testing.T, text string) []string {
	t.Helper()
	if text == "" {
		return nil
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok {
			t.Errorf("log line without timestamp: %q", line)
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || len(ts) != 28 || !strings.HasSuffix(ts, "Z") {
			t.Errorf("log timestamp %q is not .NET \"O\" UTC format", ts)
		}
		out = append(out, rest)
	}
	return out
}

// noReporterGoroutines fails if any goroutine is still running reporter code.
func noReporterGoroutines(t *testing.T) {
	t.Helper()
	buf := make([]byte, 4<<20)
	n := runtime.Stack(buf, true)
	for _, g := range bytes.Split(buf[:n], []byte("\n\n")) {
		if bytes.Contains(g, []byte("internal/jobs/report.(*Reporter)")) {
			t.Errorf("goroutine survived Finish:\n%s", g)
		}
	}
}

// waitFor polls cond; the timeout is a hang guard, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// hangGuard bounds every wait in these tests; it is never a timing
// assertion, only a way to fail instead of hanging.
const hangGuard = 20 * time.Second

func startEmulator(t *testing.T) *devserver.Server {
	t.Helper()
	srv, err := devserver.Start(context.Background(), devserver.Options{PlainHTTP: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// startUI serves a UI for srv on loopback and returns it with its URL.
func startUI(t *testing.T, srv *devserver.Server, opts Options) (*UI, string) {
	t.Helper()
	u, err := New(srv, opts)
	if err != nil {
		t.Fatalf("new UI: %v", err)
	}
	t.Cleanup(func() { u.Close() })
	url, err := u.Serve(context.Background(), "")
	if err != nil {
		t.Fatalf("serve UI: %v", err)
	}
	return u, url
}

// fakeRun plays the agent's side of the plan API for one queued job, over
// real HTTP with the job's own token, so that the emulator emits the events
// the UI follows.
type fakeRun struct {
	t    *testing.T
	job  *devserver.Job
	plan *azdo.Plan
}

func newFakeRun(t *testing.T, srv *devserver.Server, name string) *fakeRun {
	t.Helper()
	job, err := srv.QueueJob(&wire.JobRequestMessage{JobDisplayName: name}, devserver.QueueOptions{})
	if err != nil {
		t.Fatalf("queue job: %v", err)
	}
	msg := job.Message()
	c, err := azdo.New(srv.URL(), azdo.StaticToken{Scheme: "Bearer", Value: job.Token()}, azdo.Options{Retries: -1})
	if err != nil {
		t.Fatalf("job client: %v", err)
	}
	return &fakeRun{t: t, job: job, plan: &azdo.Plan{
		Client: c, Scope: msg.Plan.ScopeIdentifier, Hub: msg.Plan.PlanType,
		PlanID: msg.Plan.PlanID, TimelineID: msg.Timeline.ID,
	}}
}

func (f *fakeRun) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	f.t.Cleanup(cancel)
	return ctx
}

func (f *fakeRun) jobID() uuid.UUID { return uuid.MustParse(f.job.ID()) }

// record builds a timeline record below the job (or the Job record itself
// when id is the job's).
func (f *fakeRun) record(id uuid.UUID, typ, name string, order int, state, result string) taskagent.TimelineRecord {
	now := &azuredevops.Time{Time: time.Now().UTC()}
	r := taskagent.TimelineRecord{Id: &id, Type: &typ, Name: &name, Order: &order}
	if id != f.jobID() {
		p := f.jobID()
		r.ParentId = &p
	}
	st := taskagent.TimelineRecordState(state)
	r.State = &st
	if state != "pending" {
		r.StartTime = now
	}
	if result != "" {
		res := taskagent.TaskResult(result)
		r.Result = &res
		r.FinishTime = now
	}
	return r
}

func (f *fakeRun) update(recs ...taskagent.TimelineRecord) {
	f.t.Helper()
	if _, err := f.plan.UpdateRecords(f.ctx(), recs); err != nil {
		f.t.Fatalf("update records: %v", err)
	}
}

func (f *fakeRun) feed(step uuid.UUID, start int64, lines ...string) {
	f.t.Helper()
	n, s := len(lines), uint64(start)
	vals := slices.Clone(lines)
	err := f.plan.AppendFeed(f.ctx(), f.job.ID(), taskagent.TimelineRecordFeedLinesWrapper{Count: &n, Value: &vals, StepId: &step, StartLine: &s})
	if err != nil {
		f.t.Fatalf("post feed: %v", err)
	}
}

func (f *fakeRun) complete(result string) {
	f.t.Helper()
	err := f.plan.RaiseEvent(f.ctx(), wire.JobEvent{Name: "JobCompleted", JobID: f.job.ID(), RequestID: f.job.RequestID(), Result: result})
	if err != nil {
		f.t.Fatalf("complete job: %v", err)
	}
}

// numbered makes lines "prefix 1", "prefix 2", … from first.
func numbered(prefix string, first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, first+i)
	}
	return out
}

// frame is any server message, decoded loosely.
type frame struct {
	Type     string          `json:"type"`
	Protocol int             `json:"protocol"`
	Server   string          `json:"server"`
	Runs     []Run           `json:"runs"`
	ID       string          `json:"id"`
	Run      json.RawMessage `json:"run"`
	Jobs     []Job           `json:"jobs"`
	Job      json.RawMessage `json:"job"`
	Record   Record          `json:"record"`
	Step     string          `json:"step"`
	Gen      string          `json:"gen"`
	First    int             `json:"first"`
	Lines    []string        `json:"lines"`
	Reset    bool            `json:"reset"`
	Reason   string          `json:"reason"`
	Error    string          `json:"error"`
}

// viewer is a protocol client that keeps what a page would: the runs, the
// watched run's records, the watched step's console. It fails the test on
// any breach of the protocol's promises (lines not contiguous).
type viewer struct {
	t    *testing.T
	conn *websocket.Conn

	server  string
	runs    map[string]Run
	records map[string]Record // of the watched run
	jobs    map[string]Job
	step    string
	gen     string
	lines   []string
	types   []string // every message type received, in order
	batches []frame  // every lines message, without its lines
	errors  []string
}

func wsURL(pageURL string) string { return "ws" + strings.TrimPrefix(pageURL, "http") + "ws" }

func dial(t *testing.T, pageURL string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: hangGuard}
	return d.Dial(wsURL(pageURL), hdr)
}

func newViewer(t *testing.T, pageURL string) *viewer {
	t.Helper()
	conn, _, err := dial(t, pageURL, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL(pageURL), err)
	}
	t.Cleanup(func() { conn.Close() })
	v := &viewer{t: t, conn: conn, runs: map[string]Run{}, records: map[string]Record{}, jobs: map[string]Job{}}
	if f := v.next(); f.Type != "hello" || f.Protocol != protocolVersion || f.Server == "" {
		t.Fatalf("first message: %+v, want hello with protocol %d", f, protocolVersion)
	}
	return v
}

func (v *viewer) send(w any) {
	v.t.Helper()
	if err := v.conn.WriteJSON(w); err != nil {
		v.t.Fatalf("send %v: %v", w, err)
	}
}

// watch asks for a run and step, resuming after the lines the viewer has.
func (v *viewer) watch(run, step string) {
	v.t.Helper()
	if step != v.step {
		v.step, v.gen, v.lines = step, "", nil
	}
	v.send(watch{Type: "watch", Run: run, Step: step, After: len(v.lines), Gen: v.gen})
}

func (v *viewer) next() frame {
	v.t.Helper()
	v.conn.SetReadDeadline(time.Now().Add(hangGuard))
	_, data, err := v.conn.ReadMessage()
	if err != nil {
		v.t.Fatalf("read: %v", err)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		v.t.Fatalf("server sent a frame that is not JSON: %q", data)
	}
	v.apply(f)
	return f
}

func (v *viewer) apply(f frame) {
	v.t.Helper()
	v.types = append(v.types, f.Type)
	switch f.Type {
	case "hello":
		v.server = f.Server
	case "runs":
		clear(v.runs)
		for _, r := range f.Runs {
			v.runs[r.ID] = r
		}
	case "run":
		var r Run
		json.Unmarshal(f.Run, &r)
		v.runs[r.ID] = r
	case "snapshot":
		clear(v.records)
		clear(v.jobs)
		for _, j := range f.Jobs {
			for _, r := range j.Records {
				v.records[r.ID] = r
			}
			j.Records = nil
			v.jobs[j.ID] = j
		}
	case "job":
		var j Job
		json.Unmarshal(f.Job, &j)
		v.jobs[j.ID] = j
	case "record":
		v.records[f.Record.ID] = f.Record
	case "lines":
		if f.Step != v.step {
			v.t.Fatalf("lines for step %s, but the viewer watches %s", f.Step, v.step)
		}
		if f.Reset {
			if f.First != 1 {
				v.t.Fatalf("reset lines start at %d, want 1", f.First)
			}
			v.lines = nil
		}
		if f.First != len(v.lines)+1 {
			v.t.Fatalf("lines start at %d but the viewer has %d: duplicated or lost lines", f.First, len(v.lines))
		}
		v.lines = append(v.lines, f.Lines...)
		v.gen = f.Gen
		head := f
		head.Lines = nil
		v.batches = append(v.batches, head)
	case "error":
		v.errors = append(v.errors, f.Error)
	}
}

// until reads messages until cond holds.
func (v *viewer) until(what string, cond func() bool) {
	v.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			v.t.Fatalf("gave up waiting for %s (messages so far: %v)", what, v.types)
		}
		v.next()
	}
}

func (v *viewer) hasLines(n int) func() bool { return func() bool { return len(v.lines) >= n } }

func (v *viewer) runDone(id string) func() bool {
	return func() bool { return v.runs[id].State == "completed" }
}

// reconnect drops the connection and opens a new one, keeping what the
// viewer has, as the page does after a network blip.
func (v *viewer) reconnect(pageURL string) {
	v.t.Helper()
	v.conn.Close()
	conn, _, err := dial(v.t, pageURL, nil)
	if err != nil {
		v.t.Fatalf("redial: %v", err)
	}
	v.t.Cleanup(func() { conn.Close() })
	v.conn = conn
	if f := v.next(); f.Type != "hello" {
		v.t.Fatalf("first message after reconnecting: %s, want hello", f.Type)
	}
}

func (u *UI) stats() hubStats {
	u.hub.mu.Lock()
	defer u.hub.mu.Unlock()
	return u.hub.stats
}

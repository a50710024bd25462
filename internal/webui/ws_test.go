package webui

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// startedStep queues a job with a running step and returns the run, the
// step id and the run id.
func startedStep(t *testing.T, f *fakeRun) (step uuid.UUID) {
	t.Helper()
	step = uuid.New()
	f.update(f.record(f.jobID(), "Job", "Build", 1, "inProgress", ""), f.record(step, "Task", "Compile", 1, "inProgress", ""))
	return step
}

func TestResumeAfterReconnect(t *testing.T) {
	cases := []struct {
		name      string
		keep      int    // lines the client keeps before it reconnects
		gen       string // "" keeps the gen it got; else sent instead
		wantFirst int    // first line of the first lines message after reconnecting
		wantReset bool
	}{
		{name: "resume from the last line", keep: 50, wantFirst: 51},
		{name: "resume from an earlier line", keep: 30, wantFirst: 31},
		{name: "fresh client", keep: 0, wantFirst: 1},
		{name: "stale generation starts over", keep: 50, gen: "0123456789abcdef.7", wantFirst: 1, wantReset: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEmulator(t)
			_, url := startUI(t, srv, Options{})
			f := newFakeRun(t, srv, "Build")
			step := startedStep(t, f)
			run := f.job.PlanID()
			for i := 0; i < 5; i++ {
				f.feed(step, int64(1+10*i), numbered("line", 1+10*i, 10)...)
			}

			v := newViewer(t, url)
			v.watch(run, step.String())
			v.until("the first 50 lines", v.hasLines(50))
			if len(v.lines) != 50 {
				t.Fatalf("viewer has %d lines, want 50", len(v.lines))
			}

			// Lines 51–100 arrive while the client is away.
			v.conn.Close()
			for i := 5; i < 10; i++ {
				f.feed(step, int64(1+10*i), numbered("line", 1+10*i, 10)...)
			}
			v.reconnect(url)
			v.lines = v.lines[:tc.keep]
			if tc.gen != "" {
				v.gen = tc.gen
			}
			v.send(watch{Type: "watch", Run: run, Step: step.String(), After: len(v.lines), Gen: v.gen})
			seen := len(v.batches)
			v.until("the first lines after reconnecting", func() bool { return len(v.batches) > seen })
			if b := v.batches[seen]; b.First != tc.wantFirst || b.Reset != tc.wantReset {
				t.Fatalf("first lines after reconnecting: first %d reset %v, want first %d reset %v", b.First, b.Reset, tc.wantFirst, tc.wantReset)
			}
			v.until("100 lines", v.hasLines(100))

			// And 101–150 live.
			for i := 10; i < 15; i++ {
				f.feed(step, int64(1+10*i), numbered("line", 1+10*i, 10)...)
			}
			v.until("150 lines", v.hasLines(150))
			if want := numbered("line", 1, 150); !slices.Equal(v.lines, want) {
				t.Fatalf("console after resuming:\n%v\nwant\n%v", v.lines, want)
			}
			if feed := f.job.Feed(step.String()); !slices.Equal(v.lines, feed) {
				t.Fatalf("console differs from the emulator's feed")
			}
		})
	}
}

func TestManySubscribers(t *testing.T) {
	srv := startEmulator(t)
	u, url := startUI(t, srv, Options{})
	f := newFakeRun(t, srv, "Build")
	run := f.job.PlanID()
	step := uuid.New()
	f.update(f.record(f.jobID(), "Job", "Build", 1, "inProgress", ""), f.record(step, "Task", "Test", 1, "pending", ""))

	const n = 40
	viewers := make([]*viewer, n)
	for i := range viewers {
		viewers[i] = newViewer(t, url)
		// Half watch from the start, half join midway and catch up.
		if i%2 == 0 {
			viewers[i].watch(run, step.String())
		}
	}
	f.update(f.record(step, "Task", "Test", 1, "inProgress", ""))
	for i := 0; i < 15; i++ {
		f.feed(step, int64(1+20*i), numbered("out", 1+20*i, 20)...)
		if i == 7 {
			for j := 1; j < n; j += 2 {
				viewers[j].watch(run, step.String())
			}
		}
	}
	f.update(f.record(step, "Task", "Test", 1, "completed", "succeeded"), f.record(f.jobID(), "Job", "Build", 1, "completed", "succeeded"))
	f.complete("succeeded")

	want := f.job.Feed(step.String())
	if len(want) != 300 {
		t.Fatalf("the emulator kept %d lines, want 300", len(want))
	}
	for i, v := range viewers {
		v.until("the run to complete", v.runDone(run))
		v.until("every line", v.hasLines(300))
		v.until("the final step record", func() bool { return v.records[step.String()].Result == "succeeded" })
		if !slices.Equal(v.lines, want) {
			t.Fatalf("viewer %d: console differs from the emulator's feed", i)
		}
		if r := v.runs[run]; r.Result != "succeeded" || r.Jobs != 1 || r.Done != 1 {
			t.Fatalf("viewer %d: run summary %+v, want 1 of 1 jobs succeeded", i, r)
		}
		if j := v.jobs[f.job.ID()]; j.State != "completed" || j.Result != "succeeded" {
			t.Fatalf("viewer %d: job %+v, want completed/succeeded", i, j)
		}
	}
	if got := u.stats().maxQueue; got > 256 {
		t.Fatalf("a queue held %d messages, over the limit of 256", got)
	}
}

func TestMalformedFrames(t *testing.T) {
	srv := startEmulator(t)
	_, url := startUI(t, srv, Options{MaxFrame: 1024})
	f := newFakeRun(t, srv, "Build")
	run := f.job.PlanID()
	cases := []struct {
		name  string
		kind  int
		frame string
		want  string // in the error message
	}{
		{"not JSON", websocket.TextMessage, "hello there", "invalid JSON"},
		{"empty", websocket.TextMessage, "", "empty"},
		{"array", websocket.TextMessage, `[1,2]`, "must be a"},
		{"two values", websocket.TextMessage, `{"type":"watch"} {"type":"watch"}`, "more than one"},
		{"unknown type", websocket.TextMessage, `{"type":"subscribe"}`, `unknown message type "subscribe"`},
		{"no type", websocket.TextMessage, `{}`, `unknown message type ""`},
		{"unknown field", websocket.TextMessage, `{"type":"watch","runId":"x"}`, "unknown field"},
		{"run not a GUID", websocket.TextMessage, `{"type":"watch","run":"../../etc"}`, "is not an id"},
		{"run wrong type", websocket.TextMessage, `{"type":"watch","run":42}`, `"run" must be a string`},
		{"negative after", websocket.TextMessage, `{"type":"watch","run":"` + run + `","step":"` + uuid.NewString() + `","after":-3}`, "0 or more"},
		{"fractional after", websocket.TextMessage, `{"type":"watch","after":1.5}`, `"after" must be a int`},
		{"step without run", websocket.TextMessage, `{"type":"watch","step":"` + uuid.NewString() + `"}`, "no run"},
		{"long gen", websocket.TextMessage, `{"type":"watch","gen":"` + strings.Repeat("g", 100) + `"}`, "gen is 100 bytes"},
		{"binary frame", websocket.BinaryMessage, `{"type":"watch"}`, "binary frames"},
		{"invalid UTF-8", websocket.TextMessage, "{\"type\":\"\xff\xfe\"}", "unknown message type"},
	}
	v := newViewer(t, url)
	v.until("the runs list", func() bool { return len(v.runs) == 1 })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v.t = t
			if err := v.conn.WriteMessage(tc.kind, []byte(tc.frame)); err != nil {
				t.Fatalf("send: %v", err)
			}
			before := len(v.errors)
			v.until("an error message", func() bool { return len(v.errors) > before })
			if got := v.errors[before]; !strings.Contains(got, tc.want) {
				t.Fatalf("error %q does not say %q", got, tc.want)
			}
			// The connection still works: a valid watch gets the run.
			n := len(v.types)
			v.send(watch{Type: "watch", Run: run})
			v.until("a snapshot", func() bool { return slices.Contains(v.types[n:], "snapshot") })
		})
	}
	v.t = t

	// A frame over MaxFrame ends that connection (1009) but not the server.
	// The server closes without reading the rest, so the client may see a
	// reset instead of the close frame.
	big := []byte(`{"type":"watch","gen":"` + strings.Repeat("x", 4096) + `"}`)
	if err := v.conn.WriteMessage(websocket.TextMessage, big); err == nil {
		for {
			_, _, err = v.conn.ReadMessage()
			if err != nil {
				break
			}
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("after an oversized frame: %v, want close 1009 or a reset", err)
		}
	} else if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("send an oversized frame: %v", err)
	}
	w := newViewer(t, url)
	w.watch(run, "")
	w.until("a snapshot on a new connection", func() bool { return slices.Contains(w.types, "snapshot") })
}

func TestOriginAndHostChecks(t *testing.T) {
	srv := startEmulator(t)
	_, url := startUI(t, srv, Options{AllowedHosts: []string{"build-box.example"}})
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	_, port, _ := strings.Cut(host, ":")
	cases := []struct {
		name, origin, host string
		ok                 bool
	}{
		{name: "no origin (not a browser)", ok: true},
		{name: "same origin", origin: "http://" + host, ok: true},
		{name: "loopback origin, other port", origin: "http://127.0.0.1:1", ok: true},
		{name: "localhost origin", origin: "http://localhost:" + port, ok: true},
		{name: "IPv6 loopback origin", origin: "http://[::1]:8080", ok: true},
		{name: "foreign origin", origin: "https://evil.example", ok: false},
		{name: "foreign origin on our port", origin: "http://evil.example:" + port, ok: false},
		{name: "null origin", origin: "null", ok: false},
		{name: "file origin", origin: "file://", ok: false},
		{name: "rebinding host", host: "evil.example:" + port, ok: false},
		{name: "rebinding host, same-origin page", origin: "http://evil.example:" + port, host: "evil.example:" + port, ok: false},
		{name: "allowed host name", origin: "http://build-box.example:" + port, host: "build-box.example:" + port, ok: true},
		{name: "localhost host", host: "localhost:" + port, ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{}
			if tc.origin != "" {
				hdr.Set("Origin", tc.origin)
			}
			if tc.host != "" {
				hdr.Set("Host", tc.host)
			}
			conn, resp, err := dial(t, url, hdr)
			if tc.ok {
				if err != nil {
					t.Fatalf("dial refused: %v (%v)", err, resp)
				}
				conn.Close()
				return
			}
			if err == nil {
				conn.Close()
				t.Fatalf("dial accepted, want 403")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("dial: %v, response %v; want 403", err, resp)
			}
			body, _ := io.ReadAll(resp.Body)
			if len(body) == 0 {
				t.Fatalf("403 without an explanation")
			}
		})
	}

	// The page itself is refused under a foreign Host too.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = "evil.example:" + port
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET / with a foreign Host: %d, want 403", resp.StatusCode)
	}
}

func TestPageNeedsNoNetwork(t *testing.T) {
	srv := startEmulator(t)
	_, url := startUI(t, srv, Options{})
	for _, path := range []string{"", "static/app.js", "static/style.css"} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("GET /%s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Fatalf("GET /%s: CSP %q does not confine the page to its origin", path, csp)
		}
	}
	if resp, err := http.Get(url + "nothing-here"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nothing-here: %v %v, want 404", resp, err)
	}
	// Nothing embedded points elsewhere: no URL with a host, no CDN.
	err := fs.WalkDir(static, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(static, path)
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url(http"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s contains %q: the page must not need the network", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRawLog(t *testing.T) {
	srv := startEmulator(t)
	_, url := startUI(t, srv, Options{})
	f := newFakeRun(t, srv, "Build")
	step := startedStep(t, f)
	log, err := f.plan.CreateLog(f.ctx(), "logs\\"+step.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.plan.AppendLog(f.ctx(), *log.Id, []byte("2025-01-01T00:00:00.0000000Z hello\n2025-01-01T00:00:01.0000000Z ##[section]Finishing: Compile\n")); err != nil {
		t.Fatal(err)
	}
	done := f.record(step, "Task", "Compile", 1, "completed", "succeeded")
	done.Log = &taskagent.TaskLogReference{Id: log.Id}
	f.update(done)

	v := newViewer(t, url)
	v.watch(f.job.PlanID(), "")
	v.until("the record's log", func() bool { return v.records[step.String()].Log == *log.Id })
	get := func(path string) (int, string) {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("api/jobs/" + f.job.ID() + "/logs/" + step.String())
	if code != http.StatusOK || !strings.Contains(body, "hello\n") || !strings.Contains(body, "Finishing: Compile") {
		t.Fatalf("raw log: %d %q", code, body)
	}
	if code, _ := get("api/jobs/" + f.job.ID() + "/logs/" + uuid.NewString()); code != http.StatusNotFound {
		t.Fatalf("raw log of an unknown record: %d, want 404", code)
	}
}

// The snapshot of a run is what the emulator holds, records in order.
func TestSnapshotMatchesEmulator(t *testing.T) {
	srv := startEmulator(t)
	_, url := startUI(t, srv, Options{})
	f := newFakeRun(t, srv, "Build")
	a, b := uuid.New(), uuid.New()
	warn := f.record(b, "Task", "Lint", 2, "completed", "succeededWithIssues")
	one, typ, msg := 1, taskagent.IssueType("warning"), "unused variable x"
	warn.WarningCount = &one
	warn.Issues = &[]taskagent.Issue{{Type: &typ, Message: &msg}}
	f.update(f.record(f.jobID(), "Job", "Build", 1, "inProgress", ""), f.record(a, "Task", "Compile", 1, "completed", "succeeded"), warn)

	v := newViewer(t, url)
	v.send(watch{Type: "watch", Run: f.job.PlanID()})
	v.until("a snapshot", func() bool { return slices.Contains(v.types, "snapshot") })
	if len(v.jobs) != 1 || len(v.records) != 3 {
		t.Fatalf("snapshot has %d jobs and %d records, want 1 and 3", len(v.jobs), len(v.records))
	}
	r := v.records[b.String()]
	if r.Result != "succeededWithIssues" || r.Warnings != 1 || len(r.Issues) != 1 || r.Issues[0].Message != msg || r.Issues[0].Type != "warning" {
		t.Fatalf("record with a warning: %+v", r)
	}
	if got := v.runs[f.job.PlanID()]; got.Warnings != 1 || got.State != "running" {
		t.Fatalf("run summary: %+v, want running with 1 warning", got)
	}
	raw, _ := json.Marshal(v.records[a.String()])
	if !strings.Contains(string(raw), `"state":"completed"`) {
		t.Fatalf("record JSON: %s", raw)
	}
}

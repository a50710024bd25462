package devserver_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
)

func TestFaultStatusNthAndTimes(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 10 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgentWithSession(t, s, c, "faulty")
	h := s.Faults().Add(devserver.Fault{Method: "GET", Resource: "messages", Nth: 2, Times: 2, Status: 503})
	other := s.Faults().Add(devserver.Fault{Method: "DELETE", Resource: "messages", Status: 500})
	var got []int
	for i := 0; i < 4; i++ {
		got = append(got, a.poll(-1).status)
	}
	if want := []int{202, 503, 503, 202}; !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if h.Hits() != 2 || other.Hits() != 0 {
		t.Fatalf("hits %d and %d", h.Hits(), other.Hits())
	}
	wantError(t, a.call("DELETE", "messages/1?sessionId="+a.session, "5.1-preview.1", nil), 500, "VssServiceException")
	faulted := 0
	for _, e := range s.Recorder().Exchanges() {
		if e.Fault != "" {
			faulted++
		}
	}
	if faulted != 3 {
		t.Fatalf("%d exchanges marked as faulted, want 3", faulted)
	}

	s.Faults().Clear()
	always := s.Faults().Add(devserver.Fault{Resource: "jobrequests", Times: -1, Status: 401})
	for i := 0; i < 3; i++ {
		if r := a.call("GET", "jobrequests", "5.1-preview.1", nil); r.status != 401 || len(r.body) != 0 {
			t.Fatalf("injected 401: %s", r)
		}
	}
	if always.Hits() != 3 {
		t.Fatalf("hits %d", always.Hits())
	}
	s.Faults().Clear()
	if r := a.call("GET", "jobrequests", "5.1-preview.1", nil); r.status != 200 {
		t.Fatalf("after Clear: %s", r)
	}
}

func TestFaultDropAndDelay(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 10 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "dropped")
	s.Faults().Add(devserver.Fault{Method: "POST", Resource: "sessions", Drop: true})
	req, _ := http.NewRequest("POST", a.pool("sessions"), strings.NewReader(`{"ownerName":"h","agent":{"id":1}}`))
	req.Header.Set("Accept", "application/json; api-version=5.1-preview.1")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", bearer(a.token))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %d", resp.StatusCode)
	}
	ex := s.Recorder().Exchanges()
	last := ex[len(ex)-1]
	if !last.Dropped || last.Status != 0 || last.Resource != "sessions" {
		t.Fatalf("recorded: %+v", last)
	}
	a.openSession() // the next call goes through

	const delay = 150 * time.Millisecond
	s.Faults().Add(devserver.Fault{Resource: "token", Delay: delay})
	start := time.Now()
	agentToken(t, c, a.reg)
	if el := time.Since(start); el < delay {
		t.Fatalf("a delayed call returned after %v, before the %v delay", el, delay)
	}
	ex = s.Recorder().Exchanges()
	if last := ex[len(ex)-1]; last.Resource != "token" || last.Status != 200 || !strings.Contains(last.Fault, "delay") {
		t.Fatalf("recorded: %+v", last)
	}
}

func TestRecorderRedactsCredentials(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "recorded")
	auth := regexp.MustCompile(`^(Basic|Bearer) sha256:[0-9a-f]{8}$`)
	sawToken := false
	for _, e := range s.Recorder().Exchanges() {
		if v := e.RequestHeader.Get("Authorization"); v != "" && !auth.MatchString(v) {
			t.Errorf("Authorization recorded as %q", v)
		}
		if bytes.Contains(e.ResponseBody, []byte(a.token)) || bytes.Contains(e.RequestBody, []byte(s.PAT())) {
			t.Errorf("credential recorded in %s %s", e.Method, e.Path)
		}
		if e.Resource == "token" {
			sawToken = true
			if !bytes.Contains(e.ResponseBody, []byte(`"access_token":"sha256:`)) || !bytes.Contains(e.RequestBody, []byte("client_assertion=")) {
				t.Errorf("token exchange: %s / %s", e.RequestBody, e.ResponseBody)
			}
		}
	}
	if !sawToken || s.Recorder().Total() < 2 {
		t.Fatal("exchanges missing")
	}
	s.Recorder().Reset()
	if len(s.Recorder().Exchanges()) != 0 {
		t.Fatal("Reset kept exchanges")
	}
}

func TestEvents(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 10 * time.Millisecond})
	sub := s.Subscribe(256)
	slow := s.Subscribe(1)
	_, w := startJobOn(t, s)
	step := w.m.Steps[0].ID
	w.mustRecords(map[string]any{"id": w.m.JobID, "state": "completed", "result": "succeeded"})
	w.plan("POST", "timelines/"+w.m.Timeline.ID+"/records/"+w.m.JobID+"/feed", mustJSON(t, map[string]any{"value": []string{"hi"}, "stepId": step, "startLine": 1}), "")
	w.plan("POST", "logs", []byte(`{"path":"x"}`), "")
	w.plan("POST", "logs/1", []byte("hi\n"), "application/octet-stream")
	w.complete("succeeded")
	var kinds []string
	timeout := time.After(hangGuard)
	for done := false; !done; {
		select {
		case e := <-sub.C:
			kinds = append(kinds, string(e.Kind))
			done = e.Kind == devserver.EventJobCompleted
		case <-timeout:
			t.Fatalf("events so far: %v", kinds)
		}
	}
	order := []devserver.EventKind{devserver.EventJobQueued, devserver.EventJobAssigned, devserver.EventJobStarted,
		devserver.EventRecordUpdated, devserver.EventFeedLines, devserver.EventLogAppended, devserver.EventJobCompleted}
	i := 0
	for _, k := range kinds {
		if i < len(order) && k == string(order[i]) {
			i++
		}
	}
	if i != len(order) {
		t.Fatalf("events %v lack the order %v", kinds, order)
	}
	if slow.Dropped() == 0 {
		t.Fatal("a full subscriber blocked nothing and dropped nothing")
	}
	sub.Cancel()
	sub.Cancel()
	if _, ok := <-sub.C; ok {
		// drain what was buffered before Cancel
		for range sub.C {
		}
	}
}

// startJobOn runs a job to the point where the worker starts, on s.
func startJobOn(t *testing.T, s *devserver.Server) (*agent, *worker) {
	a := newAgentWithSession(t, s, httpClient(t, s), "evented")
	job, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := a.takeJob()
	a.renew(m.RequestID)
	return a, &worker{t: t, a: a, m: m, job: job}
}

func TestCloseEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := devserver.Start(context.Background(), devserver.Options{Dir: t.TempDir(), PollHold: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := httpClient(t, s)
	a := newAgentWithSession(t, s, c, "closing")
	held := make(chan int, 1)
	go func() { held <- a.poll(-1).status }()
	eventually(t, "the poll to be held", func() bool { ss := s.Sessions(); return len(ss) == 1 && ss[0].Polls == 1 })
	sub := s.Subscribe(4)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := <-held; st != http.StatusAccepted {
		t.Fatalf("held poll answered %d on close", st)
	}
	if _, ok := <-sub.C; ok {
		t.Fatal("subscription not closed")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{}); err == nil {
		t.Fatal("queued a job on a closed emulator")
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestStartOptions(t *testing.T) {
	for name, o := range map[string]devserver.Options{
		"org with a slash": {Org: "a/b"},
		"org like a route": {Org: "_apis"},
		"empty pool":       {Pools: []string{"ok", " "}},
		"bad address":      {Addr: "256.0.0.1:x"},
	} {
		o.Dir = t.TempDir()
		if s, err := devserver.Start(context.Background(), o); err == nil {
			s.Close()
			t.Errorf("%s: started", name)
		}
	}
	s := startServer(t, devserver.Options{PlainHTTP: true, Org: "acme"})
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/acme") || s.CAFile() != "" {
		t.Fatalf("plain server: %s %q", s.URL(), s.CAFile())
	}
	a := do(t, http.DefaultClient, call{method: "GET", url: s.URL() + "/_apis/connectionData", auth: basic(s.PAT()), version: "-"})
	if a.status != 200 {
		t.Fatalf("plain connectionData: %s", a)
	}
}

func TestStartStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := devserver.Start(ctx, devserver.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(hangGuard):
		t.Fatal("the emulator did not stop with its context")
	}
	s.Close()
}

func TestDevserverCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- devserver.Main(ctx, []string{"--org", "demo", "--pool", "a,b", "--dir", t.TempDir()}, pw, nil)
		pw.Close()
	}()
	env := map[string]string{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			break
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	go io.Copy(io.Discard, pr)
	if !strings.HasSuffix(env["AZP_URL"], "/demo") || env["SSL_CERT_FILE"] == "" || env["AZP_TOKEN"] == "" || env["AZP_POOL"] != "a" {
		t.Fatalf("printed %v", env)
	}
	tls := clientForCA(t, env["SSL_CERT_FILE"])
	a := do(t, tls, call{method: "GET", url: env["AZP_URL"] + "/_apis/distributedtask/pools?poolName=b", auth: basic(env["AZP_TOKEN"])})
	if a.status != 200 || !strings.Contains(string(a.body), `"name":"b"`) {
		t.Fatalf("devserver answers: %s", a)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Main: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Main did not return after cancel")
	}
	for _, args := range [][]string{{"--bogus"}, {"extra"}} {
		if err := devserver.Main(context.Background(), args, io.Discard, nil); !errors.Is(err, devserver.ErrUsage) {
			t.Errorf("%v: %v, want ErrUsage", args, err)
		}
	}
	if err := devserver.Main(context.Background(), []string{"-h"}, io.Discard, nil); err != nil {
		t.Errorf("-h: %v", err)
	}
}

// --ui hands the running emulator to the view the command line passed in,
// and prints where it listens; without a view, --ui is not a flag.
func TestDevserverCommandUI(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var got *devserver.Server
	var gotAddr string
	ui := func(_ context.Context, s *devserver.Server, addr string) (string, error) {
		got, gotAddr = s, addr
		return "http://127.0.0.1:1/view", nil
	}
	done := make(chan error, 1)
	go func() {
		done <- devserver.Main(ctx, []string{"--dir", t.TempDir(), "--ui-addr", "127.0.0.1:0"}, pw, ui)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var view string
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "# web view: ") {
			view = strings.TrimPrefix(line, "# web view: ")
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if view != "http://127.0.0.1:1/view" || got == nil || gotAddr != "127.0.0.1:0" {
		t.Fatalf("view %q, server %v, addr %q", view, got, gotAddr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := devserver.Main(context.Background(), []string{"--ui"}, io.Discard, nil); !errors.Is(err, devserver.ErrUsage) {
		t.Fatalf("--ui without a view: %v, want ErrUsage", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

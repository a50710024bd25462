package azdo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// testLocations are the locations the fake serves: route templates as
// listener.md §1.3 and worker.md §7.1 give them, versions as dev.azure.com
// advertises them (7.2 newest, 7.1 released).
var testLocations = []ResourceLocation{
	{ID: wire.LocationPools, ResourceName: "pools", RouteTemplate: "_apis/{area}/{resource}/{poolId}", ResourceVersion: 1},
	{ID: wire.LocationAgents, ResourceName: "agents", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{agentId}", ResourceVersion: 3},
	{ID: wire.LocationSessions, ResourceName: "sessions", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{sessionId}", ResourceVersion: 1},
	{ID: wire.LocationMessages, ResourceName: "messages", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{messageId}", ResourceVersion: 1},
	{ID: wire.LocationJobRequests, ResourceName: "jobrequests", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{requestId}", ResourceVersion: 1},
	{ID: wire.LocationPlanEvents, ResourceName: "events", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}", ResourceVersion: 1},
	{ID: wire.LocationTimelines, ResourceName: "timelines", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{timelineId}", ResourceVersion: 1},
	{ID: wire.LocationRecords, ResourceName: "records", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/{resource}", ResourceVersion: 1},
	{ID: wire.LocationFeed, ResourceName: "feed", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}", ResourceVersion: 1},
	{ID: wire.LocationLogs, ResourceName: "logs", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{logId}", ResourceVersion: 1},
	{ID: wire.LocationAttachments, ResourceName: "attachments", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}/{type}/{name}", ResourceVersion: 1},
	// Test-only locations for route expansion on the wire.
	{ID: "11111111-0000-0000-0000-000000000001", Area: "test", ResourceName: "things", RouteTemplate: "_apis/{area}/{resource}/{*path}", ResourceVersion: 1},
	{ID: "11111111-0000-0000-0000-000000000002", Area: "test", ResourceName: "old", RouteTemplate: "_apis/{area}/{resource}", ResourceVersion: 1, MinVersion: "6.0", MaxVersion: "7.2", ReleasedVersion: "7.1"},
}

func init() {
	for i := range testLocations {
		l := &testLocations[i]
		if l.Area == "" {
			l.Area = wire.AreaDistributedTask
		}
		if l.MaxVersion == "" {
			l.MinVersion, l.MaxVersion, l.ReleasedVersion = "1.0", "7.2", "7.1"
		}
	}
}

// seen is one request as the fake received it.
type seen struct {
	Method  string
	Path    string // escaped, as on the wire
	Query   string
	Header  http.Header
	Body    []byte
	Attempt int // 1-based count of requests to the same method and path
}

// fake is an Azure DevOps organization at {srv.URL}/org over TLS on
// 127.0.0.1. It answers OPTIONS _apis/ with testLocations and hands every
// other request to handle (200 {} when nil).
type fake struct {
	t      *testing.T
	srv    *httptest.Server
	prefix string

	mu      sync.Mutex
	options int
	optHdr  http.Header // of the last OPTIONS request
	reqs    []seen
	counts  map[string]int
	handle  func(w http.ResponseWriter, r *http.Request, s seen)
	optWait chan struct{} // when set, OPTIONS blocks until it is closed
	// optHook, when set, may answer OPTIONS instead (returning true).
	optHook func(w http.ResponseWriter) bool
}

func newFake(t *testing.T, prefix string) *fake {
	t.Helper()
	f := &fake{t: t, prefix: prefix, counts: map[string]int{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	// Connections cut by clients that gave up are expected.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) url() string { return f.srv.URL + f.prefix }

func (f *fake) setHandler(h func(w http.ResponseWriter, r *http.Request, s seen)) {
	f.mu.Lock()
	f.handle = h
	f.mu.Unlock()
}

func (f *fake) setOptHook(h func(w http.ResponseWriter) bool) {
	f.mu.Lock()
	f.optHook = h
	f.mu.Unlock()
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seen{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	if r.Method == http.MethodOptions && s.Path == f.prefix+"/_apis/" {
		f.mu.Lock()
		f.options++
		f.optHdr = s.Header
		wait, hook := f.optWait, f.optHook
		f.mu.Unlock()
		if wait != nil {
			<-wait
		}
		if hook != nil && hook(w) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": len(testLocations), "value": testLocations})
		return
	}
	f.mu.Lock()
	key := s.Method + " " + s.Path
	f.counts[key]++
	s.Attempt = f.counts[key]
	f.reqs = append(f.reqs, s)
	h := f.handle
	f.mu.Unlock()
	if h == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	h(w, r, s)
}

func (f *fake) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fake) optionsCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.options
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// vssError writes the service's wrapped-exception body.
func vssError(w http.ResponseWriter, status int, typeKey, message string) {
	writeJSON(w, status, map[string]any{
		"$id": "1", "innerException": nil, "message": message,
		"typeName": "Microsoft.TeamFoundation.DistributedTask.WebApi." + typeKey + ", Microsoft.TeamFoundation.DistributedTask.WebApi",
		"typeKey":  typeKey, "errorCode": 0, "eventId": 3000,
	})
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// sleeps records the delays Send asks for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// newClient returns a client for f that never really waits between retries.
func newClient(t *testing.T, f *fake, ts TokenSource, opts Options) (*Client, *sleeps) {
	t.Helper()
	if opts.HTTPClient == nil {
		opts.HTTPClient = f.srv.Client()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	c, err := New(f.url(), ts, opts)
	if err != nil {
		t.Fatal(err)
	}
	s := &sleeps{}
	c.sleep = s.sleep
	return c, s
}

// tokens is a TokenSource handing out "secret-N" bearer tokens: the same one
// until refresh is asked for or next is called.
type tokens struct {
	mu    sync.Mutex
	n     int
	calls []bool // the refresh argument of every call
	err   error
}

func (ts *tokens) Token(_ context.Context, refresh bool) (Token, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.calls = append(ts.calls, refresh)
	if ts.err != nil {
		return Token{}, ts.err
	}
	if refresh || ts.n == 0 {
		ts.n++
	}
	return Token{Scheme: "Bearer", Value: ts.value(ts.n)}, nil
}

func (ts *tokens) value(n int) string {
	return "secret-" + strings.Repeat("x", 12) + "-" + string(rune('0'+n))
}

func (ts *tokens) next() {
	ts.mu.Lock()
	ts.n++
	ts.mu.Unlock()
}

func (ts *tokens) refreshes() []bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]bool(nil), ts.calls...)
}

// debugLog returns a logger writing everything at debug level to a buffer.
func debugLog() (*slog.Logger, *syncBuffer) {
	b := &syncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

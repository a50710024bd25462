package azdo

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExpandRoute(t *testing.T) {
	loc := func(tmpl string) ResourceLocation {
		return ResourceLocation{Area: "distributedtask", ResourceName: "messages", RouteTemplate: tmpl}
	}
	const msgs = "_apis/{area}/pools/{poolId}/{resource}/{messageId}"
	for _, tc := range []struct {
		name   string
		tmpl   string
		values map[string]string
		want   string
	}{
		{"area and resource", "_apis/{area}/{resource}", nil, "_apis/distributedtask/messages"},
		{"optional trailing segment dropped", msgs, map[string]string{"poolId": "642"}, "_apis/distributedtask/pools/642/messages"},
		{"all values", msgs, map[string]string{"poolId": "642", "messageId": "1120"}, "_apis/distributedtask/pools/642/messages/1120"},
		{"names case-insensitive", msgs, map[string]string{"POOLID": "7", "MessageID": "8"}, "_apis/distributedtask/pools/7/messages/8"},
		{"empty value dropped", msgs, map[string]string{"poolId": "7", "messageId": ""}, "_apis/distributedtask/pools/7/messages"},
		{"missing middle value drops its segment", msgs, map[string]string{"messageId": "9"}, "_apis/distributedtask/pools/messages/9"},
		{"wildcard like a name", "_apis/{area}/{*path}", map[string]string{"path": "x"}, "_apis/distributedtask/x"},
		{"wildcard value escaped", "_apis/{area}/{*path}", map[string]string{"path": "a b/c"}, "_apis/distributedtask/a%20b%2Fc"},
		{"reserved characters escaped", "{scope}/_apis", map[string]string{"scope": "a?b#c%d"}, "a%3Fb%23c%25d/_apis"},
		{"dotdot value cannot climb", "{scope}/_apis/{resource}", map[string]string{"scope": ".."}, ""},
		{"dot value cannot vanish", "{scope}/_apis/{resource}", map[string]string{"scope": "."}, ""},
		{"three dots are a name", "{scope}/_apis", map[string]string{"scope": "..."}, ".../_apis"},
		{"values forming dotdot", "_apis/{a}{b}/x", map[string]string{"a": ".", "b": "."}, ""},
		{"placeholder beside dots", "_apis/..{a}/x", nil, ""},
		{"dots with a value are a name", "_apis/..{a}/x", map[string]string{"a": "b"}, "_apis/..b/x"},
		{"literal dotdot in template kept", "_apis/../{resource}", nil, "_apis/../messages"},
		{"caller area wins", "_apis/{area}/{resource}", map[string]string{"area": "other"}, "_apis/other/messages"},
		{"partial segment keeps literal", "_apis/v-{ver}/{resource}", nil, "_apis/v-/messages"},
		{"partial segment filled", "_apis/v-{ver}/{resource}", map[string]string{"ver": "2"}, "_apis/v-2/messages"},
		{"escaped braces", "_apis/{{lit}}/{resource}", nil, "_apis/{lit}/messages"},
		{"slashes collapsed", "/_apis//{area}/", nil, "_apis/distributedtask"},
		{"unclosed parameter swallows the rest", "_apis/{area}/{oops", nil, "_apis/distributedtask"},
		{"empty template", "", nil, ""},
	} {
		got, err := expandRoute(loc(tc.tmpl), tc.values)
		if tc.want == "" && tc.tmpl != "" {
			if err == nil || !strings.Contains(err.Error(), "path segment") {
				t.Errorf("%s: expandRoute(%q, %v) = %q, %v; want an error", tc.name, tc.tmpl, tc.values, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: expandRoute(%q, %v) = %q, %v; want %q", tc.name, tc.tmpl, tc.values, got, err, tc.want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	// Location versions as dev.azure.com advertises them, varied per case.
	loc := func(minV, maxV, released string, res int) ResourceLocation {
		return ResourceLocation{ID: "x", Area: "distributedtask", ResourceName: "r", MinVersion: minV, MaxVersion: maxV, ReleasedVersion: released, ResourceVersion: res}
	}
	for _, tc := range []struct {
		name      string
		loc       ResourceLocation
		requested string
		want      string // "" = error
		accept    string // Accept parameter; defaults to "api-version=" + want
	}{
		{"preview within range kept", loc("1.0", "7.2", "7.1", 1), "5.1-preview.1", "5.1-preview.1", ""},
		{"resource version clamped", loc("1.0", "7.2", "7.1", 1), "5.1-preview.3", "5.1-preview.1", ""},
		{"resource version 0 on the server", loc("1.0", "7.2", "7.1", 0), "5.1-preview.1", "5.1-preview", ""},
		{"resource version below the server's kept", loc("1.0", "7.2", "7.1", 4), "6.0-preview.2", "6.0-preview.2", ""},
		{"released stays released", loc("1.0", "7.2", "7.1", 1), "5.1", "5.1", ""},
		{"requested at released", loc("1.0", "7.2", "7.1", 1), "7.1", "7.1", ""},
		{"unreleased forces preview", loc("1.0", "7.2", "7.1", 1), "7.2", "7.2-preview", ""},
		{"never released forces preview", loc("1.0", "7.2", "0.0", 1), "5.1", "5.1-preview", ""},
		{"empty released reads as never", loc("1.0", "7.2", "", 1), "5.1", "5.1-preview", ""},
		{"newer than max clamps to max preview", loc("1.0", "7.2", "7.1", 1), "8.0", "7.2-preview", ""},
		{"newer than max drops resource version", loc("1.0", "7.2", "7.1", 3), "8.0-preview.5", "7.2-preview", ""},
		{"newer than released max is released", loc("1.0", "7.2", "7.2", 3), "8.0-preview.5", "7.2", ""},
		{"at min", loc("6.0", "7.2", "7.1", 1), "6.0-preview.1", "6.0-preview.1", ""},
		{"below min", loc("6.0", "7.2", "7.1", 1), "5.1-preview.1", "", ""},
		{"minor compared numerically", loc("5.10", "7.2", "7.1", 1), "5.9", "", ""},
		{"server versions with build parts", loc("1.0.0", "7.2.0.0", "7.1.0", 1), "8.0", "7.2-preview", ""},
		{"leading v", loc("1.0", "7.2", "7.1", 1), "v5.1", "5.1", ""},
		{"stage any case", loc("1.0", "7.2", "7.1", 1), "5.1-PREVIEW.1", "5.1-preview.1", ""},
		{"major only", loc("1.0", "7.2", "7.1", 1), "5", "5.0", ""},
		{"legacy form for 1.0", loc("1.0", "7.2", "7.1", 2), "1.0-preview.2", "1.0-preview.2", "api-version=1.0; res-version=2"},
		{"legacy form without resource", loc("1.0", "7.2", "7.1", 2), "1.0", "1.0", "api-version=1.0"},
		{"no max sends as asked", loc("", "", "", 0), "5.1-preview.1", "5.1-preview.1", ""},
		{"bad requested", loc("1.0", "7.2", "7.1", 1), "five", "", ""},
		{"bad stage", loc("1.0", "7.2", "7.1", 1), "5.1-beta", "", ""},
		{"bad resource version", loc("1.0", "7.2", "7.1", 1), "5.1-preview.x", "", ""},
		{"three parts requested", loc("1.0", "7.2", "7.1", 1), "5.1.2", "", ""},
		{"empty requested", loc("1.0", "7.2", "7.1", 1), "", "", ""},
		{"bad server max", loc("1.0", "seven", "7.1", 1), "5.1", "", ""},
		{"bad server min", loc("x", "7.2", "7.1", 1), "5.1", "", ""},
	} {
		v, err := negotiate(tc.loc, tc.requested)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: negotiate(%q) = %q, want an error", tc.name, tc.requested, v)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: negotiate(%q): %v", tc.name, tc.requested, err)
			continue
		}
		if v.String() != tc.want {
			t.Errorf("%s: negotiate(%q) = %q, want %q", tc.name, tc.requested, v, tc.want)
		}
		accept := tc.accept
		if accept == "" {
			accept = "api-version=" + tc.want
		}
		if got := v.acceptParams(); got != accept {
			t.Errorf("%s: Accept parameters %q, want %q", tc.name, got, accept)
		}
	}
}

func TestNegotiateBelowMinError(t *testing.T) {
	_, err := negotiate(ResourceLocation{ID: "x", Area: "distributedtask", ResourceName: "agents", MinVersion: "6.0", MaxVersion: "7.2", ReleasedVersion: "7.1"}, "5.1-preview.1")
	if !errors.Is(err, ErrAPIVersion) {
		t.Fatalf("error %v is not ErrAPIVersion", err)
	}
	for _, w := range []string{"5.1-preview.1", "distributedtask/agents", "6.0", "7.2", "update goagent"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// The negotiated version is what goes on the wire; a version below the
// location's minimum never leaves the client.
func TestNegotiationOnTheWire(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	ctx := testContext(t)
	if _, err := c.Send(ctx, Request{Method: http.MethodGet, Location: "11111111-0000-0000-0000-000000000001", APIVersion: "8.1-preview.4"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[0].Header.Get("Accept"); got != "application/json; api-version=7.2-preview" {
		t.Errorf("Accept %q", got)
	}
	_, err := c.Send(ctx, Request{Method: http.MethodGet, Location: "11111111-0000-0000-0000-000000000002", APIVersion: "5.1"}, nil)
	if !errors.Is(err, ErrAPIVersion) {
		t.Fatalf("below-min request: %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests reached the server, want 1", n)
	}
}

func TestRouteOnTheWire(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	for _, tc := range []struct {
		value, path string
	}{
		{"a b/c", "/org/_apis/test/things/a%20b%2Fc"},
		{"../../etc", "/org/_apis/test/things/..%2F..%2Fetc"},
		{"50%", "/org/_apis/test/things/50%25"},
		{"ü", "/org/_apis/test/things/%C3%BC"},
	} {
		q := url.Values{"b": {"x&y"}, "a": {"1 2"}}
		if _, err := c.Send(testContext(t), Request{Method: http.MethodGet, Location: "11111111-0000-0000-0000-000000000001",
			RouteValues: map[string]string{"path": tc.value}, Query: q}, nil); err != nil {
			t.Fatal(err)
		}
		reqs := f.requests()
		r := reqs[len(reqs)-1]
		if r.Path != tc.path {
			t.Errorf("value %q: path %q, want %q", tc.value, r.Path, tc.path)
		}
		if r.Query != "a=1+2&b=x%26y" {
			t.Errorf("value %q: query %q", tc.value, r.Query)
		}
	}
}

// A value that would be a dot segment never leaves the client.
func TestDotSegmentValueRefused(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	p := &Plan{Client: c, Scope: "s", Hub: "build", PlanID: "p", TimelineID: "t"}
	_, err := p.CreateAttachment(testContext(t), "r", "DistributedTask.Core.Summary", "..", strings.NewReader("x"), 1)
	if err == nil || !strings.Contains(err.Error(), `".." path segment`) {
		t.Fatalf("error %v", err)
	}
	if len(f.requests()) != 0 {
		t.Fatal("the request went out")
	}
}

// Characters a server's template may hold but a path may not are escaped,
// and the result stays under the base path.
func TestJoinPath(t *testing.T) {
	base, _ := ParseBaseURL("https://x/tfs/My%20Collection")
	for _, tc := range []struct{ rel, want string }{
		{"_apis/connectionData", "https://x/tfs/My%20Collection/_apis/connectionData"},
		{"%2F ", "https://x/tfs/My%20Collection/%2F%20"},
		{"a:b/_apis", "https://x/tfs/My%20Collection/a:b/_apis"},
		{"50%/%zz/%4", "https://x/tfs/My%20Collection/50%25/%25zz/%254"},
		{"//evil.example/x?y#z", "https://x/tfs/My%20Collection///evil.example/x%3Fy%23z"},
		{"é", "https://x/tfs/My%20Collection/%C3%A9"},
	} {
		u, err := joinPath(base, tc.rel)
		if err != nil || u.String() != tc.want {
			t.Errorf("joinPath(%q) = %v, %v; want %s", tc.rel, u, err, tc.want)
		}
	}
}

func TestLocationsCachedPerBaseURL(t *testing.T) {
	ctx := testContext(t)
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	for range 5 {
		if _, err := c.PoolsByName(ctx, "p"); err != nil {
			t.Fatal(err)
		}
	}
	// A copy with other tokens shares the cache.
	if _, err := c.WithTokens(StaticToken{Scheme: "Bearer", Value: "j"}).PoolsByName(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n := f.optionsCalls(); n != 1 {
		t.Fatalf("%d OPTIONS calls for one base URL, want 1", n)
	}

	// Clients sharing a Locations share it; another base URL is its own entry.
	shared := NewLocations()
	f2 := newFake(t, "/org")
	for range 3 {
		c2, _ := newClient(t, f2, nil, Options{Locations: shared})
		if _, err := c2.PoolsByName(ctx, "p"); err != nil {
			t.Fatal(err)
		}
	}
	if n := f2.optionsCalls(); n != 1 {
		t.Fatalf("%d OPTIONS calls with a shared cache, want 1", n)
	}
	c3, err := New(f2.url()+"/", nil, Options{HTTPClient: f2.srv.Client(), Locations: shared}) // same base, other spelling
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.PoolsByName(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n := f2.optionsCalls(); n != 1 {
		t.Fatalf("a trailing slash made another OPTIONS call (%d)", n)
	}
	f3 := newFake(t, "/tfs/DefaultCollection")
	c4, _ := newClient(t, f3, nil, Options{Locations: shared})
	if _, err := c4.PoolsByName(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if f3.optionsCalls() != 1 {
		t.Fatalf("another base URL was served from the cache")
	}

	// Without a shared cache each client asks.
	c5, _ := newClient(t, f2, nil, Options{})
	if _, err := c5.PoolsByName(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if n := f2.optionsCalls(); n != 2 {
		t.Fatalf("a private cache was not private (%d OPTIONS)", n)
	}
}

func TestConcurrentFirstLookupsCollapse(t *testing.T) {
	f := newFake(t, "/org")
	release := make(chan struct{})
	f.mu.Lock()
	f.optWait = release
	f.mu.Unlock()
	c, _ := newClient(t, f, nil, Options{})
	ctx := testContext(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.PoolsByName(ctx, "p")
			errs <- err
		}()
	}
	// A caller that gives up stops waiting although the lookup goes on.
	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := c.PoolsByName(cctx, "p")
		gaveUp <- err
	}()
	waitFor(t, func() bool { return f.optionsCalls() >= 1 })
	// Give the other callers time to pile up behind the first lookup: were
	// they not collapsed, each would show up here as an OPTIONS call.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) && f.optionsCalls() < n {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled waiter returned %v", err)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := f.optionsCalls(); got != 1 {
		t.Fatalf("%d OPTIONS calls for %d concurrent first lookups, want 1", got, n)
	}
	if got := len(f.requests()); got != n {
		t.Fatalf("%d pool requests, want %d", got, n)
	}
}

func TestUnknownLocation(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	_, err := c.Send(testContext(t), Request{Method: http.MethodGet, Location: "deadbeef-0000-0000-0000-000000000000", APIVersion: "5.1"}, nil)
	if !errors.Is(err, ErrLocationNotFound) {
		t.Fatalf("error %v is not ErrLocationNotFound", err)
	}
	for _, w := range []string{"deadbeef-0000-0000-0000-000000000000", f.url() + "/", "organization or collection URL"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if len(f.requests()) != 0 {
		t.Error("a request went out for an unknown location")
	}
}

// A failed discovery is not cached, and neither is an empty list (a server
// that lists no locations is not Azure DevOps): the next call asks again.
func TestLocationFailureNotCached(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		kind   error
		has    string
	}{
		{"empty list", func(w http.ResponseWriter) { writeJSON(w, http.StatusOK, map[string]any{"count": 0, "value": []any{}}) },
			ErrLocationNotFound, "listed none"},
		{"403", func(w http.ResponseWriter) { vssError(w, http.StatusForbidden, "AccessDeniedException", "no") },
			ErrAccessDenied, "discover resource locations"},
	} {
		f := newFake(t, "/org")
		var failing atomic.Bool
		failing.Store(true)
		f.setOptHook(func(w http.ResponseWriter) bool {
			if failing.Load() {
				tc.answer(w)
			}
			return failing.Load()
		})
		c, _ := newClient(t, f, nil, Options{})
		_, err := c.PoolsByName(testContext(t), "p")
		if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.has) {
			t.Fatalf("%s: first call: %v", tc.name, err)
		}
		failing.Store(false)
		if _, err := c.PoolsByName(testContext(t), "p"); err != nil {
			t.Fatalf("%s: after the server recovered: %v", tc.name, err)
		}
		if n := f.optionsCalls(); n != 2 {
			t.Fatalf("%s: %d OPTIONS calls, want 2", tc.name, n)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

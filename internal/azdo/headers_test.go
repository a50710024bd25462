package azdo

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
)

func TestHeadersOnTheWire(t *testing.T) {
	f := newFake(t, "/org")
	var fail503 atomic.Bool
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		if fail503.Load() && s.Attempt == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	c, _ := newClient(t, f, StaticToken{Scheme: "Bearer", Value: "tok"}, Options{UserAgent: "goagent/1.2.3 (linux-x64)"})
	ctx := testContext(t)
	const loc = "11111111-0000-0000-0000-000000000001"

	for _, tc := range []struct {
		name        string
		req         Request
		accept      string
		contentType string // "" = no Content-Type header
		body        string
	}{
		{"GET negotiated", Request{Method: http.MethodGet, Location: loc, APIVersion: "5.1-preview.1", RouteValues: map[string]string{"path": "a"}},
			"application/json; api-version=5.1-preview.1", "", ""},
		{"DELETE without body", Request{Method: http.MethodDelete, Location: loc, APIVersion: "5.1-preview.1", RouteValues: map[string]string{"path": "b"}},
			"application/json; api-version=5.1-preview.1", "", ""},
		{"POST JSON", Request{Method: http.MethodPost, Location: loc, APIVersion: "5.1-preview.1", RouteValues: map[string]string{"path": "c"}, Body: map[string]int{"requestId": 7}},
			"application/json; api-version=5.1-preview.1", "application/json; charset=utf-8; api-version=5.1-preview.1", `{"requestId":7}`},
		{"PATCH JSON negotiated down", Request{Method: http.MethodPatch, Location: loc, APIVersion: "9.0", RouteValues: map[string]string{"path": "d"}, Body: []int{1}},
			"application/json; api-version=7.2-preview", "application/json; charset=utf-8; api-version=7.2-preview", `[1]`},
		{"legacy 1.0", Request{Method: http.MethodPut, Location: loc, APIVersion: "1.0-preview.1", RouteValues: map[string]string{"path": "e"}, Body: true},
			"application/json; api-version=1.0; res-version=1", "application/json; charset=utf-8; api-version=1.0-preview.1", `true`},
		{"raw bytes", Request{Method: http.MethodPost, Location: loc, APIVersion: "5.1-preview.1", RouteValues: map[string]string{"path": "f"}, Body: []byte("line\n")},
			"application/json; api-version=5.1-preview.1", "application/octet-stream; api-version=5.1-preview.1", "line\n"},
		{"raw with type", Request{Method: http.MethodPost, Location: loc, APIVersion: "5.1-preview.1", RouteValues: map[string]string{"path": "g"}, Body: strings.NewReader("# md"), ContentType: "text/markdown"},
			"application/json; api-version=5.1-preview.1", "text/markdown; api-version=5.1-preview.1", "# md"},
		{"fixed path without version", Request{Method: http.MethodGet, Path: "_apis/connectionData"},
			"application/json", "", ""},
	} {
		before := len(f.requests())
		if _, err := c.Send(ctx, tc.req, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r := f.requests()[before]
		h := r.Header
		if got := h.Get("Accept"); got != tc.accept {
			t.Errorf("%s: Accept %q, want %q", tc.name, got, tc.accept)
		}
		if got, ok := h["Content-Type"]; tc.contentType == "" && ok {
			t.Errorf("%s: Content-Type %q on a request without body", tc.name, got)
		} else if tc.contentType != "" && h.Get("Content-Type") != tc.contentType {
			t.Errorf("%s: Content-Type %q, want %q", tc.name, h.Get("Content-Type"), tc.contentType)
		}
		if string(r.Body) != tc.body {
			t.Errorf("%s: body %q, want %q", tc.name, r.Body, tc.body)
		}
		for k, want := range map[string]string{
			"X-Tfs-Fedauthredirect": "Suppress",
			"User-Agent":            "goagent/1.2.3 (linux-x64)",
			"Accept-Language":       "en-US",
			"Authorization":         "Bearer tok",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s %q, want %q", tc.name, k, got, want)
			}
		}
	}

	// X-TFS-Session is one GUID per client (and its token copies);
	// X-VSS-E2EID a new GUID per request, retries included.
	fail503.Store(true)
	if _, err := c.WithTokens(StaticToken{Scheme: "Bearer", Value: "job"}).Send(ctx, Request{Method: http.MethodGet, Location: loc, RouteValues: map[string]string{"path": "retry"}}, nil); err != nil {
		t.Fatal(err)
	}
	fail503.Store(false)
	other, _ := newClient(t, f, nil, Options{})
	if _, err := other.Send(ctx, Request{Method: http.MethodGet, Location: loc, RouteValues: map[string]string{"path": "other"}}, nil); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	session := reqs[0].Header.Get("X-Tfs-Session")
	if _, err := uuid.Parse(session); err != nil {
		t.Fatalf("X-TFS-Session %q: %v", session, err)
	}
	e2e := map[string]bool{}
	for i, r := range reqs {
		id := r.Header.Get("X-Vss-E2eid")
		if _, err := uuid.Parse(id); err != nil {
			t.Errorf("request %d: X-VSS-E2EID %q: %v", i, id, err)
		}
		if e2e[id] {
			t.Errorf("request %d: X-VSS-E2EID %q repeated", i, id)
		}
		e2e[id] = true
		got := r.Header.Get("X-Tfs-Session")
		if last := i == len(reqs)-1; last && got == session {
			t.Errorf("another client shares X-TFS-Session %q", got)
		} else if !last && got != session {
			t.Errorf("request %d: X-TFS-Session %q, want %q", i, got, session)
		}
	}
	if n := len(reqs); n != 11 {
		t.Fatalf("%d requests, want 11 (8 + a retried one + another client's)", n)
	}
}

func TestDefaultUserAgent(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	if _, err := c.ConnectionData(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[0].Header.Get("User-Agent"); got != "goagent" {
		t.Fatalf("User-Agent %q", got)
	}
	if _, ok := f.requests()[0].Header["Authorization"]; ok {
		t.Fatal("Authorization sent without a token source")
	}
}

// The OPTIONS discovery is a VSS request like any other, without api-version.
func TestOptionsHeaders(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, StaticToken{Scheme: "Bearer", Value: "tok"}, Options{})
	if _, err := c.PoolsByName(testContext(t), "p"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	h := f.optHdr
	f.mu.Unlock()
	for k, want := range map[string]string{
		"Accept":                "application/json",
		"Authorization":         "Bearer tok",
		"X-Tfs-Fedauthredirect": "Suppress",
		"X-Tfs-Session":         f.requests()[0].Header.Get("X-Tfs-Session"),
		"Content-Type":          "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("OPTIONS %s %q, want %q", k, got, want)
		}
	}
}

package azdo

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

const thingsLoc = "11111111-0000-0000-0000-000000000001"

func getThing(path string) Request {
	return Request{Method: http.MethodGet, Location: thingsLoc, APIVersion: "5.1-preview.1", RouteValues: map[string]string{"path": path}}
}

// Every request asks the source, so a token the source refreshed on its own
// is used at once.
func TestTokenPerRequest(t *testing.T) {
	f := newFake(t, "/org")
	ts := &tokens{}
	c, _ := newClient(t, f, ts, Options{})
	ctx := testContext(t)
	for i := range 3 {
		if _, err := c.Send(ctx, getThing(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
		ts.next()
	}
	var got []string
	for _, r := range f.requests() {
		got = append(got, r.Header.Get("Authorization"))
	}
	want := []string{"Bearer " + ts.value(1), "Bearer " + ts.value(2), "Bearer " + ts.value(3)}
	if !slices.Equal(got, want) {
		t.Fatalf("Authorization %q, want %q", got, want)
	}
	// One more for the OPTIONS discovery, which is authenticated too.
	if calls := ts.refreshes(); !slices.Equal(calls, []bool{false, false, false, false}) {
		t.Fatalf("token calls %v", calls)
	}
}

func TestUnauthorizedReacquiresOnce(t *testing.T) {
	for _, tc := range []struct {
		name       string
		req        Request
		statuses   []int // answers in order; the last repeats
		want401    bool
		wantReqs   int
		wantTokens []bool
	}{
		{"GET recovers", getThing("a"), []int{401, 200}, false, 2, []bool{false, true}},
		{"GET keeps failing", getThing("a"), []int{401}, true, 2, []bool{false, true}},
		{"POST recovers", Request{Method: http.MethodPost, Location: thingsLoc, RouteValues: map[string]string{"path": "a"}, Body: 1}, []int{401, 200}, false, 2, []bool{false, true}},
		{"NoRetry still re-acquires", Request{Method: http.MethodGet, Location: thingsLoc, RouteValues: map[string]string{"path": "a"}, NoRetry: true}, []int{401}, true, 2, []bool{false, true}},
		// A transient failure after the re-acquire uses the new token
		// without asking for yet another.
		{"refresh then retry", getThing("a"), []int{401, 503, 200}, false, 3, []bool{false, true, false}},
		{"retry then refresh", getThing("a"), []int{503, 401, 200}, false, 3, []bool{false, false, true}},
		{"401 after retries", getThing("a"), []int{503, 401, 401}, true, 3, []bool{false, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, "/org")
			f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
				st := tc.statuses[min(s.Attempt, len(tc.statuses))-1]
				if st == 401 {
					w.Header().Set("WWW-Authenticate", "Bearer")
				}
				writeJSON(w, st, map[string]any{})
			})
			ts := &tokens{}
			c, _ := newClient(t, f, ts, Options{Retries: 5})
			_, err := c.Send(testContext(t), tc.req, nil)
			if tc.want401 {
				if !errors.Is(err, ErrUnauthorized) {
					t.Fatalf("error %v is not ErrUnauthorized", err)
				}
				if !strings.Contains(err.Error(), "401") {
					t.Errorf("error %q does not show the status", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if n := len(f.requests()); n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
			// The first call is for the OPTIONS discovery.
			if got := ts.refreshes(); !slices.Equal(got, append([]bool{false}, tc.wantTokens...)) {
				t.Errorf("token calls (refresh flags) %v, want false (OPTIONS) then %v", got, tc.wantTokens)
			}
			// The retry after the re-acquire carries the new token.
			reqs := f.requests()
			for i, r := range reqs {
				want := ts.value(1)
				if slices.Index(tc.wantTokens, true) >= 0 && i >= slices.Index(tc.wantTokens, true) {
					want = ts.value(2)
				}
				if got := r.Header.Get("Authorization"); got != "Bearer "+want {
					t.Errorf("request %d: Authorization %q, want Bearer %s", i, got, want)
				}
			}
		})
	}
}

func TestUnauthorizedWithoutTokenSource(t *testing.T) {
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) { w.WriteHeader(http.StatusUnauthorized) })
	c, _ := newClient(t, f, nil, Options{})
	_, err := c.Send(testContext(t), getThing("a"), nil)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "the credential was rejected") {
		t.Fatalf("error %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestTokenSourceError(t *testing.T) {
	f := newFake(t, "/org")
	ts := &tokens{err: errors.New("token endpoint said no")}
	c, _ := newClient(t, f, ts, Options{})
	_, err := c.Send(testContext(t), getThing("a"), nil)
	if err == nil || !strings.Contains(err.Error(), "get credential: token endpoint said no") {
		t.Fatalf("error %v", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests went out without a credential", n)
	}
}

// The Authorization header value never shows up in an error or a log line,
// whatever goes wrong, even when the server echoes the request back.
func TestCredentialNeverLeaks(t *testing.T) {
	pat := "patPATpatPATpatPATpatPAT0123456789"
	basic := base64.StdEncoding.EncodeToString([]byte("VstsAgent:" + pat))
	var mode atomic.Value
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		auth := r.Header.Get("Authorization")
		switch mode.Load().(string) {
		case "401":
			vssError(w, http.StatusUnauthorized, "UnauthorizedRequestException", "token "+auth+" rejected")
		case "500":
			http.Error(w, "backend failed for "+auth, http.StatusInternalServerError)
		case "echo-html":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "<html><head><title>Blocked %s</title></head></html>", auth)
		case "service-error":
			w.Header().Set("X-TFS-ServiceError", "bad+"+auth)
			w.WriteHeader(http.StatusBadRequest)
		case "drop":
			hangUp(w)
		}
	})
	for _, ts := range []TokenSource{
		StaticToken{Scheme: "Basic", Value: basic},
		&tokens{},
	} {
		log, buf := debugLog()
		c, _ := newClient(t, f, ts, Options{Logger: log, Retries: 2})
		secrets := []string{basic, pat}
		if tk, ok := ts.(*tokens); ok {
			secrets = []string{tk.value(1), tk.value(2), tk.value(3)}
		}
		for _, m := range []string{"401", "500", "echo-html", "service-error", "drop"} {
			mode.Store(m)
			_, err := c.Send(testContext(t), getThing(m), nil)
			if err == nil {
				t.Fatalf("%s: no error", m)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s: error %q contains the credential", m, err)
				}
			}
		}
		out := buf.String()
		if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "retrying request") {
			t.Fatalf("the debug log is missing requests:\n%s", out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("the log contains the credential:\n%s", out)
			}
		}
	}
}

package azdo

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// allKinds are the sentinels an *Error can match.
var allKinds = []error{
	ErrUnauthorized, ErrAccessDenied, ErrNotFound, ErrSessionConflict, ErrSessionExpired,
	ErrAgentNotFound, ErrPoolNotFound, ErrAgentExists, ErrJobNotFound, ErrJobTokenExpired,
	ErrTokenExpired, ErrServerBusy, ErrPlanNotFound, ErrPlanSecurity, ErrBadRequest,
}

func TestTypedErrors(t *testing.T) {
	// typeKey → kind, written out independently of errors.go. A 400 answer,
	// so that the status fallback cannot produce the kind by accident.
	want := map[string]error{
		"TaskAgentSessionConflictException":         ErrSessionConflict,
		"TaskAgentSessionExpiredException":          ErrSessionExpired,
		"TaskAgentNotFoundException":                ErrAgentNotFound,
		"TaskAgentPoolNotFoundException":            ErrPoolNotFound,
		"TaskAgentExistsException":                  ErrAgentExists,
		"TaskAgentJobNotFoundException":             ErrJobNotFound,
		"TaskAgentJobTokenExpiredException":         ErrJobTokenExpired,
		"TaskAgentAccessTokenExpiredException":      ErrTokenExpired,
		"AccessDeniedException":                     ErrAccessDenied,
		"UnauthorizedRequestException":              ErrUnauthorized,
		"TaskOrchestrationPlanNotFoundException":    ErrPlanNotFound,
		"TaskOrchestrationPlanSecurityException":    ErrPlanSecurity,
		"VssResourceNotFoundException":              ErrNotFound,
		"TimelineNotFoundException":                 ErrNotFound,
		"TaskOrchestrationJobNotFoundException":     ErrJobNotFound,
		"VssRequestContentTooLargeException":        ErrBadRequest,
		"RequestBlockedException":                   ErrServerBusy,
		"TaskAgentPoolMaintenanceNotFoundException": ErrNotFound,
		"VssServiceResponseException":               ErrBadRequest, // no kind of its own: the 400 fallback
	}
	for k := range typeKeys {
		if _, ok := want[k]; !ok {
			t.Errorf("type key %s in errors.go has no test", k)
		}
	}
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		key, _ := url.PathUnescape(strings.TrimPrefix(s.Path, "/org/_apis/test/things/"))
		vssError(w, http.StatusBadRequest, key, "it went wrong: "+key)
	})
	c, _ := newClient(t, f, nil, Options{})
	for key, kind := range want {
		_, err := c.Send(testContext(t), getThing(key), nil)
		checkKind(t, key, err, kind)
		var e *Error
		if !errors.As(err, &e) || e.TypeKey != key || e.StatusCode != 400 || e.Message != "it went wrong: "+key {
			t.Errorf("%s: %#v", key, e)
			continue
		}
		if s := err.Error(); !strings.Contains(s, "("+key+")") || !strings.Contains(s, "400 Bad Request") || !strings.Contains(s, "it went wrong") {
			t.Errorf("%s: message %q", key, s)
		}
	}
}

func checkKind(t *testing.T, name string, err error, want error) {
	t.Helper()
	for _, k := range allKinds {
		if got := errors.Is(err, k); got != (k == want) {
			t.Errorf("%s: errors.Is(%v, %v) = %v", name, err, k, got)
		}
	}
}

func TestStatusFallbacks(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   error
	}{
		{401, "", ErrUnauthorized},
		{403, `{"message":"no"}`, ErrAccessDenied},
		{404, `{"message":"gone","typeKey":"SomethingUnknownException"}`, ErrNotFound},
		{409, `{"message":"conflict"}`, nil},
		{429, "", ErrServerBusy},
		{503, "", ErrServerBusy},
		{400, `{"message":"bad"}`, ErrBadRequest},
		{500, `{"message":"boom"}`, nil},
		{502, "", nil},
	} {
		e := newError("GET", "https://x/org/_apis/y", tc.status, http.Header{}, []byte(tc.body))
		checkKind(t, http.StatusText(tc.status), e, tc.want)
	}
}

func TestErrorBodies(t *testing.T) {
	signIn := `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>
   Azure DevOps Services | Sign In
</title></head><body><form>…</form></body></html>`
	for _, tc := range []struct {
		name    string
		header  http.Header
		body    string
		message string   // exact, when set
		has     []string // must appear
		hasNot  []string // must not appear
		typeKey string
	}{
		{"wrapped exception", nil, `{"$id":"1","message":"Agent 7 not found","typeKey":"TaskAgentNotFoundException"}`, "Agent 7 not found", nil, nil, "TaskAgentNotFoundException"},
		{"BOM before JSON", nil, "\xEF\xBB\xBF" + `{"message":"m","typeKey":"AccessDeniedException"}`, "m", nil, nil, "AccessDeniedException"},
		{"HTML sign-in page", http.Header{"Content-Type": {"text/html; charset=utf-8"}}, signIn, "",
			[]string{`web page ("Azure DevOps Services | Sign In")`, "organization or collection URL"}, []string{"<", "form"}, ""},
		{"HTML without content type", nil, "<html><body>Access denied by proxy</body></html>", "",
			[]string{"web page instead of JSON"}, []string{"<html"}, ""},
		{"plain text", http.Header{"Content-Type": {"text/plain"}}, "upstream connect error\nsecond line", "upstream connect error", nil, nil, ""},
		{"long text cut", nil, strings.Repeat("é", 400), "", []string{"…"}, nil, ""},
		{"service error header", http.Header{"X-Tfs-Serviceerror": {"The+pool+was+deleted%2E"}}, "", "The pool was deleted.", nil, nil, ""},
		{"JSON that is no exception", nil, `["a"]`, `["a"]`, nil, nil, ""},
	} {
		h := tc.header
		if h == nil {
			h = http.Header{}
		}
		e := newError("POST", "https://x/org/_apis/y", 403, h, []byte(tc.body))
		if tc.message != "" && e.Message != tc.message {
			t.Errorf("%s: message %q, want %q", tc.name, e.Message, tc.message)
		}
		for _, s := range tc.has {
			if !strings.Contains(e.Error(), s) {
				t.Errorf("%s: %q does not contain %q", tc.name, e.Error(), s)
			}
		}
		for _, s := range tc.hasNot {
			if strings.Contains(e.Message, s) {
				t.Errorf("%s: message %q contains %q", tc.name, e.Message, s)
			}
		}
		if e.TypeKey != tc.typeKey {
			t.Errorf("%s: typeKey %q, want %q", tc.name, e.TypeKey, tc.typeKey)
		}
		if !utf8.ValidString(e.Message) {
			t.Errorf("%s: message %q is not UTF-8", tc.name, e.Message)
		}
		if len(e.Message) > 310 {
			t.Errorf("%s: message of %d bytes", tc.name, len(e.Message))
		}
	}
}

// Success bodies: a BOM is skipped, HTML is an error that says what it is,
// 202/204 decode nothing.
func TestResponseBodies(t *testing.T) {
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		switch strings.TrimPrefix(s.Path, "/org/_apis/test/things/") {
		case "bom":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Write([]byte("\xEF\xBB\xBF{\"name\":\"pool\"}"))
		case "html200":
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><title>Sign In</title></html>"))
		case "html203":
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusNonAuthoritativeInfo)
			w.Write([]byte("<html><title>Sign In</title></html>"))
		case "accepted":
			w.WriteHeader(http.StatusAccepted)
		case "empty":
			w.WriteHeader(http.StatusOK)
		case "garbage":
			w.Write([]byte("{not json"))
		case "raw":
			w.Write([]byte("\xEF\xBB\xBFraw"))
		}
	})
	c, _ := newClient(t, f, nil, Options{})
	ctx := testContext(t)
	var out struct{ Name string }
	if _, err := c.Send(ctx, getThing("bom"), &out); err != nil || out.Name != "pool" {
		t.Fatalf("BOM: %v %+v", err, out)
	}
	_, err := c.Send(ctx, getThing("html200"), &out)
	if err == nil || !strings.Contains(err.Error(), `web page ("Sign In")`) {
		t.Fatalf("HTML 200: %v", err)
	}
	for _, o := range []any{&out, nil} {
		_, err = c.Send(ctx, getThing("html203"), o)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "sign-in page") {
			t.Fatalf("HTML 203 (out %T): %v", o, err)
		}
	}
	out.Name = "kept"
	for _, p := range []string{"accepted", "empty"} {
		resp, err := c.Send(ctx, getThing(p), &out)
		if err != nil || out.Name != "kept" || resp == nil {
			t.Fatalf("%s: %v %+v", p, err, out)
		}
	}
	if _, err := c.Send(ctx, getThing("garbage"), &out); err == nil || !strings.Contains(err.Error(), "decode 200 response") {
		t.Fatalf("garbage: %v", err)
	}
	var raw []byte
	if _, err := c.Send(ctx, getThing("raw"), &raw); err != nil || string(raw) != "raw" {
		t.Fatalf("raw: %v %q", err, raw)
	}
}

// The query string can carry session ids; errors name the URL without it.
func TestErrorHidesQuery(t *testing.T) {
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		vssError(w, http.StatusNotFound, "TaskAgentSessionExpiredException", "expired")
	})
	c, _ := newClient(t, f, nil, Options{})
	_, err := c.GetMessage(testContext(t), 3, "session-guid-1234", 5, 0)
	if !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), "session-guid-1234") || !strings.Contains(err.Error(), "/org/_apis/distributedtask/pools/3/messages") {
		t.Fatalf("error %q", err)
	}
}

package devserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func startInternal(t testing.TB) *Server {
	t.Helper()
	s, err := Start(context.Background(), Options{Dir: t.TempDir(), PollHold: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPanicIsRecoveredAndRecorded(t *testing.T) {
	s := startInternal(t)
	s.Faults().Add(Fault{Resource: "pools", panics: true})
	req := httptest.NewRequest("GET", "/goagent/_apis/distributedtask/pools", nil)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", rec.Code)
	}
	var e wrappedException
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.TypeKey != exService {
		t.Fatalf("body %s", rec.Body)
	}
	if bugs := s.Bugs(); len(bugs) != 1 || !strings.Contains(bugs[0], "injected emulator defect") {
		t.Fatalf("bugs %q", bugs)
	}
}

func TestTimeSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Minute:                       "00:05:00",
		90 * time.Second:                      "00:01:30",
		26*time.Hour + 3*time.Second:          "1.02:00:03",
		0:                                     "00:00:00",
		59*time.Minute + 999*time.Millisecond: "00:59:01",
	} {
		if got := timeSpan(d); got != want {
			t.Errorf("timeSpan(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestLogLineCount(t *testing.T) {
	cases := []struct {
		chunks []string
		want   uint64
	}{
		{[]string{"a\nb\n"}, 2},
		{[]string{"a\nb"}, 2},
		{[]string{"a", "b", "c\n"}, 1},
		{[]string{"a\n", "", "b"}, 2},
		{[]string{"a", "\n", "\n"}, 2},
		{nil, 0},
	}
	for _, tc := range cases {
		var l logState
		for _, c := range tc.chunks {
			l.appendContent([]byte(c))
		}
		if l.lines != tc.want || uint64(len(splitLines(l.content.Bytes()))) != tc.want {
			t.Errorf("%q: lines %d (split %d), want %d", tc.chunks, l.lines, len(splitLines(l.content.Bytes())), tc.want)
		}
	}
}

func TestEscapeHeader(t *testing.T) {
	if got := escapeHeader("a\nb%c\u00e9"); got != "a%0Ab%25c%C3%A9" {
		t.Fatalf("got %q", got)
	}
}

func FuzzParseAPIVersion(f *testing.F) {
	for _, s := range []string{"5.1", "5.1-preview", "5.1-preview.2", "7.2-PREVIEW.1", "1", "", "-", "1.-1", "1.2-beta", "99999999.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseAPIVersion(s)
		if err != nil {
			return
		}
		again, err := parseAPIVersion(v.String())
		if err != nil || again != v {
			t.Fatalf("%q → %q does not round-trip: %v", s, v.String(), err)
		}
	})
}

func FuzzParseJWT(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"exp":1e9,"aud":["a"]}`)) + ".c2ln")
	f.Add("a.b.c")
	f.Add("..")
	f.Add(enc([]byte(`null`)) + "." + enc([]byte(`[]`)) + ".")
	f.Add(enc([]byte(`{}`)) + "." + enc([]byte(`{"nbf":"x","exp":-1,"iat":1e300}`)) + ".")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseJWT(s)
		if err != nil {
			return
		}
		tok.alg()
		tok.str("iss")
		tok.audience("a")
		for _, c := range []string{"exp", "nbf", "iat"} {
			if at, ok := tok.numeric(c); ok && at.Before(time.Unix(0, 0)) {
				t.Fatalf("%s before the epoch: %v", c, at)
			}
		}
	})
}

func FuzzRouteMatch(f *testing.F) {
	for _, p := range []string{
		"_apis/distributedtask/pools/1/agents/2",
		"_apis/distributedtask/pools/1/messages",
		"s/_apis/distributedtask/hubs/build/plans/p/timelines/t/records/r/attachments/ty/na",
		"s/_apis/distributedtask/hubs/build/plans/p/logs",
		"_apis/distributedtask/pools",
		"_apis//pools",
		"%zz/x",
	} {
		f.Add(p)
	}
	locs := newLocations()
	s := &Server{locs: locs}
	f.Fuzz(func(t *testing.T, p string) {
		segs, ok := splitPath(p)
		if !ok {
			return
		}
		loc, vals := s.route(segs)
		if loc == nil {
			return
		}
		// Expanding the template with the matched values gives the path back.
		var out []string
		for _, rs := range loc.segs {
			if rs.param == "" {
				out = append(out, rs.literal)
			} else if v, ok := vals[rs.param]; ok {
				out = append(out, v)
			}
		}
		if !strings.EqualFold(strings.Join(out, "/"), strings.Join(segs, "/")) {
			t.Fatalf("%q matched %s but expands to %q", p, loc.ResourceName, strings.Join(out, "/"))
		}
	})
}

func FuzzMergeRecords(f *testing.F) {
	id := uuid.NewString()
	f.Add(`[{"id":"` + id + `","state":"completed","result":"succeeded","log":{"id":1}}]`)
	f.Add(`[{"id":"` + id + `","state":"InProgress","parentId":"` + id + `","order":1,"name":null}]`)
	f.Add(`[{"ID":"` + strings.ToUpper(id) + `","Result":"Failed"},{"id":"` + id + `","state":"pending"}]`)
	f.Add(`[{"id":1}]`)
	f.Add(`[null]`)
	f.Fuzz(func(t *testing.T, batch string) {
		var raw []json.RawMessage
		if json.Unmarshal([]byte(batch), &raw) != nil {
			return
		}
		tl := newTimeline(uuid.NewString())
		res, err := tl.mergeRecords(raw, func(int) bool { return false }, time.Now())
		if err != nil {
			return
		}
		for _, r := range res.records {
			if _, err := uuid.Parse(r.str("id")); err != nil {
				t.Fatalf("merged record without a GUID id: %v", r.fields)
			}
			if st := r.str("state"); st != "" && st != "pending" && st != "inProgress" && st != "completed" {
				t.Fatalf("state %q stored", st)
			}
			r.decode()
		}
	})
}

// FuzzServeHTTP throws arbitrary requests at the emulator: it must answer
// every one without a panic (recorded as a bug) or a 500.
func FuzzServeHTTP(f *testing.F) {
	f.Add("GET", "/goagent/_apis/distributedtask/pools?poolName=Default", "", "application/json; api-version=7.1")
	f.Add("POST", "/goagent/_apis/distributedtask/pools/1/agents", `{"name":"x","authorization":{"publicKey":{"exponent":"AQAB","modulus":"AA=="}}}`, "application/json; api-version=6.0-preview.2")
	f.Add("PATCH", "/goagent/_apis/distributedtask/pools/1/jobrequests/1?lockToken=x", `{"requestId":1}`, "application/json; api-version=5.1-preview.1")
	f.Add("OPTIONS", "/goagent/_apis/", "", "application/json")
	f.Add("POST", "/_vstoken/oauth2/token", "grant_type=client_credentials&client_assertion=a.b.c", "application/x-www-form-urlencoded")
	f.Add("PUT", "/goagent/"+uuid.NewString()+"/_apis/distributedtask/hubs/Build/plans/x/timelines/y/records/z/attachments/a/b", "data", "application/json; api-version=5.1")
	f.Add("GET", "/goagent/_apis/connectionData?connectOptions=nope", "", "")
	s := startInternal(f)
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+s.PAT()))
	f.Fuzz(func(t *testing.T, method, target, body, accept string) {
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \t\r\n#") || strings.ContainsAny(method, " \t\r\n()<>@,;:\\\"/[]?={}") || method == "" {
			return
		}
		req, err := http.NewRequest(method, "https://127.0.0.1"+target, bytes.NewReader([]byte(body)))
		if err != nil {
			return
		}
		req.Header.Set("Accept", accept)
		req.Header.Set("Content-Type", accept)
		req.Header.Set("Authorization", auth)
		req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body)
		}
		if b := s.Bugs(); len(b) > 0 {
			t.Fatalf("%s %s: %s", method, target, b[0])
		}
	})
}

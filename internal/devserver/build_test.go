package devserver_test

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// buildJob queues a job of build 42 ("20250101.1") and returns the server,
// the job and the URL of its build.
func buildJob(t *testing.T) (*devserver.Server, *devserver.Job, string) {
	t.Helper()
	s := startServer(t, devserver.Options{})
	m := simpleJob(0)
	m.Variables["build.buildId"] = wire.VariableValue{Value: "42", IsReadonly: true}
	m.Variables["build.buildNumber"] = wire.VariableValue{Value: "20250101.1", IsReadonly: true}
	j, err := s.QueueJob(m, devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msg := j.Message()
	return s, j, msg.SystemConnection().URL + msg.Plan.ScopeIdentifier + "/_apis/build/builds/42"
}

func TestBuildRename(t *testing.T) {
	s, j, u := buildJob(t)
	c := httpClient(t, s)
	tok := bearer(j.Token())
	b, ok := j.Build()
	if !ok || b.ID != 42 || b.Number != "20250101.1" || len(b.Tags) != 0 || b.ProjectID != j.Message().Plan.ScopeIdentifier {
		t.Fatalf("job's build %+v %v", b, ok)
	}
	body := mustJSON(t, map[string]any{"id": 42, "buildNumber": "1.2.3", "project": map[string]string{"id": b.ProjectID}})
	a := do(t, c, call{method: "PATCH", url: u, auth: tok, version: wire.APIBuilds, body: body})
	if a.status != 200 {
		t.Fatalf("PATCH: %s", a)
	}
	var out struct {
		ID          int    `json:"id"`
		BuildNumber string `json:"buildNumber"`
		Project     struct{ ID string }
	}
	decode(t, a, &out)
	if out.ID != 42 || out.BuildNumber != "1.2.3" || out.Project.ID != b.ProjectID {
		t.Fatalf("answer %s", a)
	}
	if got, _ := s.Build(b.ProjectID, 42); got.Number != "1.2.3" {
		t.Fatalf("stored number %q", got.Number)
	}
	a = do(t, c, call{method: "GET", url: u, auth: tok, version: wire.APIBuilds})
	decode(t, a, &out)
	if a.status != 200 || out.BuildNumber != "1.2.3" {
		t.Fatalf("GET: %s", a)
	}

	for _, bad := range []string{"a/b", "x:y", "ends.", " ", strings.Repeat("n", 256)} {
		a := do(t, c, call{method: "PATCH", url: u, auth: tok, version: wire.APIBuilds, body: mustJSON(t, map[string]any{"id": 42, "buildNumber": bad})})
		if e := wantError(t, a, 400, "InvalidBuildNumberException"); !strings.HasPrefix(e.Message, "TF209010: ") {
			t.Errorf("%q: %s", bad, e.Message)
		}
	}
	if got, _ := s.Build(b.ProjectID, 42); got.Number != "1.2.3" {
		t.Fatalf("a refused number was stored: %q", got.Number)
	}
	if v := s.Violations(); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
}

func TestBuildTags(t *testing.T) {
	s, j, u := buildJob(t)
	c := httpClient(t, s)
	tok := bearer(j.Token())
	tags := func(a answer) []string {
		t.Helper()
		var out struct {
			Count int      `json:"count"`
			Value []string `json:"value"`
		}
		decode(t, a, &out)
		if a.status != 200 || out.Count != len(out.Value) {
			t.Fatalf("tags answer %s", a)
		}
		return out.Value
	}
	steps := []struct {
		method, rel string
		body        any
		want        string
	}{
		{"PUT", "/tags/release", nil, "release"},
		{"PUT", "/tags/Alpha", nil, "Alpha,release"},
		{"PUT", "/tags/RELEASE", nil, "Alpha,release"},                           // case-insensitively unique
		{"PUT", "/tags/a%3Bb", nil, "a;b,Alpha,release"},                         // escaped in the path
		{"POST", "/tags", []string{"zeta", "x/y"}, "a;b,Alpha,release,x/y,zeta"}, // body API keeps '/'
		{"GET", "/tags", nil, "a;b,Alpha,release,x/y,zeta"},
		{"DELETE", "/tags/alpha", nil, "a;b,release,x/y,zeta"},
	}
	for _, st := range steps {
		k := call{method: st.method, url: u + st.rel, auth: tok, version: wire.APIBuildTags}
		if st.body != nil {
			k.body = mustJSON(t, st.body)
		}
		if got := strings.Join(tags(do(t, c, k)), ","); got != st.want {
			t.Errorf("%s %s: tags %q, want %q", st.method, st.rel, got, st.want)
		}
	}
	b, _ := j.Build()
	if strings.Join(b.Tags, ",") != "a;b,release,x/y,zeta" {
		t.Errorf("stored tags %q", b.Tags)
	}
	wantError(t, do(t, c, call{method: "POST", url: u + "/tags", auth: tok, version: wire.APIBuildTags, body: []byte(`{"tag":"x"}`)}), 400, "ArgumentNullException")
}

func TestBuildRouteChecks(t *testing.T) {
	s, j, u := buildJob(t)
	c := httpClient(t, s)
	tok := bearer(j.Token())
	project := j.Message().Plan.ScopeIdentifier
	rename := mustJSON(t, map[string]any{"buildNumber": "x"})

	// An unknown build: 404 in the VSS shape.
	e := wantError(t, do(t, c, call{method: "PATCH", url: strings.Replace(u, "/builds/42", "/builds/43", 1), auth: tok, version: wire.APIBuilds, body: rename}), 404, "BuildNotFoundException")
	if !strings.Contains(e.Message, "43") {
		t.Errorf("message %q does not name the build", e.Message)
	}
	wantError(t, do(t, c, call{method: "PUT", url: strings.Replace(u, "/builds/42", "/builds/43", 1) + "/tags/t", auth: tok, version: wire.APIBuildTags}), 404, "BuildNotFoundException")
	// Another project: not the job's.
	other := strings.Replace(u, project, uuid.NewString(), 1)
	wantError(t, do(t, c, call{method: "PATCH", url: other, auth: tok, version: wire.APIBuilds, body: rename}), 404, "ProjectDoesNotExistException")
	// A PAT is not the job's token.
	wantError(t, do(t, c, call{method: "PATCH", url: u, auth: basic(s.PAT()), version: wire.APIBuilds, body: rename}), 403, "AccessDeniedException")
	// The body's id must be the URL's.
	wantError(t, do(t, c, call{method: "PATCH", url: u, auth: tok, version: wire.APIBuilds, body: mustJSON(t, map[string]any{"id": 7, "buildNumber": "x"})}), 400, "ArgumentException")
	// Versions: the builds resource is at 7, tags at 3.
	wantError(t, do(t, c, call{method: "PUT", url: u + "/tags/t", auth: tok, version: "7.1-preview.4"}), 400, "VssVersionOutOfRangeException")

	if b, _ := s.Build(project, 42); b.Number != "20250101.1" || len(b.Tags) != 0 {
		t.Fatalf("refused calls changed the build: %+v", b)
	}
	if v := s.Violations(); len(v) != 3 {
		t.Fatalf("want 3 violations (other project, PAT, mismatched id), got %q", v)
	}
	// A job whose message names no build has none.
	j2, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := j2.Build(); ok {
		t.Fatalf("build %+v for a job without build.buildId", b)
	}
}

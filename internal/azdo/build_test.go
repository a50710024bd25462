package azdo

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/wire"
)

// buildLocations are the Build area as dev.azure.com lists it under
// OPTIONS _apis/ (area "build"; the route templates of the task brief and
// azure-devops-go-api's route values).
var buildLocations = []ResourceLocation{
	{ID: wire.LocationBuilds, Area: "build", ResourceName: "builds", RouteTemplate: "{project}/_apis/build/builds/{buildId}", ResourceVersion: 7, MinVersion: "2.0", MaxVersion: "7.2", ReleasedVersion: "7.1"},
	{ID: wire.LocationBuildTags, Area: "build", ResourceName: "tags", RouteTemplate: "{project}/_apis/build/builds/{buildId}/tags/{tag}", ResourceVersion: 3, MinVersion: "2.0", MaxVersion: "7.2", ReleasedVersion: "7.1"},
}

// buildFake is a fake organization serving only the Build area.
func buildFake(t *testing.T) *fake {
	f := newFake(t, "/org")
	f.setOptHook(func(w http.ResponseWriter) bool {
		writeJSON(w, http.StatusOK, map[string]any{"count": len(buildLocations), "value": buildLocations})
		return true
	})
	return f
}

func TestBuildCalls(t *testing.T) {
	const project = "6302cb6f-c9d9-44c2-ae60-84eff8845059"
	base := "/org/" + project + "/_apis/build/builds/77"
	tagList := `{"count":3,"value":["a;b","nightly","release"]}`
	for _, tc := range []struct {
		name         string
		call         func(ctx context.Context, b *Builds) (any, error)
		answer       string
		method, path string
		accept, body string // body "" = none
		want         any
	}{
		{
			name: "UpdateBuildNumber",
			call: func(ctx context.Context, b *Builds) (any, error) {
				bd, err := b.UpdateBuildNumber(ctx, project, 77, " 1.2.3")
				if err != nil {
					return nil, err
				}
				return []any{*bd.Id, *bd.BuildNumber, bd.Project.Id.String()}, nil
			},
			answer: `{"id":77,"buildNumber":" 1.2.3","status":"inProgress","project":{"id":"` + project + `","name":"p"},"tags":[],"uri":"vstfs:///Build/Build/77"}`,
			method: "PATCH", path: base, accept: "application/json; api-version=7.1-preview.7",
			body: `{"id":77,"buildNumber":" 1.2.3","project":{"id":"` + project + `"}}`,
			want: []any{77, " 1.2.3", project},
		},
		{
			name:   "AddBuildTag in the path",
			call:   func(ctx context.Context, b *Builds) (any, error) { return b.AddBuildTag(ctx, project, 77, "a;b") },
			answer: tagList,
			method: "PUT", path: base + "/tags/a%3Bb", accept: "application/json; api-version=7.1-preview.3",
			want: []string{"a;b", "nightly", "release"},
		},
		{
			name: "AddBuildTags in the body",
			call: func(ctx context.Context, b *Builds) (any, error) {
				return b.AddBuildTags(ctx, project, 77, []string{"a;b"})
			},
			answer: tagList,
			method: "POST", path: base + "/tags", accept: "application/json; api-version=7.1-preview.3",
			body: `["a;b"]`,
			want: []string{"a;b", "nightly", "release"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := buildFake(t)
			f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.Write([]byte(tc.answer))
			})
			c, _ := newClient(t, f, &tokens{}, Options{})
			got, err := tc.call(testContext(t), &Builds{Client: c})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			s := reqs[0]
			if s.Method != tc.method || s.Path != tc.path || s.Query != "" {
				t.Errorf("request %s %s?%s, want %s %s", s.Method, s.Path, s.Query, tc.method, tc.path)
			}
			if a := s.Header.Get("Accept"); a != tc.accept {
				t.Errorf("Accept %q, want %q", a, tc.accept)
			}
			if !strings.HasPrefix(s.Header.Get("Authorization"), "Bearer secret-") {
				t.Errorf("no job credential: %q", s.Header.Get("Authorization"))
			}
			if tc.body == "" {
				if len(s.Body) != 0 || s.Header.Get("Content-Type") != "" {
					t.Errorf("a body was sent: %q (%s)", s.Body, s.Header.Get("Content-Type"))
				}
				return
			}
			var gotBody, wantBody any
			if err := json.Unmarshal(s.Body, &gotBody); err != nil {
				t.Fatalf("body %q: %v", s.Body, err)
			}
			json.Unmarshal([]byte(tc.body), &wantBody)
			if !reflect.DeepEqual(gotBody, wantBody) {
				t.Errorf("body %s, want %s", s.Body, tc.body)
			}
			if ct := s.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || !strings.Contains(ct, "api-version=") {
				t.Errorf("Content-Type %q", ct)
			}
		})
		t.Run(tc.name+" retried", func(t *testing.T) {
			f := buildFake(t)
			f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
				if s.Attempt == 1 {
					vssError(w, http.StatusServiceUnavailable, "", "busy")
					return
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.Write([]byte(tc.answer))
			})
			c, _ := newClient(t, f, &tokens{}, Options{})
			if _, err := tc.call(testContext(t), &Builds{Client: c}); err != nil {
				t.Fatalf("after one 503: %v", err)
			}
			if n := len(f.requests()); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	f := buildFake(t)
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		if strings.Contains(s.Path, "/tags") {
			vssError(w, http.StatusForbidden, "AccessDeniedException", "no permission")
			return
		}
		vssError(w, http.StatusNotFound, "BuildNotFoundException", "Build 9 not found.")
	})
	c, _ := newClient(t, f, &tokens{}, Options{})
	b := &Builds{Client: c}
	_, err := b.UpdateBuildNumber(testContext(t), "6302cb6f-c9d9-44c2-ae60-84eff8845059", 9, "x")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 404 || e.TypeKey != "BuildNotFoundException" || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "Build 9 not found.") {
		t.Fatalf("404: %v", err)
	}
	if _, err := b.AddBuildTag(testContext(t), "6302cb6f-c9d9-44c2-ae60-84eff8845059", 9, "t"); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("403: %v", err)
	}
	if _, err := b.UpdateBuildNumber(testContext(t), "not-a-guid", 9, "x"); err == nil || !strings.Contains(err.Error(), "not a GUID") {
		t.Fatalf("bad project: %v", err)
	}
}

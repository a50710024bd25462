package azdo

import (
	"net/http"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/wire"
)

func TestParseBaseURL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"https://dev.azure.com/org", "https://dev.azure.com/org/"},
		{"https://dev.azure.com/org/", "https://dev.azure.com/org/"},
		{"  https://dev.azure.com/org  ", "https://dev.azure.com/org/"},
		{"https://org.visualstudio.com", "https://org.visualstudio.com/"},
		{"https://tfs/tfs/DefaultCollection", "https://tfs/tfs/DefaultCollection/"},
		{"https://tfs:8443/tfs/DefaultCollection/", "https://tfs:8443/tfs/DefaultCollection/"},
		{"http://tfs/tfs/My%20Collection", "http://tfs/tfs/My%20Collection/"},
		{"HTTPS://dev.azure.com/org?x=1#frag", "https://dev.azure.com/org/"},
	} {
		u, err := ParseBaseURL(tc.in)
		if err != nil {
			t.Errorf("ParseBaseURL(%q): %v", tc.in, err)
			continue
		}
		if u.String() != tc.want {
			t.Errorf("ParseBaseURL(%q) = %q, want %q", tc.in, u, tc.want)
		}
	}
}

func TestParseBaseURLRejects(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string // all must appear in the message
		secrets []string // none may appear
	}{
		{"", []string{"empty", "https://dev.azure.com/ORG"}, nil},
		{"dev.azure.com/org", []string{"scheme must be https", "https://dev.azure.com/ORG"}, nil},
		{"ftp://dev.azure.com/org", []string{"scheme must be https"}, nil},
		{"file:///etc/passwd", []string{"scheme must be https"}, nil},
		{"https://", []string{"no host"}, nil},
		{"https:dev.azure.com", []string{"no host"}, nil},
		{"https://user:hunter2pat@dev.azure.com/org", []string{"credentials do not belong in the URL", "AZP_TOKEN", "***@dev.azure.com/org"}, []string{"hunter2pat", "user"}},
		{"https://abcdefPATonly@dev.azure.com/org", []string{"credentials do not belong in the URL"}, []string{"abcdefPATonly"}},
		// A URL that does not even parse must not echo its user info either.
		{"https://u:sekritpw@dev.azure.com:notaport/org", []string{"server URL", "invalid port"}, []string{"sekritpw"}},
		{"vsts:sekritpw@dev.azure.com/org", []string{"scheme must be https"}, []string{"sekritpw"}},
	} {
		_, err := ParseBaseURL(tc.in)
		if err == nil {
			t.Errorf("ParseBaseURL(%q) accepted it", tc.in)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseBaseURL(%q) = %q, want it to mention %q", tc.in, err, w)
			}
		}
		for _, s := range tc.secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("ParseBaseURL(%q) = %q leaks %q", tc.in, err, s)
			}
		}
	}
}

// Every form of base URL reaches the same routes under its own path.
func TestBaseURLOnTheWire(t *testing.T) {
	for _, tc := range []struct{ prefix, suffix string }{
		{"/org", ""},
		{"/org", "/"},
		{"/tfs/DefaultCollection", ""},
		{"/tfs/DefaultCollection", "/"},
		{"", ""},
	} {
		f := newFake(t, tc.prefix)
		c, err := New(f.url()+tc.suffix, StaticToken{Scheme: "Basic", Value: "x"}, Options{HTTPClient: f.srv.Client()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.AgentsByName(testContext(t), 12, "a1"); err != nil {
			t.Fatalf("%s%s: %v", tc.prefix, tc.suffix, err)
		}
		if _, err := c.ConnectionData(testContext(t)); err != nil {
			t.Fatalf("%s%s: %v", tc.prefix, tc.suffix, err)
		}
		reqs := f.requests()
		if len(reqs) != 2 || f.optionsCalls() != 1 {
			t.Fatalf("%s%s: %d requests, %d OPTIONS", tc.prefix, tc.suffix, len(reqs), f.optionsCalls())
		}
		if want := tc.prefix + "/_apis/distributedtask/pools/12/agents"; reqs[0].Path != want {
			t.Errorf("%s%s: agents at %q, want %q", tc.prefix, tc.suffix, reqs[0].Path, want)
		}
		if want := tc.prefix + "/_apis/connectionData"; reqs[1].Path != want {
			t.Errorf("%s%s: connectionData at %q, want %q", tc.prefix, tc.suffix, reqs[1].Path, want)
		}
		if c.BaseURL() != f.url()+"/" {
			t.Errorf("BaseURL() = %q", c.BaseURL())
		}
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	if _, err := New("ftp://x/org", nil, Options{}); err == nil {
		t.Fatal("New accepted an ftp URL")
	}
}

// A route value that begins like a scheme ("c:…") stays a path segment.
func TestRouteValueLooksLikeScheme(t *testing.T) {
	f := newFake(t, "/org")
	c, _ := newClient(t, f, nil, Options{})
	p := &Plan{Client: c, Scope: "c:x", Hub: "build", PlanID: "p"}
	if err := p.RaiseEvent(testContext(t), wire.JobEvent{Name: "JobCompleted"}); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	if r.Method != http.MethodPost || r.Path != "/org/c:x/_apis/distributedtask/hubs/build/plans/p/events" {
		t.Fatalf("%s %s", r.Method, r.Path)
	}
}

package devserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// The route templates the emulator must serve (listener.md §1.3, worker.md
// §7.1), written out here rather than taken from the emulator's table.
var wantRoutes = map[string]string{
	wire.LocationPools:        "_apis/{area}/{resource}/{poolId}",
	wire.LocationAgents:       "_apis/{area}/pools/{poolId}/{resource}/{agentId}",
	wire.LocationSessions:     "_apis/{area}/pools/{poolId}/{resource}/{sessionId}",
	wire.LocationMessages:     "_apis/{area}/pools/{poolId}/{resource}/{messageId}",
	wire.LocationJobRequests:  "_apis/{area}/pools/{poolId}/{resource}/{requestId}",
	wire.LocationAgentUpdates: "_apis/{area}/pools/{poolId}/agents/{agentId}/{resource}",
	wire.LocationPlanEvents:   "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}",
	wire.LocationTimelines:    "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{timelineId}",
	wire.LocationRecords:      "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/{resource}",
	wire.LocationFeed:         "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}",
	wire.LocationLogs:         "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{logId}",
	wire.LocationAttachments:  "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}/{type}/{name}",
	wire.LocationBuilds:       "{project}/_apis/{area}/{resource}/{buildId}",
	wire.LocationBuildTags:    "{project}/_apis/{area}/builds/{buildId}/{resource}/{tag}",
}

// wantArea is the area of each location: distributedtask unless listed.
var wantArea = map[string]string{wire.LocationBuilds: "build", wire.LocationBuildTags: "build"}

func TestOptionsServesTheLocations(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	a := do(t, c, call{method: "OPTIONS", url: apiURL(s, "_apis/"), auth: basic(s.PAT()), version: "-"})
	if a.status != 200 {
		t.Fatalf("OPTIONS: %s", a)
	}
	var out struct {
		Count int `json:"count"`
		Value []struct {
			ID, Area, ResourceName, RouteTemplate, MinVersion, MaxVersion, ReleasedVersion string
			ResourceVersion                                                                int
		} `json:"value"`
	}
	decode(t, a, &out)
	if out.Count != len(out.Value) || out.Count != len(wantRoutes) {
		t.Fatalf("count %d, %d values, want %d", out.Count, len(out.Value), len(wantRoutes))
	}
	for _, l := range out.Value {
		if want, ok := wantRoutes[l.ID]; !ok || l.RouteTemplate != want {
			t.Errorf("%s (%s): template %q, want %q", l.ID, l.ResourceName, l.RouteTemplate, want)
		}
		area := wantArea[l.ID]
		if area == "" {
			area = "distributedtask"
		}
		if l.Area != area || l.MaxVersion != "7.2" || l.ReleasedVersion != "7.1" || l.MinVersion == "" || l.ResourceVersion < 1 {
			t.Errorf("%s: area %q versions %q/%q/%q res %d", l.ResourceName, l.Area, l.MinVersion, l.MaxVersion, l.ReleasedVersion, l.ResourceVersion)
		}
	}
}

func TestConnectionData(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	get := func(auth, query string) map[string]any {
		t.Helper()
		a := do(t, c, call{method: "GET", url: apiURL(s, "_apis/connectionData"+query), auth: auth, version: "-"})
		if a.status != 200 {
			t.Fatalf("connectionData: %s", a)
		}
		var m map[string]any
		decode(t, a, &m)
		return m
	}
	withServices := get(basic(s.PAT()), "?connectOptions=1&lastChangeId=-1&lastChangeId64=-1")
	lsd := withServices["locationServiceData"].(map[string]any)
	defs, _ := lsd["serviceDefinitions"].([]any)
	if len(defs) != len(wantRoutes) || lsd["defaultAccessMappingMoniker"] != "PublicAccessMapping" || lsd["lastChangeId"] == nil || lsd["lastChangeId64"] == nil {
		t.Fatalf("locationServiceData: %v", lsd)
	}
	if maps, _ := lsd["accessMappings"].([]any); len(maps) != 1 {
		t.Fatalf("accessMappings: %v", lsd["accessMappings"])
	}
	if withServices["deploymentType"] != "hosted" || withServices["instanceId"] == "" || withServices["deploymentId"] == "" {
		t.Fatalf("connectionData: %v", withServices)
	}
	without := get(basic(s.PAT()), "?connectOptions=0&lastChangeId=0&lastChangeId64=0")
	if _, ok := without["locationServiceData"].(map[string]any)["serviceDefinitions"]; ok {
		t.Fatal("serviceDefinitions sent although connectOptions=0")
	}
	// authenticatedUser is the caller.
	userID := withServices["authenticatedUser"].(map[string]any)["id"]
	ag := newAgent(t, s, c, "cd-agent")
	agentView := get(bearer(ag.token), "")
	if got := agentView["authenticatedUser"].(map[string]any)["id"]; got == userID || got != agentView["authorizedUser"].(map[string]any)["id"] {
		t.Fatalf("agent identity %v, user identity %v", got, userID)
	}
}

func TestAPIVersionRules(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	pools := apiURL(s, "_apis/distributedtask/pools")
	cases := []struct {
		name    string
		k       call
		status  int
		typeKey string
		message string
	}{
		{"none", call{version: "-"}, 400, "VssVersionNotSpecifiedException",
			`No api-version was supplied for the "GET" request. The version must be supplied either as part of the Accept header (e.g. "application/json; api-version=1.0") or as a query parameter (e.g. "?api-version=1.0").`},
		{"too new", call{version: "8.0"}, 400, "VssVersionOutOfRangeException",
			"The requested REST API version of 8.0 is out of range for this server. The latest REST API version this server supports is 7.2."},
		{"unreleased without preview", call{version: "7.2"}, 400, "VssInvalidPreviewVersionException", ""},
		{"garbage", call{version: "seven"}, 400, "VssInvalidApiVersionException", ""},
		{"too old", call{version: "0.5"}, 400, "VssVersionOutOfRangeException", ""},
		{"resource version too high", call{version: "5.1-preview.9"}, 400, "VssVersionOutOfRangeException", ""},
		{"released", call{version: "7.1"}, 200, "", ""},
		{"preview of the newest", call{version: "7.2-preview"}, 200, "", ""},
		{"old preview", call{version: "5.1-preview.1"}, 200, "", ""},
		{"query string", call{version: "-", url: pools + "?api-version=5.1-preview.1"}, 200, "", ""},
		{"legacy res-version", call{version: "-", headers: map[string]string{"Accept": "application/json; api-version=5.1; res-version=1"}}, 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.k
			k.method, k.auth = "GET", basic(s.PAT())
			if k.url == "" {
				k.url = pools
			}
			a := do(t, c, k)
			if tc.status == 200 {
				if a.status != 200 {
					t.Fatalf("%s", a)
				}
				return
			}
			e := wantError(t, a, tc.status, tc.typeKey)
			if tc.message != "" && e.Message != tc.message {
				t.Fatalf("message %q\nwant    %q", e.Message, tc.message)
			}
		})
	}
	// A version in Content-Type counts too (POST with a body, none in Accept).
	ag := newAgent(t, s, c, "ct-agent")
	a := do(t, c, call{method: "POST", url: ag.pool("sessions"), auth: bearer(ag.token), version: "-",
		body:        mustJSON(t, map[string]any{"ownerName": "h", "agent": map[string]any{"id": ag.reg.ID}}),
		contentType: "application/json; charset=utf-8; api-version=5.1-preview.1"})
	if a.status != http.StatusCreated {
		t.Fatalf("version in Content-Type: %s", a)
	}
}

func TestUnknownRoutesAndMalformedBodies(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	a := do(t, c, call{method: "GET", url: apiURL(s, "_apis/distributedtask/nothing/here"), auth: basic(s.PAT())})
	wantError(t, a, 404, "VssResourceNotFoundException")
	a = do(t, c, call{method: "GET", url: s.URL() + "x/_apis/connectionData", auth: basic(s.PAT())})
	if a.status != 404 {
		t.Fatalf("other organization: %s", a)
	}
	agents := apiURL(s, "_apis/distributedtask/pools/1/agents")
	for name, k := range map[string]call{
		"malformed":     {body: []byte(`{"name":`)},
		"trailing data": {body: []byte(`{"name":"x"} {}`)},
		"wrong type":    {body: []byte(`{"name":42}`)},
		"empty":         {body: []byte(` `)},
	} {
		k.method, k.url, k.auth = "POST", agents, basic(s.PAT())
		a := do(t, c, k)
		if a.status != 400 {
			t.Errorf("%s body: %s", name, a)
			continue
		}
		wantError(t, a, 400, map[bool]string{true: "ArgumentNullException", false: "ArgumentException"}[name == "empty"])
	}
	a = do(t, c, call{method: "POST", url: agents, auth: basic(s.PAT()), body: []byte(`name=x`), contentType: "application/x-www-form-urlencoded"})
	wantError(t, a, http.StatusUnsupportedMediaType, "VssServiceException")
	if v := s.Violations(); len(v) < 4 || !strings.Contains(strings.Join(v, "\n"), "not valid JSON") {
		t.Fatalf("malformed bodies not recorded as violations: %q", v)
	}
}

func TestBodyLimit(t *testing.T) {
	s := startServer(t, devserver.Options{MaxBody: 1024})
	c := httpClient(t, s)
	big := mustJSON(t, map[string]string{"name": strings.Repeat("x", 2048)})
	wantError(t, do(t, c, call{method: "POST", url: apiURL(s, "_apis/distributedtask/pools/1/agents"), auth: basic(s.PAT()), body: big}), http.StatusRequestEntityTooLarge, "VssRequestContentTooLargeException")
}

package devserver

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Version bounds every location advertises: 7.2 is the newest and still in
// preview, 7.1 the released one (so "7.2" without -preview is refused).
const (
	maxAPIVersion      = "7.2"
	releasedAPIVersion = "7.1"
)

// location is one ApiResourceLocation as OPTIONS _apis/ serves it, plus the
// compiled route used to match requests.
type location struct {
	ID              string `json:"id"`
	Area            string `json:"area"`
	ResourceName    string `json:"resourceName"`
	RouteTemplate   string `json:"routeTemplate"`
	ResourceVersion int    `json:"resourceVersion"`
	MinVersion      string `json:"minVersion"`
	MaxVersion      string `json:"maxVersion"`
	ReleasedVersion string `json:"releasedVersion"`

	segs []routeSeg
}

type routeSeg struct {
	literal string // matched case-insensitively when param is empty
	param   string
}

// Route templates as listener.md §1.3 and worker.md §7.1 give them.
var locationTable = []location{
	{ID: wire.LocationPools, ResourceName: "pools", RouteTemplate: "_apis/{area}/{resource}/{poolId}", ResourceVersion: 1, MinVersion: "1.0"},
	{ID: wire.LocationAgents, ResourceName: "agents", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{agentId}", ResourceVersion: 2, MinVersion: "1.0"},
	{ID: wire.LocationSessions, ResourceName: "sessions", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{sessionId}", ResourceVersion: 1, MinVersion: "1.0"},
	{ID: wire.LocationMessages, ResourceName: "messages", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{messageId}", ResourceVersion: 1, MinVersion: "1.0"},
	{ID: wire.LocationJobRequests, ResourceName: "jobrequests", RouteTemplate: "_apis/{area}/pools/{poolId}/{resource}/{requestId}", ResourceVersion: 1, MinVersion: "1.0"},
	{ID: wire.LocationAgentUpdates, ResourceName: "updates", RouteTemplate: "_apis/{area}/pools/{poolId}/agents/{agentId}/{resource}", ResourceVersion: 1, MinVersion: "1.0"},
	{ID: wire.LocationPlanEvents, ResourceName: "events", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}", ResourceVersion: 1, MinVersion: "2.0"},
	{ID: wire.LocationTimelines, ResourceName: "timelines", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{timelineId}", ResourceVersion: 1, MinVersion: "2.0"},
	{ID: wire.LocationRecords, ResourceName: "records", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/{resource}", ResourceVersion: 1, MinVersion: "2.0"},
	{ID: wire.LocationFeed, ResourceName: "feed", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}", ResourceVersion: 1, MinVersion: "4.0"},
	{ID: wire.LocationLogs, ResourceName: "logs", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/{resource}/{logId}", ResourceVersion: 1, MinVersion: "2.0"},
	{ID: wire.LocationAttachments, ResourceName: "attachments", RouteTemplate: "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}/timelines/{timelineId}/records/{recordId}/{resource}/{type}/{name}", ResourceVersion: 1, MinVersion: "2.0"},
	// The Build area (build.go); resource versions as azure-devops-go-api v7
	// requests them (7.1-preview.7, 7.1-preview.3).
	{ID: wire.LocationBuilds, Area: wire.AreaBuild, ResourceName: "builds", RouteTemplate: "{project}/_apis/{area}/{resource}/{buildId}", ResourceVersion: 7, MinVersion: "2.0"},
	{ID: wire.LocationBuildTags, Area: wire.AreaBuild, ResourceName: "tags", RouteTemplate: "{project}/_apis/{area}/builds/{buildId}/{resource}/{tag}", ResourceVersion: 3, MinVersion: "2.0"},
}

// newLocations returns the table with area, versions and compiled routes filled.
func newLocations() []*location {
	out := make([]*location, 0, len(locationTable))
	for _, l := range locationTable {
		l := l
		if l.Area == "" {
			l.Area = wire.AreaDistributedTask
		}
		l.MaxVersion = maxAPIVersion
		l.ReleasedVersion = releasedAPIVersion
		for _, s := range strings.Split(l.RouteTemplate, "/") {
			switch {
			case s == "{area}":
				l.segs = append(l.segs, routeSeg{literal: l.Area})
			case s == "{resource}":
				l.segs = append(l.segs, routeSeg{literal: l.ResourceName})
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
				l.segs = append(l.segs, routeSeg{param: strings.TrimPrefix(s[1:len(s)-1], "*")})
			default:
				l.segs = append(l.segs, routeSeg{literal: s})
			}
		}
		out = append(out, &l)
	}
	return out
}

// match tries a path (segments relative to the org) against the route. A
// trailing run of parameter segments may be absent, as the clients drop
// segments whose value they do not supply.
func (l *location) match(segs []string) (map[string]string, bool) {
	if len(segs) > len(l.segs) {
		return nil, false
	}
	vals := map[string]string{}
	for i, rs := range l.segs {
		if i >= len(segs) {
			if rs.param == "" {
				return nil, false
			}
			continue
		}
		if rs.param != "" {
			if segs[i] == "" {
				return nil, false
			}
			vals[rs.param] = segs[i]
			continue
		}
		if !strings.EqualFold(rs.literal, segs[i]) {
			return nil, false
		}
	}
	return vals, true
}

// literals counts the fixed segments, to prefer the most specific route.
func (l *location) literals() int {
	n := 0
	for _, s := range l.segs {
		if s.param == "" {
			n++
		}
	}
	return n
}

// route finds the location a path addresses.
func (s *Server) route(segs []string) (*location, map[string]string) {
	var best *location
	var bestVals map[string]string
	for _, l := range s.locs {
		if vals, ok := l.match(segs); ok {
			if best == nil || l.literals() > best.literals() {
				best, bestVals = l, vals
			}
		}
	}
	return best, bestVals
}

// splitPath splits an escaped path into unescaped segments, dropping a
// trailing slash.
func splitPath(escaped string) ([]string, bool) {
	escaped = strings.Trim(escaped, "/")
	if escaped == "" {
		return nil, true
	}
	raw := strings.Split(escaped, "/")
	out := make([]string, len(raw))
	for i, r := range raw {
		u, err := url.PathUnescape(r)
		if err != nil {
			return nil, false
		}
		out[i] = u
	}
	return out, true
}

// handleOptions serves OPTIONS _apis/: the resource locations.
func (s *Server) handleOptions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, "", collection(s.locs))
}

// identityJSON is the Identity of connectionData's authenticated user.
type identityJSON struct {
	ID                  string         `json:"id"`
	Descriptor          string         `json:"descriptor"`
	SubjectDescriptor   string         `json:"subjectDescriptor,omitempty"`
	ProviderDisplayName string         `json:"providerDisplayName"`
	IsActive            bool           `json:"isActive"`
	IsContainer         bool           `json:"isContainer"`
	Members             []string       `json:"members"`
	MemberOf            []string       `json:"memberOf"`
	MemberIDs           []string       `json:"memberIds"`
	Properties          map[string]any `json:"properties"`
	ResourceVersion     int            `json:"resourceVersion"`
	MetaTypeID          int            `json:"metaTypeId"`
}

func (p *principal) identity() identityJSON {
	return identityJSON{
		ID:                  p.identityID,
		Descriptor:          p.descriptor,
		ProviderDisplayName: p.displayName,
		IsActive:            true,
		Members:             []string{},
		MemberOf:            []string{},
		MemberIDs:           []string{},
		Properties: map[string]any{
			"Account": map[string]string{"$type": "System.String", "$value": p.account},
		},
		ResourceVersion: 2,
	}
}

// handleConnectionData serves GET _apis/connectionData (no api-version). The
// service definitions are included only when connectOptions asks for them
// (ConnectOptions.IncludeServices = 1), as the location service does.
func (s *Server) handleConnectionData(w http.ResponseWriter, r *http.Request, p *principal) *apiError {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errf(http.StatusMethodNotAllowed, exService, "The requested resource does not support http method '%s'.", r.Method)
	}
	opts := 0
	if v := queryValue(r, "connectOptions"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			// ConnectOptions is a flags enum; ASP.NET also binds its names.
			if strings.EqualFold(v, "IncludeServices") {
				n = 1
			} else if !strings.EqualFold(v, "None") {
				return badRequest("The value '%s' is not valid for connectOptions.", v)
			}
		}
		opts = n
	}
	id := p.identity()
	lsd := map[string]any{
		"defaultAccessMappingMoniker": "PublicAccessMapping",
		"lastChangeId":                64,
		"lastChangeId64":              64,
		"clientCacheFresh":            false,
		"clientCacheTimeToLive":       3600,
		"accessMappings": []map[string]any{{
			"displayName":      "Public Access Mapping",
			"moniker":          "PublicAccessMapping",
			"accessPoint":      s.origin + "/",
			"virtualDirectory": s.org,
			"serviceOwner":     serviceOwnerTFS,
		}},
		"serviceOwner": serviceOwnerTFS,
	}
	if opts&1 != 0 {
		defs := make([]map[string]any, 0, len(s.locs))
		for _, l := range s.locs {
			defs = append(defs, map[string]any{
				"serviceType":       l.Area,
				"identifier":        l.ID,
				"displayName":       l.ResourceName,
				"relativeToSetting": "context",
				"relativePath":      "/" + l.RouteTemplate,
				"description":       "Resource Location",
				"serviceOwner":      serviceOwnerTFS,
				"toolId":            "Framework",
				"resourceVersion":   l.ResourceVersion,
				"minVersion":        l.MinVersion,
				"maxVersion":        l.MaxVersion,
				"releasedVersion":   l.ReleasedVersion,
				"locationMappings": []map[string]string{{
					"accessMappingMoniker": "PublicAccessMapping",
					"location":             s.orgURL + "/" + l.RouteTemplate,
				}},
				"status": "active",
			})
		}
		lsd["serviceDefinitions"] = defs
	}
	writeJSON(w, r, http.StatusOK, "", map[string]any{
		"authenticatedUser":   id,
		"authorizedUser":      id,
		"instanceId":          s.instanceID,
		"deploymentId":        s.deploymentID,
		"deploymentType":      "hosted",
		"locationServiceData": lsd,
	})
	return nil
}

// serviceOwnerTFS is the service owner GUID of the TFS/Azure DevOps service.
const serviceOwnerTFS = "00025394-6065-48ca-87d9-7f5672854ef7"

func newGUID() string { return uuid.NewString() }

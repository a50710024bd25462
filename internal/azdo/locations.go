package azdo

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/singleflight"
)

// ResourceLocation is one entry of OPTIONS {base}/_apis/ (ApiResourceLocation).
type ResourceLocation struct {
	ID              string `json:"id"`
	Area            string `json:"area"`
	ResourceName    string `json:"resourceName"`
	RouteTemplate   string `json:"routeTemplate"`
	ResourceVersion int    `json:"resourceVersion"`
	MinVersion      string `json:"minVersion"`
	MaxVersion      string `json:"maxVersion"`
	ReleasedVersion string `json:"releasedVersion"`
}

// Locations caches resource locations per base URL for the life of the
// process, as the .NET client does. One Locations may be shared by every
// Client of a process; concurrent first lookups collapse into one OPTIONS call.
type Locations struct {
	mu    sync.Mutex
	byURL map[string]map[string]ResourceLocation
	group singleflight.Group
}

// NewLocations returns an empty cache.
func NewLocations() *Locations {
	return &Locations{byURL: map[string]map[string]ResourceLocation{}}
}

// get returns the locations of base, fetching them once. The fetch runs
// detached from the caller's cancellation, because other callers may be
// waiting on it; each caller still stops waiting when its own ctx ends.
// Failures are not cached, so the next call asks again.
func (l *Locations) get(ctx context.Context, base string, fetch func(context.Context) ([]ResourceLocation, error)) (map[string]ResourceLocation, error) {
	l.mu.Lock()
	m, ok := l.byURL[base]
	l.mu.Unlock()
	if ok {
		return m, nil
	}
	fctx := context.WithoutCancel(ctx)
	ch := l.group.DoChan(base, func() (any, error) {
		list, err := fetch(fctx)
		if err != nil {
			return nil, err
		}
		m := make(map[string]ResourceLocation, len(list))
		for _, loc := range list {
			m[strings.ToLower(loc.ID)] = loc
		}
		l.mu.Lock()
		l.byURL[base] = m
		l.mu.Unlock()
		return m, nil
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(map[string]ResourceLocation), nil
	}
}

// expandRoute fills a route template the way VssHttpUriUtility.ReplaceRouteValues
// does for the .NET client: {name} and {*name} take the route value of that
// name (case-insensitive), {area} and {resource} default to the location's,
// a placeholder without a value becomes empty and a segment left empty is
// dropped (the optional trailing {messageId} when polling, for one), and "{{"
// / "}}" are literal braces.
//
// Unlike the .NET client, values are path-escaped (as azure-devops-go-api's
// transformRouteTemplate does), so a value can never add a segment; and a
// segment with a placeholder that comes out as "." or ".." is an error, so a
// value (an attachment name, say) can never walk out of the base URL.
// Escaping the dots would not do: %2E is "." to any URL normaliser.
func expandRoute(loc ResourceLocation, values map[string]string) (string, error) {
	var out []string
	var seg strings.Builder
	hasParam := false
	var bad string
	flush := func() {
		s := seg.String()
		seg.Reset()
		if hasParam && (s == "." || s == "..") && bad == "" {
			bad = s
		}
		hasParam = false
		if s != "" {
			out = append(out, s)
		}
	}
	t := loc.RouteTemplate
	for i := 0; i < len(t); i++ {
		switch c := t[i]; c {
		case '/':
			flush()
		case '{':
			if i+1 < len(t) && t[i+1] == '{' {
				seg.WriteByte('{')
				i++
				continue
			}
			end := strings.IndexByte(t[i+1:], '}')
			if end < 0 {
				// An unclosed parameter swallows the rest, as in .NET.
				hasParam = true
				i = len(t)
				continue
			}
			name := strings.TrimPrefix(t[i+1:i+1+end], "*")
			i += end + 1
			hasParam = true
			if v, ok := routeValue(loc, values, name); ok {
				seg.WriteString(url.PathEscape(v))
			}
		case '}':
			seg.WriteByte('}')
			if i+1 < len(t) && t[i+1] == '}' {
				i++
			}
		default:
			seg.WriteByte(c)
		}
	}
	flush()
	if bad != "" {
		return "", fmt.Errorf("route %s of %s/%s: a route value makes a %q path segment, which is not a valid name", loc.RouteTemplate, loc.Area, loc.ResourceName, bad)
	}
	return strings.Join(out, "/"), nil
}

// routeValue looks name up in values first: the .NET client only adds area
// and resource when the caller did not supply them (ToRouteDictionary).
func routeValue(loc ResourceLocation, values map[string]string, name string) (string, bool) {
	if v, ok := lookupFold(values, name); ok {
		return v, true
	}
	switch strings.ToLower(name) {
	case "area":
		return loc.Area, true
	case "resource":
		return loc.ResourceName, true
	}
	return "", false
}

func lookupFold(m map[string]string, key string) (string, bool) {
	if v, ok := m[key]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// apiVersion is a parsed "major.minor[-preview[.N]]" (ApiResourceVersion).
type apiVersion struct {
	major, minor int
	preview      bool
	resource     int
}

// parseAPIVersion reads a requested version the way ApiResourceVersion's
// string constructor does: an optional leading "v", major[.minor], and an
// optional "-preview" stage (any case) with an optional ".N" resource version.
func parseAPIVersion(s string) (apiVersion, error) {
	var v apiVersion
	if s == "" {
		return v, fmt.Errorf("api-version is empty")
	}
	num, stage, hasStage := strings.Cut(s, "-")
	if hasStage {
		name, res, hasRes := strings.Cut(stage, ".")
		if !strings.EqualFold(name, "preview") {
			return v, fmt.Errorf("api-version %q: unknown stage %q (only \"preview\" exists)", s, name)
		}
		v.preview = true
		if hasRes {
			n, err := strconv.Atoi(res)
			if err != nil {
				return v, fmt.Errorf("api-version %q: resource version %q is not a number", s, res)
			}
			v.resource = n
		}
	}
	var err error
	if v.major, v.minor, err = parseMajorMinor(strings.TrimLeft(num, "v"), false); err != nil {
		return v, fmt.Errorf("api-version %q: %w", s, err)
	}
	return v, nil
}

// parseMajorMinor reads "major[.minor]". A location's versions are .NET
// System.Version strings, which may carry build and revision parts; those
// never matter for negotiation and are ignored when extra is set.
func parseMajorMinor(s string, extra bool) (int, int, error) {
	parts := strings.Split(s, ".")
	if (len(parts) > 2 && !extra) || len(parts) > 4 {
		return 0, 0, fmt.Errorf("%q is not major.minor", s)
	}
	var n [2]int
	for i := 0; i < len(parts) && i < 2; i++ {
		p := parts[i]
		if p == "" || strings.TrimLeft(p, "0123456789") != "" || len(p) > 9 {
			return 0, 0, fmt.Errorf("%q is not major.minor", s)
		}
		n[i], _ = strconv.Atoi(p)
	}
	for _, p := range parts[min(len(parts), 2):] {
		if p == "" || strings.TrimLeft(p, "0123456789") != "" || len(p) > 9 {
			return 0, 0, fmt.Errorf("%q is not a version", s)
		}
	}
	return n[0], n[1], nil
}

func (v apiVersion) less(o apiVersion) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	return v.minor < o.minor
}

// String is ApiResourceVersion.ToString: the resource version is written
// only for a preview.
func (v apiVersion) String() string {
	s := strconv.Itoa(v.major) + "." + strconv.Itoa(v.minor)
	if v.preview {
		s += "-preview"
		if v.resource > 0 {
			s += "." + strconv.Itoa(v.resource)
		}
	}
	return s
}

// acceptParams is the api-version parameter of the Accept header. Versions
// with major <= 1 use the legacy form "api-version=1.0; res-version=N"
// (VssHttpClientBase.CreateAcceptHeader, VssApiResourceVersionExtensions).
func (v apiVersion) acceptParams() string {
	if v.major <= 1 {
		s := "api-version=" + strconv.Itoa(v.major) + "." + strconv.Itoa(v.minor)
		if v.resource > 0 {
			s += "; res-version=" + strconv.Itoa(v.resource)
		}
		return s
	}
	return "api-version=" + v.String()
}

// negotiate picks the version to send for a requested one against what the
// location supports, as VssHttpClientBase.NegotiateRequestVersion does:
//   - requested older than minVersion: the server no longer serves it (error);
//   - requested newer than maxVersion: send maxVersion, as a preview when
//     releasedVersion < maxVersion, with no resource version;
//   - otherwise send the requested major.minor with the resource version
//     clamped to the location's, as a preview when releasedVersion < requested
//     and otherwise keeping the requested stage.
//
// One deviation: a location without a maxVersion at all makes the .NET client
// throw (ArgumentNullException); goagent sends the requested version as is.
// An empty minVersion or releasedVersion reads as "0.0" (never released).
func negotiate(loc ResourceLocation, requested string) (apiVersion, error) {
	req, err := parseAPIVersion(requested)
	if err != nil {
		return apiVersion{}, err
	}
	if loc.MaxVersion == "" {
		return req, nil
	}
	lv := func(field, s string) (apiVersion, error) {
		if s == "" {
			return apiVersion{}, nil
		}
		maj, mnr, err := parseMajorMinor(s, true)
		if err != nil {
			return apiVersion{}, fmt.Errorf("resource location %s (%s/%s): the server's %s %w", loc.ID, loc.Area, loc.ResourceName, field, err)
		}
		return apiVersion{major: maj, minor: mnr}, nil
	}
	minV, err := lv("minVersion", loc.MinVersion)
	if err != nil {
		return apiVersion{}, err
	}
	maxV, err := lv("maxVersion", loc.MaxVersion)
	if err != nil {
		return apiVersion{}, err
	}
	released, err := lv("releasedVersion", loc.ReleasedVersion)
	if err != nil {
		return apiVersion{}, err
	}
	switch {
	case req.less(minV):
		return apiVersion{}, fmt.Errorf("%w: goagent asks for api-version %s of %s/%s, but the server only serves %s to %s; the server is newer than this agent supports, update goagent",
			ErrAPIVersion, requested, loc.Area, loc.ResourceName, loc.MinVersion, loc.MaxVersion)
	case maxV.less(req):
		return apiVersion{major: maxV.major, minor: maxV.minor, preview: released.less(maxV)}, nil
	default:
		out := req
		out.resource = min(req.resource, loc.ResourceVersion)
		if released.less(req) {
			out.preview = true
		}
		return out, nil
	}
}

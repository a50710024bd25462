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

func (l *Locations) get(ctx context.Context, base string, fetch func(context.Context) ([]ResourceLocation, error)) (map[string]ResourceLocation, error) {
	l.mu.Lock()
	m, ok := l.byURL[base]
	l.mu.Unlock()
	if ok {
		return m, nil
	}
	v, err, _ := l.group.Do(base, func() (any, error) {
		list, err := fetch(ctx)
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
	if err != nil {
		return nil, err
	}
	return v.(map[string]ResourceLocation), nil
}

// expandRoute fills a route template the way the VSS clients do: {area} and
// {resource} come from the location, other {name} or {*name} placeholders from
// values (path-escaped), and a segment whose placeholder has no value is
// dropped (the optional trailing {messageId} when polling, for one).
func expandRoute(loc ResourceLocation, values map[string]string) string {
	var out []string
	for _, seg := range strings.Split(loc.RouteTemplate, "/") {
		if seg == "" {
			continue
		}
		var b strings.Builder
		drop := false
		rest := seg
		for {
			i := strings.IndexByte(rest, '{')
			if i < 0 {
				b.WriteString(rest)
				break
			}
			j := strings.IndexByte(rest[i:], '}')
			if j < 0 {
				b.WriteString(rest)
				break
			}
			b.WriteString(rest[:i])
			name := strings.TrimPrefix(rest[i+1:i+j], "*")
			var val string
			var ok bool
			switch name {
			case "area":
				val, ok = loc.Area, true
			case "resource":
				val, ok = loc.ResourceName, true
			default:
				val, ok = lookupFold(values, name)
			}
			if !ok || val == "" {
				drop = true
				break
			}
			b.WriteString(url.PathEscape(val))
			rest = rest[i+j+1:]
		}
		if !drop {
			out = append(out, b.String())
		}
	}
	return strings.Join(out, "/")
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

// apiVersion is a parsed "major.minor[-preview[.N]]".
type apiVersion struct {
	major, minor int
	preview      bool
	resource     int
}

func parseAPIVersion(s string) (apiVersion, error) {
	var v apiVersion
	num, pre, hasPre := strings.Cut(s, "-")
	maj, min, _ := strings.Cut(num, ".")
	var err error
	if v.major, err = strconv.Atoi(maj); err != nil {
		return v, fmt.Errorf("api-version %q: %w", s, err)
	}
	if min != "" {
		if v.minor, err = strconv.Atoi(min); err != nil {
			return v, fmt.Errorf("api-version %q: %w", s, err)
		}
	}
	if hasPre {
		name, res, hasRes := strings.Cut(pre, ".")
		if !strings.EqualFold(name, "preview") {
			return v, fmt.Errorf("api-version %q: unknown stage %q", s, name)
		}
		v.preview = true
		if hasRes {
			if v.resource, err = strconv.Atoi(res); err != nil {
				return v, fmt.Errorf("api-version %q: %w", s, err)
			}
		}
	}
	return v, nil
}

func (v apiVersion) less(o apiVersion) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	return v.minor < o.minor
}

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

// negotiate picks the version to send for a requested one against what the
// location supports, following VssHttpClientBase.NegotiateRequestVersion.
func negotiate(loc ResourceLocation, requested string) (string, error) {
	req, err := parseAPIVersion(requested)
	if err != nil {
		return "", err
	}
	min, _ := parseAPIVersion(orZero(loc.MinVersion))
	max, _ := parseAPIVersion(orZero(loc.MaxVersion))
	released, _ := parseAPIVersion(orZero(loc.ReleasedVersion))
	if loc.MaxVersion == "" || (max.major == 0 && max.minor == 0) {
		return req.String(), nil // the location declares nothing: send as asked
	}
	if req.less(min) {
		return "", fmt.Errorf("api-version %s is older than the oldest version %s the server supports for %s/%s", requested, loc.MinVersion, loc.Area, loc.ResourceName)
	}
	if max.less(req) {
		out := apiVersion{major: max.major, minor: max.minor}
		if released.less(max) {
			out.preview = true
		}
		return out.String(), nil
	}
	out := req
	if out.resource > loc.ResourceVersion {
		out.resource = loc.ResourceVersion
	}
	if released.less(req) {
		out.preview = true
	}
	return out.String(), nil
}

func orZero(s string) string {
	if s == "" {
		return "0.0"
	}
	return s
}

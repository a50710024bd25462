package devserver

import (
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// apiVersion is a parsed "major.minor[-preview[.N]]".
type apiVersion struct {
	major, minor int
	preview      bool
	resource     int
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

// parseAPIVersion parses the forms VssApiResourceVersion produces: "5.1",
// "5.1-preview", "5.1-preview.2". The stage name is case-insensitive.
func parseAPIVersion(s string) (apiVersion, error) {
	var v apiVersion
	s = strings.TrimSpace(s)
	num, stage, hasStage := strings.Cut(s, "-")
	maj, minStr, hasMin := strings.Cut(num, ".")
	var err error
	if v.major, err = atoiStrict(maj); err != nil {
		return v, fmt.Errorf("api-version %q", s)
	}
	if hasMin {
		if v.minor, err = atoiStrict(minStr); err != nil {
			return v, fmt.Errorf("api-version %q", s)
		}
	}
	if hasStage {
		name, res, hasRes := strings.Cut(stage, ".")
		if !strings.EqualFold(name, "preview") {
			return v, fmt.Errorf("api-version %q", s)
		}
		v.preview = true
		if hasRes {
			if v.resource, err = atoiStrict(res); err != nil || v.resource < 1 {
				return v, fmt.Errorf("api-version %q", s)
			}
		}
	}
	return v, nil
}

// atoiStrict accepts only non-empty runs of ASCII digits (no sign, no spaces).
func atoiStrict(s string) (int, error) {
	if s == "" || len(s) > 6 {
		return 0, fmt.Errorf("not a number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number")
		}
	}
	return strconv.Atoi(s)
}

// requestedVersion finds the api-version a request carries: the query string,
// then the Accept header's media-type parameter, then Content-Type's
// (listener.md §1.4). The legacy "api-version=1.0; res-version=N" form is
// folded into a preview resource version.
func requestedVersion(r *http.Request) (string, bool) {
	if v := queryValue(r, "api-version"); v != "" {
		return v, true
	}
	for _, h := range []string{"Accept", "Content-Type"} {
		for _, value := range r.Header.Values(h) {
			for _, part := range strings.Split(value, ",") {
				_, params, err := mime.ParseMediaType(strings.TrimSpace(part))
				if err != nil {
					continue
				}
				if v, ok := params["api-version"]; ok && v != "" {
					if rv, ok := params["res-version"]; ok && rv != "" && !strings.Contains(v, "-") {
						v += "-preview." + rv
					}
					return v, true
				}
			}
		}
	}
	return "", false
}

// checkVersion enforces the api-version rules of the service for one
// location: present, well-formed, within [min,max], and marked -preview when
// it is newer than the released version. Messages are the service's own.
func checkVersion(r *http.Request, loc *location) (apiVersion, *apiError) {
	raw, ok := requestedVersion(r)
	if !ok {
		return apiVersion{}, errf(http.StatusBadRequest, exVersionMissing,
			`No api-version was supplied for the "%s" request. The version must be supplied either as part of the Accept header (e.g. "application/json; api-version=1.0") or as a query parameter (e.g. "?api-version=1.0").`,
			r.Method)
	}
	v, err := parseAPIVersion(raw)
	if err != nil {
		return v, errf(http.StatusBadRequest, exVersionInvalid,
			`The api-version '%s' is not valid. It must be in the format {Major}.{Minor}[-{Stage}[.{Resource}]], e.g. "5.1-preview.1".`, raw)
	}
	minV, _ := parseAPIVersion(loc.MinVersion)
	maxV, _ := parseAPIVersion(loc.MaxVersion)
	released, _ := parseAPIVersion(loc.ReleasedVersion)
	if maxV.less(v) {
		return v, errf(http.StatusBadRequest, exVersionRange,
			"The requested REST API version of %d.%d is out of range for this server. The latest REST API version this server supports is %s.",
			v.major, v.minor, loc.MaxVersion)
	}
	if v.less(minV) {
		return v, errf(http.StatusBadRequest, exVersionRange,
			"The requested REST API version of %d.%d is out of range for this server. The oldest REST API version this server supports for the %s resource is %s.",
			v.major, v.minor, loc.ResourceName, loc.MinVersion)
	}
	if released.less(v) && !v.preview {
		return v, errf(http.StatusBadRequest, exVersionPreview,
			`The requested version "%d.%d" of the resource is under preview. The -preview flag must be supplied in the api-version for such requests. For example: "%d.%d-preview"`,
			v.major, v.minor, v.major, v.minor)
	}
	if v.preview && v.resource > loc.ResourceVersion {
		return v, errf(http.StatusBadRequest, exVersionRange,
			"The requested resource version %d of the %s resource is greater than the latest version %d this server supports.",
			v.resource, loc.ResourceName, loc.ResourceVersion)
	}
	return v, nil
}

// queryValue reads a query parameter by case-insensitive name, as ASP.NET
// binds them.
func queryValue(r *http.Request, name string) string {
	q := r.URL.Query()
	if v, ok := q[name]; ok && len(v) > 0 {
		return v[0]
	}
	for k, v := range q {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

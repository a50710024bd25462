package azdo

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Sentinel kinds an *Error matches with errors.Is. The service names its
// exceptions in the "typeKey" of the wrapped-exception body (listener.md §1.7);
// the .NET client re-creates typed exceptions from that key, so goagent maps on
// it first and falls back to the status code.
var (
	ErrUnauthorized     = errors.New("unauthorized")
	ErrAccessDenied     = errors.New("access denied")
	ErrNotFound         = errors.New("not found")
	ErrSessionConflict  = errors.New("session conflict")
	ErrSessionExpired   = errors.New("session expired")
	ErrAgentNotFound    = errors.New("agent not found")
	ErrPoolNotFound     = errors.New("pool not found")
	ErrAgentExists      = errors.New("agent exists")
	ErrJobNotFound      = errors.New("job request not found")
	ErrJobTokenExpired  = errors.New("job token expired")
	ErrTokenExpired     = errors.New("agent access token expired or revoked")
	ErrServerBusy       = errors.New("server busy")
	ErrPlanNotFound     = errors.New("plan not found")
	ErrPlanSecurity     = errors.New("plan security")
	ErrBadRequest       = errors.New("bad request")
	ErrLocationNotFound = errors.New("resource location not found")
	ErrAPIVersion       = errors.New("api-version not supported by the server")
)

// typeKeys maps the service's exception type keys to kinds.
var typeKeys = map[string]error{
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
	"VssServiceResponseException":               nil,
	"RequestBlockedException":                   ErrServerBusy,
	"TaskAgentPoolMaintenanceNotFoundException": ErrNotFound,
}

// Error is a non-2xx answer from the service, or a failure to get one.
type Error struct {
	Method     string
	URL        string // without query string: the query may carry ids worth hiding
	StatusCode int
	TypeKey    string
	Message    string
	Kind       error // one of the sentinels, or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.TypeKey != "" {
		fmt.Fprintf(&b, " (%s)", e.TypeKey)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

// Is lets errors.Is match an *Error against the sentinel kinds.
func (e *Error) Is(target error) bool { return e.Kind != nil && e.Kind == target }

// wrappedException is the VSS error body (azure-devops-go-api WrappedError).
type wrappedException struct {
	Message   string `json:"message"`
	TypeKey   string `json:"typeKey"`
	TypeName  string `json:"typeName"`
	ErrorCode int    `json:"errorCode"`
	EventID   int    `json:"eventId"`
}

// newError builds an *Error from a response status, its Content-Type and
// X-TFS-ServiceError headers, and its body.
func newError(method, target string, status int, header http.Header, body []byte) *Error {
	e := &Error{Method: method, URL: target, StatusCode: status}
	body = trimBOM(body)
	var w wrappedException
	switch {
	case len(body) == 0:
	case isHTML(header.Get("Content-Type"), body):
		e.Message = htmlMessage(body)
	case json.Unmarshal(body, &w) == nil:
		e.TypeKey = w.TypeKey
		e.Message = w.Message
	default:
		e.Message = firstLine(string(body), 300)
	}
	if e.Message == "" {
		// The .NET client shows this header when the body is no wrapped
		// exception (VssHttpClientBase.HandleResponseAsync).
		if se := header.Get("X-TFS-ServiceError"); se != "" {
			if d, err := url.QueryUnescape(se); err == nil {
				e.Message = firstLine(d, 300)
			}
		}
	}
	if k, ok := typeKeys[e.TypeKey]; ok && k != nil {
		e.Kind = k
		return e
	}
	switch status {
	case http.StatusUnauthorized:
		e.Kind = ErrUnauthorized
	case http.StatusForbidden:
		e.Kind = ErrAccessDenied
	case http.StatusNotFound:
		e.Kind = ErrNotFound
	case http.StatusConflict:
		// A 409 without a type key is the agent-exists/session-conflict family;
		// callers know which from the route.
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		e.Kind = ErrServerBusy
	case http.StatusBadRequest:
		e.Kind = ErrBadRequest
	}
	return e
}

// isHTML tells a web page (a sign-in page, a proxy's block page) from a
// service answer.
func isHTML(contentType string, body []byte) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && (mt == "text/html" || mt == "application/xhtml+xml") {
		return true
	}
	b := strings.ToLower(strings.TrimSpace(string(body[:min(len(body), 512)])))
	return strings.HasPrefix(b, "<!doctype html") || strings.HasPrefix(b, "<html")
}

// htmlMessage describes an HTML answer by its title instead of dumping markup.
func htmlMessage(body []byte) string {
	msg := "the server answered with a web page instead of JSON"
	if t := htmlTitle(body); t != "" {
		msg = fmt.Sprintf("the server answered with a web page (%q) instead of JSON", t)
	}
	return msg + "; check that the URL is the organization or collection URL (https://dev.azure.com/ORG) and that no proxy intercepts the request"
}

func htmlTitle(body []byte) string {
	s := string(body[:min(len(body), 64<<10)])
	i := strings.Index(strings.ToLower(s), "<title")
	if i < 0 {
		return ""
	}
	s = s[i:]
	j := strings.IndexByte(s, '>')
	if j < 0 {
		return ""
	}
	s = s[j+1:]
	if k := strings.Index(strings.ToLower(s), "</title"); k >= 0 {
		s = s[:k]
	}
	s = strings.Join(strings.Fields(html.UnescapeString(s)), " ")
	return truncate(s, 120)
}

func firstLine(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return truncate(s, max)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return b[3:]
	}
	return b
}

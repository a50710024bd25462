package azdo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// newError builds an *Error from a response status and body.
func newError(method, url string, status int, body []byte) *Error {
	e := &Error{Method: method, URL: url, StatusCode: status}
	var w wrappedException
	if len(body) > 0 && json.Unmarshal(trimBOM(body), &w) == nil {
		e.TypeKey = w.TypeKey
		e.Message = w.Message
	} else if len(body) > 0 {
		e.Message = firstLine(string(body), 300)
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

func firstLine(s string, max int) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return b[3:]
	}
	return b
}

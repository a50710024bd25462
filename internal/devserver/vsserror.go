package devserver

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Exception type keys the emulator answers with (listener.md §1.7). The agent
// maps on typeKey, as the .NET client re-creates typed exceptions from it.
const (
	exSessionConflict   = "TaskAgentSessionConflictException"
	exSessionExpired    = "TaskAgentSessionExpiredException"
	exAgentNotFound     = "TaskAgentNotFoundException"
	exPoolNotFound      = "TaskAgentPoolNotFoundException"
	exAgentExists       = "TaskAgentExistsException"
	exJobNotFound       = "TaskAgentJobNotFoundException"
	exAgentTokenExpired = "TaskAgentAccessTokenExpiredException"
	exAccessDenied      = "AccessDeniedException"
	exPlanNotFound      = "TaskOrchestrationPlanNotFoundException"
	exPlanSecurity      = "TaskOrchestrationPlanSecurityException"
	exTimelineNotFound  = "TimelineNotFoundException"
	exTimelineExists    = "TimelineExistsException"
	exLogNotFound       = "TaskLogNotFoundException"
	exUnauthorized      = "UnauthorizedRequestException"
	exResourceNotFound  = "VssResourceNotFoundException"
	exVersionMissing    = "VssVersionNotSpecifiedException"
	exVersionRange      = "VssVersionOutOfRangeException"
	exVersionPreview    = "VssInvalidPreviewVersionException"
	exVersionInvalid    = "VssInvalidApiVersionException"
	exArgument          = "ArgumentException"
	exArgumentNull      = "ArgumentNullException"
	exTooLarge          = "VssRequestContentTooLargeException"
	exService           = "VssServiceException"
)

// typeNames gives the assembly-qualified type of each key. Distributed-task
// exceptions live in the DistributedTask WebApi assembly; the platform's own in
// the framework assemblies.
var typeNames = map[string]string{
	exUnauthorized:     "Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException, Microsoft.TeamFoundation.Framework.Server",
	exResourceNotFound: "Microsoft.VisualStudio.Services.WebApi.VssResourceNotFoundException, Microsoft.VisualStudio.Services.WebApi",
	exVersionMissing:   "Microsoft.VisualStudio.Services.WebApi.VssVersionNotSpecifiedException, Microsoft.VisualStudio.Services.WebApi",
	exVersionRange:     "Microsoft.VisualStudio.Services.WebApi.VssVersionOutOfRangeException, Microsoft.VisualStudio.Services.WebApi",
	exVersionPreview:   "Microsoft.VisualStudio.Services.WebApi.VssInvalidPreviewVersionException, Microsoft.VisualStudio.Services.WebApi",
	exVersionInvalid:   "Microsoft.VisualStudio.Services.WebApi.VssInvalidApiVersionException, Microsoft.VisualStudio.Services.WebApi",
	exArgument:         "System.ArgumentException, mscorlib",
	exArgumentNull:     "System.ArgumentNullException, mscorlib",
	exTooLarge:         "Microsoft.VisualStudio.Services.WebApi.VssRequestContentTooLargeException, Microsoft.VisualStudio.Services.WebApi",
	exService:          "Microsoft.VisualStudio.Services.Common.VssServiceException, Microsoft.VisualStudio.Services.Common",

	// The Build area (build.go).
	exBuildNotFound:     "Microsoft.TeamFoundation.Build.WebApi.BuildNotFoundException, Microsoft.TeamFoundation.Build2.WebApi",
	exBuildNumberFormat: "Microsoft.TeamFoundation.Build.WebApi.InvalidBuildNumberException, Microsoft.TeamFoundation.Build2.WebApi",
	exProjectNotFound:   "Microsoft.TeamFoundation.Core.WebApi.ProjectDoesNotExistException, Microsoft.TeamFoundation.Core.WebApi",
}

// wrappedException is the VSS error body (azure-devops-go-api WrappedError).
type wrappedException struct {
	ID             string  `json:"$id"`
	InnerException *string `json:"innerException"`
	Message        string  `json:"message"`
	TypeName       string  `json:"typeName"`
	TypeKey        string  `json:"typeKey"`
	ErrorCode      int     `json:"errorCode"`
	EventID        int     `json:"eventId"`
}

// apiError is an error a handler returns to be written in the VSS shape.
type apiError struct {
	status  int
	typeKey string
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.typeKey, e.message) }

func errf(status int, typeKey, format string, args ...any) *apiError {
	return &apiError{status: status, typeKey: typeKey, message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, exArgument, format, args...)
}

func notFound(typeKey, format string, args ...any) *apiError {
	return errf(http.StatusNotFound, typeKey, format, args...)
}

func accessDenied(format string, args ...any) *apiError {
	return errf(http.StatusForbidden, exAccessDenied, format, args...)
}

func typeName(key string) string {
	if n, ok := typeNames[key]; ok {
		return n
	}
	return "Microsoft.TeamFoundation.DistributedTask.WebApi." + key + ", Microsoft.TeamFoundation.DistributedTask.WebApi"
}

// writeVSSError writes the wrapped-exception body with the given status.
func writeVSSError(w http.ResponseWriter, status int, key, message string) {
	body, _ := json.Marshal(wrappedException{
		ID: "1", Message: message, TypeName: typeName(key), TypeKey: key, EventID: 3000,
	})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-TFS-ServiceError", escapeHeader(message))
	w.WriteHeader(status)
	w.Write(body)
}

// escapeHeader keeps a message usable as a header value, as the service
// URL-encodes X-TFS-ServiceError.
func escapeHeader(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '%' {
			b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

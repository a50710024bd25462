package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Error is a failure to obtain or use a credential. Its message names the
// credential tried and what it read, what the endpoint answered, and what to
// do. It never contains a token, secret or password: answers are cut to their
// first line and scrubbed of every secret the credential knows.
type Error struct {
	Credential string // what was tried, as Source.Describe says it
	Op         string // "get Azure DevOps token", "read token", …
	Answer     string // what the endpoint (or the file system) answered
	Fix        string // what the user should do
	Err        error  // the underlying error, for errors.Is/As

	secrets []string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Credential != "" {
		b.WriteString(" with ")
		b.WriteString(e.Credential)
	}
	answer := e.Answer
	if answer == "" && e.Err != nil {
		answer = summarize(e.Err.Error())
	}
	if answer != "" {
		b.WriteString(": ")
		b.WriteString(answer)
	}
	if e.Fix != "" {
		b.WriteString(" — ")
		b.WriteString(e.Fix)
	}
	return redact(b.String(), e.secrets)
}

func (e *Error) Unwrap() error { return e.Err }

// redact replaces every occurrence of a known secret. Messages are built from
// answers that should never echo a secret; this is the second line of defence.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// summarize keeps the first meaningful line of a (possibly multi-line, SDK
// formatted) error and bounds its length.
func summarize(s string) string {
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && strings.Trim(line, "-") != "" {
			s = line
			break
		}
	}
	const max = 400
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// entraAnswer is what Entra (or a managed identity endpoint) said.
type entraAnswer struct {
	Status      int
	Code        string // OAuth "error"
	Description string // first line of "error_description" (or "message")
	AADSTS      string // the AADSTS number in the description, if any
	TraceID     string
}

var aadstsRE = regexp.MustCompile(`AADSTS(\d+)`)

func (a entraAnswer) String() string {
	var b strings.Builder
	if a.Status != 0 {
		fmt.Fprintf(&b, "%d", a.Status)
		if a.Code != "" {
			b.WriteString(" " + a.Code)
		}
	} else {
		b.WriteString(a.Code)
	}
	if a.Description != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(a.Description)
	}
	if a.TraceID != "" {
		fmt.Fprintf(&b, " (trace id %s)", a.TraceID)
	}
	return b.String()
}

// parseAnswer reads an OAuth-style error body ({"error","error_description"})
// or an App Service style one ({"statusCode","message"}).
func parseAnswer(status int, body []byte) entraAnswer {
	a := entraAnswer{Status: status}
	var v struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
		Message     string          `json:"message"`
		TraceID     string          `json:"trace_id"`
	}
	if json.Unmarshal(body, &v) == nil {
		var code string
		if json.Unmarshal(v.Error, &code) == nil {
			a.Code = code
		} else {
			// {"error":{"code":…,"message":…}} (ARM style)
			var nested struct{ Code, Message string }
			if json.Unmarshal(v.Error, &nested) == nil {
				a.Code, v.Message = nested.Code, nested.Message
			}
		}
		a.Description = v.Description
		if a.Description == "" {
			a.Description = v.Message
		}
		a.TraceID = v.TraceID
	} else {
		a.Description = strings.TrimSpace(string(body))
	}
	// Entra descriptions continue with "\r\nTrace ID: … Timestamp: …".
	a.Description = summarize(strings.ReplaceAll(a.Description, "\r", ""))
	if m := aadstsRE.FindStringSubmatch(a.Description); m != nil {
		a.AADSTS = m[1]
	}
	return a
}

// answerOf extracts the endpoint's answer from an azidentity error, when it
// carries the HTTP response.
func answerOf(err error) (entraAnswer, bool) {
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil {
		return entraAnswer{}, false
	}
	body, _ := runtime.Payload(afe.RawResponse)
	return parseAnswer(afe.RawResponse.StatusCode, body), true
}

// entraFix maps AADSTS codes to the fix. Codes: https://learn.microsoft.com/entra/identity-platform/reference-error-codes
func entraFix(c *credential, code string) string {
	app := c.clientID
	switch code {
	case "7000215":
		return "AZURE_CLIENT_SECRET is not a valid secret of app " + app + ": copy the secret's Value (not its Secret ID) from the app registration's Certificates & secrets page, or create a new secret"
	case "7000222":
		return "the client secret of app " + app + " has expired: create a new secret and update AZURE_CLIENT_SECRET"
	case "700016":
		return "no application with client id " + app + " exists in tenant " + c.tenantID + ": check AZURE_CLIENT_ID and AZURE_TENANT_ID (the app must be registered in, or consented to, that tenant)"
	case "90002", "900023", "900022":
		return "tenant " + c.tenantID + " does not exist in this cloud: check AZURE_TENANT_ID (use the tenant the Azure DevOps organization is connected to); for a sovereign cloud set AZURE_AUTHORITY_HOST"
	case "500011", "500014":
		return "Azure DevOps (resource 499b84ac-1321-427f-aa17-267ca6975798) is not available in tenant " + c.tenantID + ": use the tenant the Azure DevOps organization is connected to"
	case "70021", "700211", "700212", "700213", "7002131":
		fix := "no federated credential on app " + app + " matches the token in " + c.tokenFile
		if ft := c.federated; ft.issuer != "" || ft.subject != "" {
			fix += fmt.Sprintf(" (issuer %q, subject %q, audience %q)", ft.issuer, ft.subject, strings.Join(ft.audience, ","))
		}
		return fix + ": add a federated identity credential to the app (or user-assigned identity) with exactly that issuer and subject, audience api://AzureADTokenExchange"
	case "700024":
		return "the federated token in " + c.tokenFile + " is outside its validity window: the projected service account token is not being refreshed, or the local clock is wrong"
	case "700027", "700023":
		return "Entra did not accept the certificate's signature: upload the certificate (SHA-1 thumbprint " + c.thumbprint + ") to app " + app + " under Certificates & secrets"
	case "7000112", "7000111":
		return "app " + app + " is disabled in tenant " + c.tenantID + ": enable it (Enterprise applications → Properties)"
	case "53003", "53000", "53001":
		return "a Conditional Access policy blocked the sign-in: exclude this workload identity from the policy or satisfy it"
	case "50173", "70043", "700082", "50078", "50079", "50076":
		return "the Azure CLI login is no longer valid: run `az login` again (with --tenant for the organization's tenant)"
	}
	if code != "" {
		return "see https://login.microsoftonline.com/error?code=" + code
	}
	return ""
}

// managedIdentityFix explains a managed identity endpoint's answer.
func managedIdentityFix(c *credential, a entraAnswer) string {
	desc := strings.ToLower(a.Description)
	notAssigned := strings.Contains(desc, "no managed identity") || strings.Contains(desc, "no msi") ||
		strings.Contains(desc, "identity not found") || strings.Contains(desc, "not assigned") ||
		strings.Contains(desc, "isn't assigned")
	resource := "the container app (or App Service)"
	if c.endpoint == "IMDS" {
		resource = "the VM, VM scale set or AKS node pool"
	}
	switch {
	case a.Status == http.StatusBadRequest || notAssigned:
		if c.clientID != "" {
			return "no identity with client id " + c.clientID + " is assigned to this resource: assign that user-assigned identity to " + resource + ", or unset AZURE_CLIENT_ID to use the system-assigned identity"
		}
		return "assign a system- or user-assigned identity to " + resource + ", and set AZURE_CLIENT_ID for a user-assigned one"
	case a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden:
		return "the endpoint rejected IDENTITY_HEADER: the platform sets and rotates it for the container's main process; pass the environment through unchanged and restart the container"
	case a.Status == http.StatusNotFound:
		return "IDENTITY_ENDPOINT does not serve tokens at that address: do not override IDENTITY_ENDPOINT, the platform sets it"
	case a.Status >= 500 || a.Status == http.StatusTooManyRequests:
		return "the managed identity endpoint is failing; goagent retried. Try again later; if it persists, check the platform's status"
	}
	return ""
}

// ExplainUnauthorized is what the listener appends when Azure DevOps answers
// 401 to a token of the given kind (Source.Kind), after the one retry with a
// fresh token also failed.
func ExplainUnauthorized(kind string) string {
	switch kind {
	case KindPAT:
		return "Azure DevOps rejected the token: a personal access token may be expired, revoked, for another organization, or lack the Agent Pools (Read & manage) scope — create a new one. An Entra bearer token passed as AZP_TOKEN may have expired, or its identity is not a member of the organization."
	case KindBearerToken:
		return "Azure DevOps rejected the Entra bearer token handed in through AZP_TOKEN / AZP_TOKEN_FILE: it may have expired (goagent cannot refresh a handed-in token; keep AZP_TOKEN_FILE rewritten, or let goagent get tokens itself with --auth managed-identity or workload-identity), it may be for another resource than Azure DevOps (499b84ac-1321-427f-aa17-267ca6975798), " +
			"or its identity is not a member of the organization (Organization settings → Users)."
	case KindManagedIdentity, KindWorkloadIdentity, KindServicePrincipal:
		return "Azure DevOps rejected the Entra token of the " + kindName(kind) + ": the identity is probably not a member of the organization. Add it under Organization settings → Users (search for the application/client id, access level Basic), " +
			"make sure the organization is connected to the identity's tenant (Organization settings → Microsoft Entra), and grant it the Administrator role on the agent pool (Organization settings → Agent pools → Security) to register agents."
	case KindAzureCLI:
		return "Azure DevOps rejected the Azure CLI token: the signed-in account is not a member of the organization, or az is signed in to another tenant. Run `az login --tenant <the organization's tenant>` with an account that belongs to the organization."
	case KindAgentOAuth:
		return "Azure DevOps rejected the agent's own credential: the agent was probably deleted from the pool, or the key in the state directory does not belong to this registration. Register the agent again (goagent remove, then goagent register or run)."
	}
	return "Azure DevOps rejected the credential: check that the identity is a member of the organization with access to the agent pool."
}

// ExplainForbidden is what the listener appends when Azure DevOps answers 403
// to registration or pool calls.
func ExplainForbidden(kind string) string {
	who := "the identity"
	if kind == KindPAT {
		who = "the token's user (and the token's scope: Agent Pools, Read & manage)"
	}
	return "Azure DevOps denied access: " + who + " needs the Administrator role on the agent pool to register agents. Grant it under Organization settings → Agent pools → <pool> → Security (role Administrator), or at the level of all pools."
}

func kindName(kind string) string {
	switch kind {
	case KindManagedIdentity:
		return "managed identity"
	case KindWorkloadIdentity:
		return "workload identity"
	case KindServicePrincipal:
		return "service principal"
	case KindAzureCLI:
		return "Azure CLI"
	case KindAgentOAuth:
		return "agent credential"
	case KindPAT:
		return "token"
	case KindBearerToken:
		return "bearer token"
	}
	return kind
}

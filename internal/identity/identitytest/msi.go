package identitytest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// identities is the set of managed identities assigned to the fake resource.
type identities struct {
	mu     sync.Mutex
	system bool
	users  map[string]string // client id → object id
	tenant string
}

func newIdentities() *identities {
	return &identities{system: true, users: map[string]string{}, tenant: randomID()}
}

// SystemAssignedClientID is the client id of the fakes' system-assigned identity.
const SystemAssignedClientID = "5a5a5a5a-0000-4000-8000-5a5a5a5a5a5a"

// SetSystemAssigned enables or disables the system-assigned identity
// (enabled by default).
func (ids *identities) SetSystemAssigned(on bool) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.system = on
}

// AssignUser assigns a user-assigned identity with this client id.
func (ids *identities) AssignUser(clientID string) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	ids.users[clientID] = randomID()
}

// TenantID is the tenant in the issued tokens.
func (ids *identities) TenantID() string { return ids.tenant }

func (ids *identities) lookup(clientID string) (appID, objectID string, ok bool) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if clientID == "" {
		return SystemAssignedClientID, "0b0b0b0b-0000-4000-8000-0b0b0b0b0b0b", ids.system
	}
	oid, ok := ids.users[clientID]
	return clientID, oid, ok
}

// ManagedIdentity is a fake Azure Container Apps / App Service managed
// identity endpoint (api-version 2019-08-01): GET
// {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…[&client_id=…] with
// header X-IDENTITY-HEADER.
type ManagedIdentity struct {
	Knobs
	*identities
	srv    *httptest.Server
	iss    issuer
	header string
}

// NewManagedIdentity starts the endpoint with a system-assigned identity.
func NewManagedIdentity(t testing.TB) *ManagedIdentity {
	m := &ManagedIdentity{identities: newIdentities(), iss: newIssuer(t), header: "idh-" + randomID()}
	mux := http.NewServeMux()
	mux.HandleFunc("/msi/token", m.serve)
	m.srv = server(t, mux)
	return m
}

// Endpoint is the value for IDENTITY_ENDPOINT.
func (m *ManagedIdentity) Endpoint() string { return m.srv.URL + "/msi/token" }

// Header is the value for IDENTITY_HEADER (a secret).
func (m *ManagedIdentity) Header() string { return m.header }

// Client trusts the fake's certificate and refuses non-local hosts.
func (m *ManagedIdentity) Client() *http.Client { return clientFor(m.srv, nil) }

// Setenv sets IDENTITY_ENDPOINT and IDENTITY_HEADER for the test: azidentity
// reads them from the process environment.
func (m *ManagedIdentity) Setenv(t *testing.T) {
	t.Setenv("IDENTITY_ENDPOINT", m.Endpoint())
	t.Setenv("IDENTITY_HEADER", m.header)
}

// notAssigned is the App Service answer for an identity that is not assigned.
// The exact Container Apps wording is UNCONFIRMED; App Service documents this
// text, and goagent matches it loosely.
const notAssigned = "No managed identity found for specified ClientId/ResourceId/PrincipalId."

func (m *ManagedIdentity) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-IDENTITY-HEADER") != m.header {
		// Container Apps answers a missing or wrong header with an empty 403
		// (microsoft-authentication-library-for-dotnet issue 5245).
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if status, fail := m.begin(); fail {
		writeJSON(w, status, map[string]any{"statusCode": status, "message": "injected failure", "correlationId": randomID()})
		return
	}
	q := r.URL.Query()
	if r.Method != http.MethodGet || q.Get("api-version") != "2019-08-01" || q.Get("resource") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "api-version 2019-08-01 and resource are required", "correlationId": randomID()})
		return
	}
	appID, oid, ok := m.lookup(q.Get("client_id"))
	if !ok || q.Has("principal_id") || q.Has("mi_res_id") {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": notAssigned, "correlationId": randomID()})
		return
	}
	tok, exp := m.issue(&m.Knobs, m.iss, q.Get("resource"), appID, oid)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     q.Get("resource"),
		"token_type":   "Bearer",
		"client_id":    appID,
	})
}

func (ids *identities) issue(k *Knobs, iss issuer, resource, appID, oid string) (string, time.Time) {
	lifetime, aud := k.settings()
	if aud == "" {
		aud = resource
	}
	now := time.Now()
	exp := now.Add(lifetime)
	tok := iss.accessToken(map[string]any{
		"aud":       aud,
		"iss":       "https://sts.windows.net/" + ids.tenant + "/",
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       exp.Unix(),
		"appid":     appID,
		"oid":       oid,
		"sub":       oid,
		"tid":       ids.tenant,
		"idtyp":     "app",
		"xms_mirid": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg/providers/Microsoft.App/containerApps/agent",
	})
	k.record(tok)
	return tok, exp
}

// IMDS is a fake Azure instance metadata service. It never listens: use it
// through Transport (or its Client), which hands it every request for
// 169.254.169.254.
type IMDS struct {
	Knobs
	*identities
	iss issuer

	mu     sync.Mutex
	probes int
}

// NewIMDS returns a fake IMDS with a system-assigned identity.
func NewIMDS(t testing.TB) *IMDS {
	return &IMDS{identities: newIdentities(), iss: newIssuer(t)}
}

// Client answers IMDS requests from the fake and refuses every non-local
// host; base (may be nil) carries requests to 127.0.0.1.
func (i *IMDS) Client(base http.RoundTripper) *http.Client {
	return &http.Client{Transport: Transport(base, i), Timeout: 30 * time.Second}
}

// Probes counts requests without the Metadata header (how
// DefaultAzureCredential and goagent's auto mode probe for IMDS).
func (i *IMDS) Probes() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.probes
}

// RoundTrip answers a request for 169.254.169.254 in process.
func (i *IMDS) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Hostname() != imdsHost {
		return nil, &http.ProtocolError{ErrorString: "identitytest: the IMDS fake only answers " + imdsHost}
	}
	rec := httptest.NewRecorder()
	i.serve(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func (i *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metadata/identity/oauth2/token" {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "not_found", "error_description": "unknown path"})
		return
	}
	if r.Header.Get("Metadata") != "true" {
		i.mu.Lock()
		i.probes++
		i.mu.Unlock()
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "Required metadata header not specified"})
		return
	}
	if status, fail := i.begin(); fail {
		writeJSON(w, status, map[string]any{"error": "unknown", "error_description": "injected failure"})
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" || q.Get("resource") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "api-version and resource are required"})
		return
	}
	appID, oid, ok := i.lookup(q.Get("client_id"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "Identity not found"})
		return
	}
	tok, exp := i.issue(&i.Knobs, i.iss, q.Get("resource"), appID, oid)
	secs := strconv.Itoa(int(time.Until(exp).Seconds()))
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":   tok,
		"client_id":      appID,
		"expires_in":     secs,
		"expires_on":     strconv.FormatInt(exp.Unix(), 10),
		"ext_expires_in": secs,
		"not_before":     strconv.FormatInt(time.Now().Unix(), 10),
		"resource":       q.Get("resource"),
		"token_type":     "Bearer",
	})
}

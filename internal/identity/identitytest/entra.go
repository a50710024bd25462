package identitytest

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// App is an application (service principal) the fake Entra knows.
type App struct {
	TenantID string
	ClientID string
	ObjectID string // of the service principal; random when empty

	Secret         string            // accepted client_secret
	Certificate    *x509.Certificate // accepted signer of certificate client assertions
	FederatedToken string            // the exact client_assertion accepted for workload identity
}

// Entra is a fake Microsoft Entra authority: OIDC discovery at
// /{tenant}/v2.0/.well-known/openid-configuration and the client credentials
// grant at /{tenant}/oauth2/v2.0/token, answering with the AADSTS errors the
// real one sends for the common mistakes.
type Entra struct {
	Knobs
	srv *httptest.Server
	iss issuer

	mu   sync.Mutex
	apps map[string]App // tenant/clientID
}

// NewEntra starts a fake authority for the duration of the test.
func NewEntra(t testing.TB) *Entra {
	e := &Entra{iss: newIssuer(t), apps: map[string]App{}}
	e.srv = server(t, http.HandlerFunc(e.serve))
	return e
}

// AuthorityHost is the value for AZURE_AUTHORITY_HOST.
func (e *Entra) AuthorityHost() string { return e.srv.URL + "/" }

// Client trusts the fake's certificate and refuses non-local hosts.
func (e *Entra) Client() *http.Client { return clientFor(e.srv, nil) }

// AddApp registers an application.
func (e *Entra) AddApp(a App) {
	if a.ObjectID == "" {
		a.ObjectID = randomID()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.apps[strings.ToLower(a.TenantID+"/"+a.ClientID)] = a
}

func (e *Entra) tenantKnown(tenant string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k := range e.apps {
		if strings.HasPrefix(k, strings.ToLower(tenant)+"/") {
			return true
		}
	}
	return false
}

func (e *Entra) app(tenant, clientID string) (App, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.apps[strings.ToLower(tenant+"/"+clientID)]
	return a, ok
}

func aadError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": desc + "\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: " + randomID() + "\r\nTimestamp: " + time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"error_codes":       []int{},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          "0000aaaa-11bb-cccc-dd22-eeeeee333333",
	})
}

func (e *Entra) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	tenant, rest := parts[0], parts[1]
	switch {
	case rest == "v2.0/.well-known/openid-configuration" && r.Method == http.MethodGet:
		if !e.tenantKnown(tenant) {
			aadError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant '"+tenant+"' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.")
			return
		}
		base := e.srv.URL + "/" + tenant
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":                        base + "/oauth2/v2.0/token",
			"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
			"issuer":                                e.srv.URL + "/" + tenant + "/v2.0",
			"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		})
	case rest == "oauth2/v2.0/token" && r.Method == http.MethodPost:
		e.token(w, r, tenant)
	default:
		http.NotFound(w, r)
	}
}

func (e *Entra) token(w http.ResponseWriter, r *http.Request, tenant string) {
	if status, fail := e.begin(); fail {
		aadError(w, status, "temporarily_unavailable", "AADSTS50196: The server is temporarily unavailable (injected by identitytest).")
		return
	}
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed body")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
		return
	}
	if !e.tenantKnown(tenant) {
		aadError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant '"+tenant+"' not found.")
		return
	}
	clientID := f.Get("client_id")
	app, ok := e.app(tenant, clientID)
	if !ok {
		aadError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application with identifier '"+clientID+"' was not found in the directory '"+tenant+"'.")
		return
	}
	scope := f.Get("scope")
	resource := ""
	for _, s := range strings.Fields(scope) {
		if strings.HasSuffix(s, "/.default") {
			resource = strings.TrimSuffix(s, "/.default")
		}
	}
	if resource != "" && len(strings.Fields(scope)) != 1 {
		// The official agent (MSAL.NET AcquireTokenForClient) sends the
		// resource's .default alone; goagent must too.
		aadError(w, http.StatusBadRequest, "invalid_scope", "AADSTS70011: The provided value for scope "+scope+" is not valid: a client credentials request carries only <resource>/.default.")
		return
	}
	if resource == "" {
		aadError(w, http.StatusBadRequest, "invalid_scope", "AADSTS1002012: The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
		return
	}
	switch {
	case f.Has("client_secret"):
		if app.Secret == "" || f.Get("client_secret") != app.Secret {
			aadError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
			return
		}
	case f.Has("client_assertion"):
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			aadError(w, http.StatusBadRequest, "invalid_request", "AADSTS50027: Invalid client_assertion_type.")
			return
		}
		if code, desc := e.checkAssertion(app, tenant, f.Get("client_assertion")); code != "" {
			aadError(w, http.StatusUnauthorized, "invalid_client", code+": "+desc)
			return
		}
	default:
		aadError(w, http.StatusBadRequest, "invalid_client", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	lifetime, aud := e.settings()
	if aud == "" {
		aud = resource
	}
	now := time.Now()
	tok := e.iss.accessToken(map[string]any{
		"aud":   aud,
		"iss":   "https://sts.windows.net/" + tenant + "/",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(lifetime).Unix(),
		"appid": clientID,
		"oid":   app.ObjectID,
		"sub":   app.ObjectID,
		"tid":   tenant,
		"idtyp": "app",
		"ver":   "1.0",
	})
	e.record(tok)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     int(lifetime.Seconds()),
		"ext_expires_in": int(lifetime.Seconds()),
		"access_token":   tok,
	})
}

// checkAssertion accepts the app's federated token verbatim, or a JWT signed
// by the app's certificate; it returns an AADSTS code and description
// otherwise.
func (e *Entra) checkAssertion(app App, tenant, assertion string) (string, string) {
	if app.FederatedToken != "" {
		if assertion != app.FederatedToken {
			sub := "unknown"
			if p, err := parseJWT(assertion); err == nil {
				sub = p.str("sub")
			}
			return "AADSTS700213", "No matching federated identity record found for presented assertion subject '" + sub + "'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
		}
		if p, err := parseJWT(assertion); err == nil {
			if exp, ok := p.time("exp"); ok && time.Now().After(exp) {
				return "AADSTS700024", "Client assertion is not within its valid time range. Current time: " + time.Now().UTC().Format(time.RFC3339) + ", assertion valid to: " + exp.UTC().Format(time.RFC3339) + "."
			}
		}
		return "", ""
	}
	if app.Certificate == nil {
		return "AADSTS700027", "Client assertion failed signature validation: no certificate is registered for app '" + app.ClientID + "'."
	}
	p, err := parseJWT(assertion)
	if err != nil {
		return "AADSTS50027", "JWT token is invalid or malformed."
	}
	pub, ok := app.Certificate.PublicKey.(*rsa.PublicKey)
	if !ok {
		return "AADSTS700027", "Client assertion failed signature validation: the registered certificate has no RSA key."
	}
	s256 := sha256.Sum256(app.Certificate.Raw)
	s1 := sha1.Sum(app.Certificate.Raw)
	x5tOK := p.header["x5t#S256"] == base64.StdEncoding.EncodeToString(s256[:]) ||
		p.header["x5t#S256"] == base64.RawURLEncoding.EncodeToString(s256[:]) ||
		p.header["x5t"] == base64.StdEncoding.EncodeToString(s1[:]) ||
		p.header["x5t"] == base64.RawURLEncoding.EncodeToString(s1[:])
	if !x5tOK || p.verify(pub) != nil {
		return "AADSTS700027", "Client assertion failed signature validation. (Reason - The key was not found.)"
	}
	if p.str("iss") != app.ClientID || p.str("sub") != app.ClientID {
		return "AADSTS700021", "Client assertion application identifier doesn't match 'client_id' parameter."
	}
	if p.str("aud") != e.srv.URL+"/"+tenant+"/oauth2/v2.0/token" {
		return "AADSTS700212", "No matching federated identity record found for presented assertion audience '" + p.str("aud") + "'."
	}
	if exp, ok := p.time("exp"); !ok || time.Now().After(exp) {
		return "AADSTS700024", "Client assertion is not within its valid time range."
	}
	return "", ""
}

package identitytest

import (
	"crypto/rsa"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// AgentOAuth is a fake of the token endpoint Azure DevOps gives a registered
// agent (agent.authorization.authorizationUrl): it verifies the agent's JWT
// client assertion exactly as listener.md §2.3 describes it and issues
// access tokens that Valid can check.
type AgentOAuth struct {
	Knobs
	srv *httptest.Server
	iss issuer

	mu     sync.Mutex
	agents map[string]*rsa.PublicKey
	jtis   map[string]bool
	skew   time.Duration
	last   TokenRequest
	tokens map[string]string // access token → client id
}

// TokenRequest is what the last token request carried (the assertion
// excluded), for assertions on the wire form.
type TokenRequest struct {
	ContentType, Accept, UserAgent string
	Form                           url.Values // without client_assertion
	Header, Claims                 map[string]any
}

// NewAgentOAuth starts the endpoint for the duration of the test.
func NewAgentOAuth(t testing.TB) *AgentOAuth {
	a := &AgentOAuth{iss: newIssuer(t), agents: map[string]*rsa.PublicKey{}, jtis: map[string]bool{}, tokens: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/_apis/oauth2/token", a.serve)
	a.srv = server(t, mux)
	return a
}

// AuthorizationURL is what registration returns as authorizationUrl, and the
// audience the assertion must carry.
func (a *AgentOAuth) AuthorizationURL() string { return a.srv.URL + "/_apis/oauth2/token" }

// Client trusts the fake's certificate and refuses non-local hosts.
func (a *AgentOAuth) Client() *http.Client { return clientFor(a.srv, nil) }

// Register adds an agent with its public key (as TaskAgentPublicKey carries
// it: big-endian exponent and modulus) and returns its client id.
func (a *AgentOAuth) Register(exponent, modulus []byte) string {
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(modulus), E: int(new(big.Int).SetBytes(exponent).Int64())}
	id := randomID()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.agents[id] = pub
	return id
}

// Unregister deletes an agent: its assertions are refused from now on.
func (a *AgentOAuth) Unregister(clientID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.agents, clientID)
}

// SetClockSkew sets how far the server's clock is ahead of the real one
// (negative: behind).
func (a *AgentOAuth) SetClockSkew(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.skew = d
}

// LastRequest returns what the last token request carried.
func (a *AgentOAuth) LastRequest() TokenRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Valid reports whether tok is an unexpired access token this endpoint
// issued, and for which agent.
func (a *AgentOAuth) Valid(tok string) (clientID string, ok bool) {
	a.mu.Lock()
	id, ok := a.tokens[tok]
	a.mu.Unlock()
	if !ok {
		return "", false
	}
	p, err := parseJWT(tok)
	if err != nil || p.verify(&a.iss.key.PublicKey) != nil {
		return "", false
	}
	if exp, ok := p.time("exp"); !ok || time.Now().After(exp) {
		return "", false
	}
	return id, true
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

func (a *AgentOAuth) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if status, fail := a.begin(); fail {
		oauthError(w, status, "server_error", "injected failure")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	f := r.PostForm
	assertion := f.Get("client_assertion")
	p, perr := parseJWT(assertion)
	rec := TokenRequest{ContentType: r.Header.Get("Content-Type"), Accept: r.Header.Get("Accept"), UserAgent: r.UserAgent(), Form: url.Values{}}
	for k, v := range f {
		if k != "client_assertion" {
			rec.Form[k] = v
		}
	}
	if perr == nil {
		rec.Header, rec.Claims = p.header, p.claims
	}
	a.mu.Lock()
	a.last = rec
	now := time.Now().Add(a.skew)
	a.mu.Unlock()

	if f.Get("grant_type") != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		return
	}
	if perr != nil {
		oauthError(w, http.StatusBadRequest, "invalid_client", "the client assertion is not a JWT: "+perr.Error())
		return
	}
	if p.header["typ"] != "JWT" || p.header["alg"] != "RS256" {
		oauthError(w, http.StatusBadRequest, "invalid_client", "the client assertion header must be {\"typ\":\"JWT\",\"alg\":\"RS256\"}")
		return
	}
	clientID := p.str("iss")
	a.mu.Lock()
	pub := a.agents[clientID]
	a.mu.Unlock()
	if pub == nil || p.str("sub") != clientID {
		oauthError(w, http.StatusBadRequest, "invalid_client", "no agent with client id "+clientID)
		return
	}
	if p.verify(pub) != nil {
		oauthError(w, http.StatusBadRequest, "invalid_client", "the client assertion signature is invalid")
		return
	}
	if p.str("aud") != a.AuthorizationURL() {
		oauthError(w, http.StatusBadRequest, "invalid_client", "the client assertion audience "+p.str("aud")+" is invalid")
		return
	}
	nbf, okN := p.time("nbf")
	exp, okE := p.time("exp")
	if !okN || !okE || exp.Sub(nbf) > 10*time.Minute {
		oauthError(w, http.StatusBadRequest, "invalid_client", "the client assertion needs nbf and exp, at most 10 minutes apart")
		return
	}
	stamp := "2006-01-02T15:04:05Z"
	if now.Before(nbf) {
		oauthError(w, http.StatusBadRequest, "invalid_client", "The bearer token is not valid until "+nbf.UTC().Format(stamp)+". Current server time is "+now.UTC().Format(stamp)+".")
		return
	}
	if !now.Before(exp) {
		oauthError(w, http.StatusBadRequest, "invalid_client", "The bearer token expired on "+exp.UTC().Format(stamp)+". Current server time is "+now.UTC().Format(stamp)+".")
		return
	}
	jti := p.str("jti")
	a.mu.Lock()
	replay := jti == "" || a.jtis[jti]
	a.jtis[jti] = true
	a.mu.Unlock()
	if replay {
		oauthError(w, http.StatusBadRequest, "invalid_client", "the client assertion jti is missing or was used before")
		return
	}
	lifetime, _ := a.settings()
	tok := a.iss.accessToken(map[string]any{
		"nameid": clientID,
		"aud":    a.srv.URL,
		"iss":    a.srv.URL,
		"nbf":    time.Now().Unix(),
		"exp":    time.Now().Add(lifetime).Unix(),
	})
	a.record(tok)
	a.mu.Lock()
	a.tokens[tok] = clientID
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(lifetime.Seconds()),
	})
}

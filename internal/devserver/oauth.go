package devserver

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// JWT client assertions (listener.md §2.3): the official agent signs them with
// a 5-minute lifetime.
const assertionLifetime = 5 * time.Minute

const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

type oauthError struct {
	status      int
	code        string
	description string
	refusal     bool // well formed, but refused (revoked or unknown agent): not a client bug
}

// handleToken is the agent OAuth token endpoint: a client-credentials grant
// authenticated by an RS256 JWT client assertion signed with the key the
// agent registered (RFC 7523; listener.md §2.3).
func (s *Server) handleToken(q *request) {
	tok, exp, oe := s.issueAgentToken(q)
	h := q.w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if oe != nil {
		if !oe.refusal {
			s.mu.Lock()
			s.violation(nil, "agent OAuth token request refused: %s: %s", oe.code, oe.description)
			s.mu.Unlock()
		}
		q.ex.AuthFailure = oe.description
		writeJSON(q.w, nil, oe.status, "", map[string]string{"error": oe.code, "error_description": oe.description})
		return
	}
	writeJSON(q.w, nil, http.StatusOK, "", map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(exp.Seconds()),
	})
}

func (s *Server) issueAgentToken(q *request) (string, time.Duration, *oauthError) {
	bad := func(code, format string, args ...any) (string, time.Duration, *oauthError) {
		return "", 0, &oauthError{status: http.StatusBadRequest, code: code, description: fmt.Sprintf(format, args...)}
	}
	unauthorized := func(format string, args ...any) (string, time.Duration, *oauthError) {
		return "", 0, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", description: fmt.Sprintf(format, args...)}
	}
	if q.r.Method != http.MethodPost {
		return "", 0, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", description: "The token endpoint only accepts POST."}
	}
	mt, _, err := mime.ParseMediaType(q.r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return bad("invalid_request", "The token request must be application/x-www-form-urlencoded.")
	}
	form, err := url.ParseQuery(string(q.body))
	if err != nil {
		return bad("invalid_request", "The token request body is not a valid form.")
	}
	if gt := form.Get("grant_type"); gt != grantClientCredentials {
		return bad("unsupported_grant_type", "The grant type %q is not supported; use client_credentials.", gt)
	}
	if at := form.Get("client_assertion_type"); at != assertionTypeJWTBearer {
		return bad("invalid_request", "The client_assertion_type must be %s.", assertionTypeJWTBearer)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return bad("invalid_request", "The client_assertion is missing.")
	}
	t, err := parseJWT(assertion)
	if err != nil {
		return bad("invalid_client", "The client assertion is not a well-formed JWT.")
	}
	if t.alg() != "RS256" {
		return unauthorized("The client assertion must be signed with RS256, not %q.", t.alg())
	}
	iss, sub := t.str("iss"), t.str("sub")
	if iss == "" || sub != iss {
		return unauthorized("The client assertion's iss and sub must both be the agent's client id.")
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var agent *agentState
	for _, a := range s.agentsByID {
		if strings.EqualFold(a.clientID, iss) {
			agent = a
		}
	}
	if agent == nil {
		_, _, oe := unauthorized("No agent is registered with client id %s.", iss)
		oe.refusal = true
		return "", 0, oe
	}
	if agent.revoked {
		_, _, oe := unauthorized("The OAuth client of agent %s has been revoked.", agent.name)
		oe.refusal = true
		return "", 0, oe
	}
	if err := t.verifyRS256(agent.pub); err != nil {
		return unauthorized("The client assertion's signature does not verify with the public key registered for agent %s.", agent.name)
	}
	if !t.audience(s.TokenURL()) {
		return unauthorized("The client assertion's audience must be the authorization URL %s.", s.TokenURL())
	}
	if t.str("jti") == "" {
		return bad("invalid_client", "The client assertion has no jti claim.")
	}
	skew := s.opts.ClockSkew
	serverTime := now.UTC().Format(time.RFC3339)
	exp, ok := t.numeric("exp")
	if !ok {
		return bad("invalid_client", "The client assertion has no valid exp claim.")
	}
	nbf, ok := t.numeric("nbf")
	if !ok {
		return bad("invalid_client", "The client assertion has no valid nbf claim.")
	}
	if !now.Before(exp.Add(skew)) {
		return bad("invalid_client", "The bearer token expired on %s. Current server time is %s.", exp.UTC().Format(time.RFC3339), serverTime)
	}
	if now.Add(skew).Before(nbf) {
		return bad("invalid_client", "The bearer token is not valid until %s. Current server time is %s.", nbf.UTC().Format(time.RFC3339), serverTime)
	}
	start := nbf
	if iat, ok := t.numeric("iat"); ok && iat.Before(start) {
		start = iat
	}
	if exp.Sub(start) > assertionLifetime+skew {
		return bad("invalid_client", "The client assertion is valid for %s; at most %s is allowed.", exp.Sub(start).Round(time.Second), assertionLifetime)
	}
	jti := t.str("jti")
	if _, seen := s.seenJTI[jti]; seen {
		// RFC 7523 lets a server refuse a replayed assertion; the service's
		// behaviour is unknown, so it is recorded rather than refused.
		s.violation(nil, "agent %s reused a client assertion (jti %s)", agent.name, jti)
	}
	s.seenJTI[jti] = exp.Add(skew)
	life := s.opts.AgentTokenLifetime
	tok, err := s.mint(map[string]any{
		"nameid": agent.clientID,
		"scp":    "vso.agentpools_listen",
		"appid":  agent.clientID,
	}, now, life)
	if err != nil {
		return "", 0, &oauthError{status: http.StatusInternalServerError, code: "server_error", description: "The token could not be signed."}
	}
	s.tokens[tokenKey(tok)] = &issuedToken{kind: kindAgent, agentID: agent.id, clientID: agent.clientID, expires: now.Add(life)}
	return tok, life, nil
}

// mint signs an access token in the service's JWT shape. s.mu need not be
// held: the signer is immutable.
func (s *Server) mint(claims map[string]any, now time.Time, life time.Duration) (string, error) {
	c := map[string]any{
		"iss": "app.vstoken.visualstudio.com",
		"aud": "app.vstoken.visualstudio.com|vso:" + s.instanceID,
		"nbf": now.Unix(),
		"exp": now.Add(life).Unix(),
		"jti": newGUID(),
	}
	for k, v := range claims {
		c[k] = v
	}
	return signES256(s.signer, map[string]any{"typ": "JWT", "alg": "ES256", "x5t": "Z29hZ2VudC1kZXZzZXJ2ZXI"}, c)
}

// EntraToken mints an Entra access token for Azure DevOps for the user with
// the given object id, signed by the emulator's own stand-in for Entra, which
// it trusts. Tests use it for the bearer (service principal) registration path.
func (s *Server) EntraToken(objectID string, life time.Duration) (string, error) {
	s.mu.Lock()
	var u *userState
	for _, x := range s.users {
		if x.ObjectID != "" && strings.EqualFold(x.ObjectID, objectID) {
			u = x
		}
	}
	s.mu.Unlock()
	if u == nil {
		return "", fmt.Errorf("mint Entra token: no user with object id %s; add one with AddUser", objectID)
	}
	if life <= 0 {
		life = time.Hour
	}
	s.entraOnce.Do(func() {
		s.entraKey, s.entraErr = rsa.GenerateKey(rand.Reader, 2048)
		if s.entraErr == nil {
			s.TrustEntraKey("goagent-devserver", &s.entraKey.PublicKey)
		}
	})
	if s.entraErr != nil {
		return "", fmt.Errorf("mint Entra token: generate key: %w", s.entraErr)
	}
	now := time.Now()
	resource := strings.TrimSuffix(wire.AzureDevOpsScope, "/.default")
	return signRS256(s.entraKey, map[string]any{"typ": "JWT", "alg": "RS256", "kid": "goagent-devserver"}, map[string]any{
		"aud": resource,
		"iss": "https://sts.windows.net/" + u.TenantID + "/",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(),
		"oid": u.ObjectID, "tid": u.TenantID, "sub": u.ObjectID, "appid": u.ObjectID,
		"ver": "1.0",
	})
}

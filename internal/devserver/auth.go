package devserver

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// User is an identity the emulator knows: a person or service principal that
// registers agents with a PAT (sent as Basic, any user name) or an Entra
// access token (Bearer; matched by the oid and tid claims).
type User struct {
	Name      string
	PAT       string // optional
	ObjectID  string // Entra object id (oid claim); optional
	TenantID  string // Entra tenant (tid claim); default Options.TenantID
	InOrg     bool   // a member of the organization; otherwise 401 TF400813
	PoolAdmin bool   // may register and remove agents; otherwise 403
}

type userState struct {
	User
	identityID string
}

// principalKind is what authenticated a request.
type principalKind int

const (
	kindUser  principalKind = iota + 1 // PAT or Entra token: the registration identity
	kindAgent                          // the agent's own OAuth token
	kindJob                            // a per-job access token
)

func (k principalKind) String() string {
	switch k {
	case kindUser:
		return "registration credential (PAT or Entra token)"
	case kindAgent:
		return "agent OAuth token"
	case kindJob:
		return "job access token"
	}
	return "nothing"
}

// principal is the caller of one request.
type principal struct {
	kind        principalKind
	via         string // "PAT", "Entra", "agent", "job"
	user        *userState
	agentID     int
	token       *issuedToken
	identityID  string
	descriptor  string
	displayName string
	account     string
}

// issuedToken is an access token the emulator minted. Tokens are looked up
// by the SHA-256 of their text, so the map never holds a usable credential.
type issuedToken struct {
	kind     principalKind
	agentID  int
	clientID string
	jobID    string
	planID   string
	expires  time.Time
}

func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// authFailure describes why a request could not be authenticated.
type authFailure struct {
	status   int
	typeKey  string // empty: a plain 401 without a body
	message  string
	reason   string // for the recorder and the violation list
	revoked  bool
	agentID  int
	notFound bool
}

// authenticate resolves the Authorization header. It must be called with s.mu
// held. It never returns secrets in failure messages.
func (s *Server) authenticate(r *http.Request, now time.Time) (*principal, *authFailure) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &authFailure{status: http.StatusUnauthorized, reason: "no Authorization header"}
	}
	scheme, value, _ := strings.Cut(h, " ")
	value = strings.TrimSpace(value)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "Basic credential is not base64"}
		}
		_, pat, ok := strings.Cut(string(raw), ":")
		if !ok || pat == "" {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "Basic credential without a password (PAT)"}
		}
		u := s.userByPAT(pat)
		if u == nil {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "unknown PAT"}
		}
		return s.userPrincipal(u, "PAT")
	case strings.EqualFold(scheme, "Bearer"):
		if value == "" {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "empty Bearer token"}
		}
		if it, ok := s.tokens[tokenKey(value)]; ok {
			return s.issuedPrincipal(it, now)
		}
		u, why := s.entraUser(value, now)
		if u == nil {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: why}
		}
		return s.userPrincipal(u, "Entra")
	}
	return nil, &authFailure{status: http.StatusUnauthorized, reason: fmt.Sprintf("unsupported Authorization scheme %q", scheme)}
}

func (s *Server) userByPAT(pat string) *userState {
	var found *userState
	for _, u := range s.users {
		if u.PAT != "" && subtle.ConstantTimeCompare([]byte(u.PAT), []byte(pat)) == 1 {
			found = u
		}
	}
	return found
}

func (s *Server) userPrincipal(u *userState, via string) (*principal, *authFailure) {
	if !u.InOrg {
		// What the service answers for a valid identity that is not a member:
		// TF400813 in the wrapped-exception shape.
		return nil, &authFailure{
			status: http.StatusUnauthorized, typeKey: exUnauthorized,
			message: fmt.Sprintf("TF400813: The user '%s' is not authorized to access this resource.", u.identityID),
			reason:  fmt.Sprintf("user %q is not a member of the organization", u.Name),
		}
	}
	return &principal{
		kind: kindUser, via: via, user: u,
		identityID: u.identityID, descriptor: "Microsoft.IdentityModel.Claims.ClaimsIdentity;" + u.identityID,
		displayName: u.Name, account: u.Name,
	}, nil
}

func (s *Server) issuedPrincipal(it *issuedToken, now time.Time) (*principal, *authFailure) {
	switch it.kind {
	case kindAgent:
		a := s.agentsByID[it.agentID]
		if a != nil && a.revoked {
			return nil, &authFailure{
				status: http.StatusBadRequest, typeKey: exAgentTokenExpired, revoked: true, agentID: it.agentID,
				message: fmt.Sprintf("The OAuth token of agent %s (id %d) has been revoked.", a.name, a.id),
				reason:  "token of a revoked agent",
			}
		}
		if !now.Before(it.expires) {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "expired agent OAuth token"}
		}
		if a == nil {
			return nil, &authFailure{
				status: http.StatusNotFound, typeKey: exAgentNotFound, notFound: true, agentID: it.agentID,
				message: fmt.Sprintf("Agent with id %d does not exist.", it.agentID),
				reason:  "token of a deleted agent",
			}
		}
		if a.clientID != it.clientID {
			// The key was replaced: tokens minted for the old key's client are void.
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "agent OAuth token of a replaced key"}
		}
		id := fmt.Sprintf("agent-%d", a.id)
		return &principal{
			kind: kindAgent, via: "agent", agentID: a.id, token: it,
			identityID: a.clientID, descriptor: "Microsoft.TeamFoundation.ServiceIdentity;" + id,
			displayName: "Agent " + a.name, account: a.name,
		}, nil
	case kindJob:
		if !now.Before(it.expires) {
			return nil, &authFailure{status: http.StatusUnauthorized, reason: "expired job access token"}
		}
		return &principal{
			kind: kindJob, via: "job", token: it,
			identityID: s.buildServiceID, descriptor: "Microsoft.TeamFoundation.ServiceIdentity;" + s.buildServiceID,
			displayName: "Project Collection Build Service (" + s.org + ")", account: "Build\\" + s.buildServiceID,
		}, nil
	}
	return nil, &authFailure{status: http.StatusUnauthorized, reason: "unknown token"}
}

// entraUser verifies an Entra (Azure AD) access token for Azure DevOps: RS256
// by a trusted key, audience the Azure DevOps resource, a v1 or v2 issuer of
// the token's tenant, time bounds; then finds the user by tid+oid.
func (s *Server) entraUser(tok string, now time.Time) (*userState, string) {
	t, err := parseJWT(tok)
	if err != nil {
		return nil, "bearer token is neither an emulator token nor a JWT"
	}
	kid, _ := t.header["kid"].(string)
	verified := false
	for _, k := range s.entraKeys {
		if kid != "" && k.kid != "" && k.kid != kid {
			continue
		}
		if t.verifyRS256(k.pub) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, "Entra token signature does not verify with a trusted key"
	}
	resource := strings.TrimSuffix(wire.AzureDevOpsScope, "/.default")
	if !t.audience(resource) && !t.audience("api://"+resource) {
		return nil, "Entra token audience is not Azure DevOps (" + resource + ")"
	}
	tid, oid := t.str("tid"), t.str("oid")
	if iss := t.str("iss"); iss != "https://sts.windows.net/"+tid+"/" && iss != "https://login.microsoftonline.com/"+tid+"/v2.0" {
		return nil, "Entra token issuer does not match its tenant"
	}
	exp, ok := t.numeric("exp")
	if !ok || !now.Before(exp.Add(s.opts.ClockSkew)) {
		return nil, "Entra token expired"
	}
	if nbf, ok := t.numeric("nbf"); ok && now.Add(s.opts.ClockSkew).Before(nbf) {
		return nil, "Entra token not yet valid"
	}
	for _, u := range s.users {
		if u.ObjectID != "" && strings.EqualFold(u.ObjectID, oid) && strings.EqualFold(u.TenantID, tid) {
			return u, ""
		}
	}
	return nil, "Entra token of an unknown identity"
}

// entraKey is a public key the emulator trusts for Entra tokens.
type entraKey struct {
	kid string
	pub *rsa.PublicKey
}

// writeUnauthorized writes the service's 401: no body for bad or missing
// credentials (with the challenges the .NET client and tenant discovery read),
// the wrapped exception for TF400813. Without X-TFS-FedAuthRedirect: Suppress
// the service redirects to its sign-in page instead.
func (s *Server) writeAuthFailure(w http.ResponseWriter, r *http.Request, f *authFailure) {
	if f.status == http.StatusUnauthorized && !strings.EqualFold(r.Header.Get("X-TFS-FedAuthRedirect"), "Suppress") {
		w.Header().Set("Location", s.origin+"/_signin?realm="+s.org+"&reply_to="+url.QueryEscape(r.URL.Path))
		w.WriteHeader(http.StatusFound)
		return
	}
	if f.status == http.StatusUnauthorized {
		w.Header().Add("WWW-Authenticate", "Bearer authorization_uri=https://login.microsoftonline.com/"+s.opts.TenantID)
		w.Header().Add("WWW-Authenticate", `Basic realm="`+s.origin+`/"`)
		w.Header().Set("X-VSS-ResourceTenant", s.opts.TenantID)
	}
	if f.typeKey == "" {
		w.Header().Set("X-TFS-ServiceError", escapeHeader("Unauthorized"))
		w.WriteHeader(f.status)
		return
	}
	writeVSSError(w, f.status, f.typeKey, f.message)
}

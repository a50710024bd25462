package checkout

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/wire"
)

// credential is the Authorization header git sends for the repository
// (GitSourceProvider.GetSourceAsync, GenerateAuthHeader).
type credential struct {
	header  string   // "bearer <token>" or "basic <base64>"; "" sends nothing
	masked  string   // the same with the secret replaced by ***
	secrets []string // everything to register with the masker

	scheme   string // the endpoint's authorization scheme
	endpoint string // the endpoint's name
	reason   string // why no header is sent, when header == ""
}

func (c credential) configValue() string { return "AUTHORIZATION: " + c.header }
func (c credential) maskedValue() string { return "AUTHORIZATION: " + c.masked }

// Endpoint authorization schemes and parameters
// (EndpointAuthorizationSchemes, EndpointAuthorizationParameters).
const (
	schemeOAuth      = "OAuth"
	schemePAT        = "PersonalAccessToken"
	schemeToken      = "Token"
	schemeUserPass   = "UsernamePassword"
	schemeWIF        = "WorkloadIdentityFederation"
	paramAccessToken = "AccessToken"
	paramAPIToken    = "ApiToken"
	paramUsername    = "Username"
	paramPassword    = "Password"
)

func param(e *wire.ServiceEndpoint, name string) (string, bool) {
	for k, v := range e.Authorization.Parameters {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// credentialFor derives the header from the repository's endpoint.
func credentialFor(ex *steps.Exec, s *settings) (credential, error) {
	if s.selfManageCreds {
		return credential{reason: "system.selfmanagegitcreds is true, so the agent sends no credentials"}, nil
	}
	ref := s.repo.Endpoint
	if ref == nil || (ref.ID == "" && ref.Name == "") {
		return credential{reason: "the repository resource names no service connection"}, nil
	}
	e := ex.Job.Endpoint(ref)
	if e == nil {
		return credential{}, fmt.Errorf("checkout %s: the repository's service connection (id %q, name %q) is not among the job's endpoints: the job message is incomplete, or the pipeline lacks permission to use the service connection — authorize it for this pipeline", s.alias, ref.ID, ref.Name)
	}
	c := credential{scheme: e.Authorization.Scheme, endpoint: e.Name}
	var user, pass string
	bearer := false
	switch {
	case strings.EqualFold(c.scheme, schemeOAuth):
		user = schemeOAuth
		pass, _ = param(e, paramAccessToken)
		bearer = s.kind == kindAzureRepos
	case strings.EqualFold(c.scheme, schemePAT):
		user = schemePAT
		pass, _ = param(e, paramAccessToken)
	case strings.EqualFold(c.scheme, schemeToken):
		user = "x-access-token"
		var ok bool
		if pass, ok = param(e, paramAccessToken); !ok {
			user = schemeToken
			pass, _ = param(e, paramAPIToken)
		}
	case strings.EqualFold(c.scheme, schemeUserPass):
		user, _ = param(e, paramUsername)
		pass, _ = param(e, paramPassword)
	case strings.EqualFold(c.scheme, schemeWIF):
		return credential{}, fmt.Errorf("checkout %s: service connection %q uses workload identity federation, which goagent's checkout cannot exchange for a git token yet: use a service connection with a personal access token, or check the repository out in a script step", s.alias, e.Name)
	default:
		ex.Console.Warning(fmt.Sprintf("Unsupport endpoint authorization schemes: %s", c.scheme))
		c.reason = fmt.Sprintf("service connection %q uses the authorization scheme %q, which the checkout cannot use", e.Name, c.scheme)
		return c, nil
	}
	if pass != "" {
		c.secrets = append(c.secrets, pass)
	}
	if bearer {
		if pass == "" {
			return credential{}, errors.New("checkout " + s.alias + ": the job's access token (SystemVssConnection AccessToken) is empty: the job message is incomplete")
		}
		c.header = "bearer " + pass
		c.masked = "bearer ***"
	} else {
		b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		c.header = "basic " + b64
		c.masked = "basic ***"
		c.secrets = append(c.secrets, b64)
	}
	c.secrets = append(c.secrets, c.header)
	return c, nil
}

// authError explains a rejected or missing credential.
func authError(s *settings, c credential) error {
	u := redactURL(s.url)
	switch {
	case c.header == "":
		return fmt.Errorf("authentication failed for %s: no credentials were sent (%s) — give the repository a service connection, or configure git credentials on the agent host", u, c.reason)
	case strings.EqualFold(c.scheme, schemeOAuth) && strings.EqualFold(c.endpoint, wire.SystemConnectionName):
		return fmt.Errorf("authentication failed for %s: the job's access token was rejected — make sure the pipeline's build service identity can read this repository (Project settings → Repositories → Security), and that \"Limit job authorization scope\" or \"Protect access to repositories in YAML pipelines\" does not exclude it", u)
	default:
		return fmt.Errorf("authentication failed for %s: the credentials of service connection %q (%s) were rejected — renew the token or password in the service connection and make sure it may read this repository", u, c.endpoint, c.scheme)
	}
}

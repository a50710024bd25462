// Package identity supplies the credentials goagent authenticates with: an
// explicit token (PAT or bearer, from a value or a file), Entra credentials
// through azidentity (workload identity, managed identity, service principal
// with secret or certificate, Azure CLI), and after registration the agent's
// own RSA key credential (listener.md §2). Every credential is an
// azdo.TokenSource; tokens are cached and refreshed before they expire, and
// never appear in a log line or an error.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/goagent-dev/goagent/internal/azdo"
)

// Credential kinds: the values of --auth / AZP_AUTH (besides "auto") and of
// Source.Kind. KindAgentOAuth is the agent's own credential after
// registration; it is never chosen on the command line.
const (
	AuthAuto = "auto"
	KindPAT  = "pat"
	// KindBearerToken is an Entra access token handed in through AZP_TOKEN or
	// AZP_TOKEN_FILE (what start.sh users do with managed-identity tokens).
	KindBearerToken      = "bearer-token"
	KindWorkloadIdentity = "workload-identity"
	KindManagedIdentity  = "managed-identity"
	KindServicePrincipal = "service-principal"
	KindAzureCLI         = "azure-cli"
	KindAgentOAuth       = "agent-oauth"
)

// authAliases accepts the official agent's --auth spellings where they mean
// the same thing (PAT, SP), case-insensitively.
var authAliases = map[string]string{
	"":                  AuthAuto,
	"auto":              AuthAuto,
	"pat":               KindPAT,
	"workload-identity": KindWorkloadIdentity,
	"managed-identity":  KindManagedIdentity,
	"service-principal": KindServicePrincipal,
	"sp":                KindServicePrincipal,
	"azure-cli":         KindAzureCLI,
}

// Environment variables read (through Config.Env).
const (
	envFederatedTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
	envClientID           = "AZURE_CLIENT_ID"
	envTenantID           = "AZURE_TENANT_ID"
	envClientSecret       = "AZURE_CLIENT_SECRET"
	envCertPath           = "AZURE_CLIENT_CERTIFICATE_PATH"
	envCertPassword       = "AZURE_CLIENT_CERTIFICATE_PASSWORD"
	envSendCertChain      = "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN"
	envAuthorityHost      = "AZURE_AUTHORITY_HOST"
	envIdentityEndpoint   = "IDENTITY_ENDPOINT"
	envIdentityHeader     = "IDENTITY_HEADER"
	envMSIEndpoint        = "MSI_ENDPOINT"
)

// Config says how to find the credential.
type Config struct {
	Auth      string // --auth / AZP_AUTH; "" means auto
	Token     string // --token / AZP_TOKEN
	TokenFile string // --token-file / AZP_TOKEN_FILE

	// Env looks up environment variables: os.Getenv in production, a map in
	// tests. Managed identity is the exception: azidentity reads
	// IDENTITY_ENDPOINT, IDENTITY_HEADER and their kin from the process
	// environment itself, so Resolve refuses a managed identity when Env
	// disagrees with the process environment about them.
	Env func(string) string

	// HTTPClient carries every identity request (proxy, extra CAs, test
	// fakes). nil means azidentity's default transport.
	HTTPClient *http.Client

	Logger *slog.Logger

	now   func() time.Time     // tests: a controllable clock
	retry *policy.RetryOptions // tests: azidentity retry delays
}

// Source is the resolved credential.
type Source struct {
	azdo.TokenSource
	Kind     string // one of the Kind constants
	describe func() string
}

// Describe says which credential this is and what it was built from, e.g.
// "managed identity (Container Apps/App Service endpoint http://localhost:42356/msi/token,
// user-assigned client id …)". It never contains a secret.
func (s *Source) Describe() string {
	if s.describe == nil {
		return kindName(s.Kind)
	}
	return s.describe()
}

// ErrUnknownAuth is a --auth / AZP_AUTH value that names no credential kind.
var ErrUnknownAuth = errors.New("unknown credential kind")

// Resolve builds the credential cfg asks for. With auth "auto" it picks, in
// this order, the first that is configured and logs which and why: an
// explicit token (AZP_TOKEN / AZP_TOKEN_FILE) → workload identity → managed
// identity via IDENTITY_ENDPOINT → service principal with secret → service
// principal with certificate → managed identity via IMDS (probed, ≤1 s) →
// Azure CLI. Resolve does not fetch an Entra token; the first Token call does.
func Resolve(ctx context.Context, cfg Config) (*Source, error) {
	r := newResolver(cfg)
	auth, ok := authAliases[strings.ToLower(strings.TrimSpace(cfg.Auth))]
	if !ok {
		return nil, fmt.Errorf("--auth %q: %w; use one of auto, pat, managed-identity, workload-identity, service-principal, azure-cli", cfg.Auth, ErrUnknownAuth)
	}
	if auth != AuthAuto && auth != KindPAT && (cfg.Token != "" || cfg.TokenFile != "") {
		r.log.Warn("ignoring the explicit token because --auth selects another credential", "auth", auth)
	}
	switch auth {
	case AuthAuto:
		return r.auto(ctx)
	case KindPAT:
		if cfg.Token == "" && cfg.TokenFile == "" {
			return nil, errors.New("--auth pat: no token given: set --token / AZP_TOKEN, or --token-file / AZP_TOKEN_FILE")
		}
		return r.explicit(ctx)
	case KindWorkloadIdentity:
		return r.workloadIdentity()
	case KindManagedIdentity:
		return r.managedIdentity()
	case KindServicePrincipal:
		if r.env(envClientSecret) == "" && r.env(envCertPath) == "" {
			return nil, errors.New("--auth service-principal: set AZURE_CLIENT_SECRET, or AZURE_CLIENT_CERTIFICATE_PATH (and AZURE_CLIENT_CERTIFICATE_PASSWORD if the certificate has one), with AZURE_CLIENT_ID and AZURE_TENANT_ID")
		}
		if r.env(envClientSecret) != "" {
			return r.clientSecret()
		}
		return r.clientCertificate()
	case KindAzureCLI:
		return r.azureCLI()
	}
	panic("unreachable: " + auth)
}

type resolver struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
}

func newResolver(cfg Config) *resolver {
	r := &resolver{cfg: cfg, log: cfg.Logger, now: cfg.now}
	if r.cfg.Env == nil {
		r.cfg.Env = os.Getenv
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

func (r *resolver) env(name string) string { return strings.TrimSpace(r.cfg.Env(name)) }

func (r *resolver) auto(ctx context.Context) (*Source, error) {
	chosen := func(kind string, s *Source, err error, why string) (*Source, error) {
		if err != nil {
			return nil, fmt.Errorf("--auth auto chose %s because %s: %w", kindName(kind), why, err)
		}
		r.log.Info("identity selected", "auth", "auto", "kind", s.Kind, "credential", s.Describe(), "because", why)
		return s, nil
	}
	switch {
	case r.cfg.Token != "" || r.cfg.TokenFile != "":
		s, err := r.explicit(ctx)
		return chosen(KindPAT, s, err, "a token was given (AZP_TOKEN / AZP_TOKEN_FILE)")
	case r.env(envFederatedTokenFile) != "":
		s, err := r.workloadIdentity()
		return chosen(KindWorkloadIdentity, s, err, "AZURE_FEDERATED_TOKEN_FILE is set")
	case r.env(envIdentityEndpoint) != "" && r.env(envIdentityHeader) != "":
		if r.env(envClientSecret) != "" || r.env(envCertPath) != "" {
			r.log.Warn("both a managed identity endpoint and a service principal are configured; using the managed identity, with AZURE_CLIENT_ID as its user-assigned client id (set --auth service-principal to use the service principal)")
		}
		s, err := r.managedIdentity()
		return chosen(KindManagedIdentity, s, err, "IDENTITY_ENDPOINT and IDENTITY_HEADER are set")
	case r.env(envMSIEndpoint) != "":
		s, err := r.managedIdentity()
		return chosen(KindManagedIdentity, s, err, "MSI_ENDPOINT is set")
	}
	if (r.env(envIdentityEndpoint) == "") != (r.env(envIdentityHeader) == "") {
		r.log.Warn("only one of IDENTITY_ENDPOINT and IDENTITY_HEADER is set; not using that managed identity endpoint")
	}
	switch {
	case r.env(envClientSecret) != "":
		s, err := r.clientSecret()
		return chosen(KindServicePrincipal, s, err, "AZURE_CLIENT_SECRET is set")
	case r.env(envCertPath) != "":
		s, err := r.clientCertificate()
		return chosen(KindServicePrincipal, s, err, "AZURE_CLIENT_CERTIFICATE_PATH is set")
	}
	// Only now, with nothing configured explicitly, look for IMDS: the probe
	// is the one check that costs time (up to imdsProbeTimeout, once) on a
	// machine outside Azure.
	if r.probeIMDS(ctx) {
		s, err := r.managedIdentity()
		return chosen(KindManagedIdentity, s, err, "the Azure instance metadata service (IMDS) answered")
	}
	if az, ok := r.findAzureCLI(); ok {
		s, err := r.azureCLI()
		return chosen(KindAzureCLI, s, err, "the Azure CLI is installed at "+az)
	}
	return nil, errors.New("no credential configured: set AZP_TOKEN or AZP_TOKEN_FILE (personal access token), " +
		"or run with a managed identity (Container Apps, App Service, an Azure VM), " +
		"or workload identity (AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID), " +
		"or a service principal (AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH), " +
		"or sign in with `az login`")
}

// explicit serves AZP_TOKEN or AZP_TOKEN_FILE. The first read happens now so
// that a missing file or an expired token fails at start-up, not at the
// first request.
func (r *resolver) explicit(ctx context.Context) (*Source, error) {
	if r.cfg.Token != "" && r.cfg.TokenFile != "" {
		return nil, errors.New("both a token (--token / AZP_TOKEN) and a token file (--token-file / AZP_TOKEN_FILE) are set: use one")
	}
	if r.cfg.TokenFile != "" {
		path := r.cfg.TokenFile
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		fs := newFileSource(path, r.log, r.now)
		tok, err := fs.Token(ctx, false)
		if err != nil {
			return nil, err
		}
		r.checkExplicitBearer(tok, "the token file")
		kind := KindPAT
		if strings.EqualFold(tok.Scheme, "Bearer") {
			kind = KindBearerToken
		}
		return &Source{TokenSource: fs, Kind: kind, describe: fs.describe}, nil
	}
	secret := strings.TrimSpace(r.cfg.Token)
	if secret == "" {
		return nil, errors.New("the token (--token / AZP_TOKEN) is empty")
	}
	tok, _, bearer := explicitToken(secret)
	desc := "personal access token from --token / AZP_TOKEN (sent as Basic)"
	if bearer {
		desc = "bearer token (JWT) from --token / AZP_TOKEN"
	}
	s := &staticSource{tok: tok, desc: desc, now: r.now}
	if _, err := s.Token(ctx, false); err != nil {
		return nil, err
	}
	if bearer {
		r.checkExplicitBearer(tok, "AZP_TOKEN")
		r.log.Warn("a bearer token passed in AZP_TOKEN cannot be refreshed; the agent stops working when it expires",
			"expires", expiryAttr(tok.ExpiresOn), "instead", "AZP_TOKEN_FILE kept fresh by its writer, or --auth managed-identity / workload-identity")
	}
	kind := KindPAT
	if bearer {
		kind = KindBearerToken
	}
	return &Source{TokenSource: s, Kind: kind, describe: func() string { return desc }}, nil
}

// checkExplicitBearer warns (only) about a handed-in bearer token meant for
// another resource: the user may know better, and the service decides.
func (r *resolver) checkExplicitBearer(tok azdo.Token, where string) {
	if tok.Scheme != "Bearer" {
		return
	}
	p, _ := decodeJWT(tok.Value)
	if auds := p.audiences(); len(auds) > 0 && !isAzureDevOpsAudience(auds) {
		r.log.Warn("the bearer token in "+where+" is not for Azure DevOps; the service will probably answer 401",
			"audience", strings.Join(auds, ","), "want", adoResource)
	}
}

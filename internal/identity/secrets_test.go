package identity

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

// TestNoSecretsInDiagnostics drives every credential kind through success and
// failure, captures all log output (debug level) and every error, description
// and token summary, and looks for each secret involved.
func TestNoSecretsInDiagnostics(t *testing.T) {
	cleanEnv(t)
	log, logs := captureLogger()
	var out strings.Builder
	var secrets []string
	secret := func(s ...string) { secrets = append(secrets, s...) }
	note := func(parts ...any) {
		for _, p := range parts {
			fmt.Fprintln(&out, p)
		}
	}
	ctx := context.Background()
	// run resolves cfg and asks for a token, a cached one and a forced one,
	// recording everything a user could see.
	run := func(cfg Config) {
		cfg.Logger = log
		if cfg.HTTPClient == nil {
			cfg.HTTPClient = offline()
		}
		if cfg.retry == nil {
			cfg.retry = fastRetry
		}
		src, err := Resolve(ctx, cfg)
		if err != nil {
			note(err)
			return
		}
		note(src.Describe(), src.Kind)
		for _, refresh := range []bool{false, false, true} {
			tok, err := src.Token(ctx, refresh)
			if err != nil {
				note(err)
				continue
			}
			secret(tok.Value)
			note(Describe(tok), Describe(tok).String(), fmt.Sprintf("%+v", Describe(tok)))
		}
		note(ExplainUnauthorized(src.Kind))
	}
	dir := t.TempDir()

	// Explicit tokens.
	const pat = "patSECRETabcdefghijklmnopqrstuvwxyz0123456789abcd"
	secret(pat, base64.StdEncoding.EncodeToString([]byte("VstsAgent:"+pat)))
	run(Config{Token: pat})
	run(Config{TokenFile: writeFile(t, dir, "pat", pat+"\n")})
	expired := identitytest.Sign(identitytest.Key(0), nil, map[string]any{"aud": adoResource, "exp": time.Now().Add(-time.Hour).Unix()})
	secret(expired)
	run(Config{Token: expired})
	run(Config{TokenFile: writeFile(t, dir, "expired", expired)})
	run(Config{Token: pat, TokenFile: "/nonexistent"})

	// Service principal with a secret: right, wrong.
	const clientSecret = "cs~SECRET.value-0123456789abcdef"
	const wrongSecret = "cs~WRONG.value-0123456789abcdef"
	secret(clientSecret, wrongSecret)
	e := identitytest.NewEntra(t)
	e.AddApp(identitytest.App{TenantID: tenantID, ClientID: clientID, Secret: clientSecret})
	spEnv := func(extra map[string]string) func(string) string {
		m := map[string]string{envClientID: clientID, envTenantID: tenantID, envAuthorityHost: e.AuthorityHost()}
		for k, v := range extra {
			m[k] = v
		}
		return envOf(m)
	}
	run(Config{Env: spEnv(map[string]string{envClientSecret: clientSecret}), HTTPClient: e.Client()})
	run(Config{Env: spEnv(map[string]string{envClientSecret: wrongSecret}), HTTPClient: e.Client()})

	// Service principal with a certificate (password set) and a broken one.
	const certPassword = "CERT-pa55word-SECRET"
	secret(certPassword)
	cert, certPath := selfSignedCert(t, t.TempDir())
	e.AddApp(identitytest.App{TenantID: tenantID, ClientID: "c2c2c2c2-0000-4000-8000-c2c2c2c2c2c2", Certificate: cert})
	run(Config{Env: envOf(map[string]string{envClientID: "c2c2c2c2-0000-4000-8000-c2c2c2c2c2c2", envTenantID: tenantID, envAuthorityHost: e.AuthorityHost(),
		envCertPath: certPath, envCertPassword: certPassword}), HTTPClient: e.Client()})
	run(Config{Env: spEnv(map[string]string{envCertPath: writeFile(t, dir, "bad.pfx", "not a pfx"), envCertPassword: certPassword}), HTTPClient: e.Client()})

	// Workload identity: accepted, not federated, expired.
	fed := identitytest.FederatedToken("https://issuer/", "system:serviceaccount:a:b", time.Now().Add(time.Hour))
	otherFed := identitytest.FederatedToken("https://issuer/", "system:serviceaccount:x:y", time.Now().Add(time.Hour))
	oldFed := identitytest.FederatedToken("https://issuer/", "system:serviceaccount:a:b", time.Now().Add(-time.Hour))
	secret(fed, otherFed, oldFed)
	e.AddApp(identitytest.App{TenantID: tenantID, ClientID: "d3d3d3d3-0000-4000-8000-d3d3d3d3d3d3", FederatedToken: fed})
	for i, content := range []string{fed, otherFed, oldFed} {
		file := writeFile(t, dir, fmt.Sprint("fed", i), content)
		run(Config{Env: envOf(map[string]string{envClientID: "d3d3d3d3-0000-4000-8000-d3d3d3d3d3d3", envTenantID: tenantID,
			envAuthorityHost: e.AuthorityHost(), envFederatedTokenFile: file}), HTTPClient: e.Client()})
	}

	// Managed identity: Container Apps (ok, not assigned, stale header), IMDS.
	m := identitytest.NewManagedIdentity(t)
	secret(m.Header())
	m.Setenv(t)
	run(Config{HTTPClient: m.Client()})
	m.SetSystemAssigned(false)
	run(Config{HTTPClient: m.Client()})
	m.SetSystemAssigned(true)
	const staleHeader = "stale-IDENTITY-HEADER-secret"
	secret(staleHeader)
	t.Setenv("IDENTITY_HEADER", staleHeader)
	run(Config{HTTPClient: m.Client()})
	t.Setenv("IDENTITY_ENDPOINT", "")
	t.Setenv("IDENTITY_HEADER", "")
	imds := identitytest.NewIMDS(t)
	run(Config{Auth: "managed-identity", HTTPClient: imds.Client(nil)})

	// Azure CLI that is not signed in.
	fakeAz(t, "", "ERROR: Please run az login to setup account.")
	run(Config{Auth: "azure-cli"})

	// The agent's own credential: accepted, wrong key, clock skew.
	a := identitytest.NewAgentOAuth(t)
	pk := PublicKey(identitytest.Key(0))
	data := CredentialData{ClientID: a.Register(*pk.Exponent, *pk.Modulus), AuthorizationURL: a.AuthorizationURL()}
	for _, key := range []int{0, 1} {
		c, err := NewAgentCredential(identitytest.Key(key), data, AgentCredentialOptions{HTTPClient: a.Client(), Logger: log, retryDelay: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		note(c.Describe())
		for _, refresh := range []bool{false, true} {
			if tok, err := c.Token(ctx, refresh); err != nil {
				note(err)
			} else {
				secret(tok.Value)
				note(Describe(tok))
			}
		}
	}
	a.SetClockSkew(time.Hour)
	c, _ := NewAgentCredential(identitytest.Key(0), data, AgentCredentialOptions{HTTPClient: a.Client(), Logger: log})
	_, err := c.Token(ctx, false)
	note(err)
	a.FailNext(5, http.StatusBadGateway)
	a.SetClockSkew(0)
	c, _ = NewAgentCredential(identitytest.Key(0), data, AgentCredentialOptions{HTTPClient: a.Client(), Logger: log, retryDelay: time.Millisecond})
	_, err = c.Token(ctx, false)
	note(err)
	keyDoc, _ := encodeKey(identitytest.Key(0))
	secret(base64.StdEncoding.EncodeToString(identitytest.Key(0).D.Bytes()), string(keyDoc))

	// Every token any fake issued is a secret too.
	for _, issued := range [][]string{e.Issued(), m.Issued(), imds.Issued(), a.Issued()} {
		secrets = append(secrets, issued...)
	}

	all := out.String() + logs.String()
	if !strings.Contains(all, "AADSTS7000215") || !strings.Contains(all, "No managed identity") || !strings.Contains(all, "Current server time is") ||
		!strings.Contains(all, "AADSTS700213") || !strings.Contains(all, "az login") || !strings.Contains(all, "token file") {
		t.Fatalf("the matrix did not exercise the failures it should have:\n%s", all)
	}
	if len(e.Issued()) == 0 || len(m.Issued()) == 0 || len(imds.Issued()) == 0 || len(a.Issued()) == 0 {
		t.Fatal("some fake issued no token")
	}
	for _, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("secret %d is too short to search for", len(s))
		}
		if strings.Contains(all, s) {
			t.Errorf("a secret (%.6s…) appears in the diagnostics", s)
		}
		// A JWT's signature alone is also a secret fragment worth finding.
		if parts := strings.Split(s, "."); len(parts) == 3 && len(parts[2]) > 16 && strings.Contains(all, parts[2]) {
			t.Errorf("a token signature (%.6s…) appears in the diagnostics", parts[2])
		}
	}
	t.Logf("checked %d secrets against %d bytes of diagnostics", len(secrets), len(all))
}

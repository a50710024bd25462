package identity

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

const (
	tenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clientID = "11111111-2222-4333-8444-555555555555"
	secret   = "s3cr3t~VALUE.of_the-client-secret"
)

type entraEnv struct {
	entra *identitytest.Entra
	env   map[string]string
	cfg   Config
}

// newEntraEnv returns a fake authority with one app and a Config pointing at it.
func newEntraEnv(t *testing.T, app identitytest.App, env map[string]string) *entraEnv {
	t.Helper()
	e := identitytest.NewEntra(t)
	if app.TenantID == "" {
		app.TenantID = tenantID
	}
	if app.ClientID == "" {
		app.ClientID = clientID
	}
	e.AddApp(app)
	full := map[string]string{envClientID: clientID, envTenantID: tenantID, envAuthorityHost: e.AuthorityHost()}
	for k, v := range env {
		full[k] = v
	}
	return &entraEnv{entra: e, env: full, cfg: Config{Env: envOf(full), HTTPClient: e.Client(), retry: fastRetry}}
}

func mustToken(t *testing.T, src *Source, refresh bool) string {
	t.Helper()
	tok, err := src.Token(context.Background(), refresh)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Scheme != "Bearer" {
		t.Fatalf("scheme %s", tok.Scheme)
	}
	return tok.Value
}

func TestServicePrincipalSecret(t *testing.T) {
	fx := newEntraEnv(t, identitytest.App{Secret: secret}, map[string]string{envClientSecret: secret})
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindServicePrincipal || !strings.Contains(src.Describe(), "secret from AZURE_CLIENT_SECRET") || strings.Contains(src.Describe(), secret) {
		t.Fatalf("%s: %s", src.Kind, src.Describe())
	}
	tok := mustToken(t, src, false)
	if issued := fx.entra.Issued(); len(issued) != 1 || issued[0] != tok {
		t.Fatal("the token is not the one Entra issued")
	}
	info := Describe(azdoBearer(tok))
	if info.TenantID != tenantID || info.AppID != clientID || info.Audience != adoResource || info.IdentityType != "app" {
		t.Fatalf("token info %+v", info)
	}
}

func TestEntraErrorsAreExplained(t *testing.T) {
	tests := []struct {
		name  string
		app   identitytest.App
		env   map[string]string
		want  []string
		calls int
	}{
		{"wrong secret", identitytest.App{Secret: "the-real-one"}, map[string]string{envClientSecret: secret},
			[]string{"Entra answered 401 invalid_client", "AADSTS7000215", "Value (not its Secret ID)", clientID}, 1},
		{"unknown app", identitytest.App{ClientID: "99999999-2222-4333-8444-555555555555", Secret: secret}, map[string]string{envClientSecret: secret},
			[]string{"AADSTS700016", "check AZURE_CLIENT_ID and AZURE_TENANT_ID"}, 1},
		{"unknown tenant", identitytest.App{TenantID: "other-tenant", Secret: secret}, map[string]string{envClientSecret: secret},
			[]string{"AADSTS90002", "tenant " + tenantID + " does not exist"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newEntraEnv(t, tt.app, tt.env)
			src, err := Resolve(context.Background(), fx.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(context.Background(), false)
			var ie *Error
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatal("secret in error")
			}
			if fx.entra.Calls() != tt.calls {
				t.Fatalf("%d token calls, want %d", fx.entra.Calls(), tt.calls)
			}
		})
	}
}

func TestServicePrincipalCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, path := selfSignedCert(t, dir)
	fx := newEntraEnv(t, identitytest.App{Certificate: cert}, map[string]string{envCertPath: path, envCertPassword: "unused-pem-password"})
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindServicePrincipal || !strings.Contains(src.Describe(), "certificate "+path+" with thumbprint ") {
		t.Fatalf("%s: %s", src.Kind, src.Describe())
	}
	mustToken(t, src, false)
	if fx.entra.Calls() != 1 {
		t.Fatalf("%d calls", fx.entra.Calls())
	}

	// A certificate Entra does not know: the fix names its thumbprint.
	other, otherPath := selfSignedCert(t, t.TempDir())
	_ = other
	fx2 := newEntraEnv(t, identitytest.App{Certificate: cert}, map[string]string{envCertPath: otherPath})
	src2, err := Resolve(context.Background(), fx2.cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src2.Token(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "AADSTS700027") || !strings.Contains(err.Error(), "upload the certificate (SHA-1 thumbprint ") {
		t.Fatalf("err = %v", err)
	}
}

func TestCertificateFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.pem", "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
	const password = "cert-pa55word!"
	for name, path := range map[string]string{"missing": dir + "/missing.pem", "garbage": bad} {
		t.Run(name, func(t *testing.T) {
			fx := newEntraEnv(t, identitytest.App{}, map[string]string{envCertPath: path, envCertPassword: password})
			_, err := Resolve(context.Background(), fx.cfg)
			if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), password) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestWorkloadIdentity(t *testing.T) {
	dir := t.TempDir()
	fed := identitytest.FederatedToken("https://oidc.prod-aks.azure.com/abc/", "system:serviceaccount:agents:goagent", time.Now().Add(time.Hour))
	file := writeFile(t, dir, "azure-identity-token", fed+"\n")
	fx := newEntraEnv(t, identitytest.App{FederatedToken: fed}, map[string]string{envFederatedTokenFile: file})
	fx.entra.SetLifetime(time.Hour)
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindWorkloadIdentity || !strings.Contains(src.Describe(), file) {
		t.Fatalf("%s: %s", src.Kind, src.Describe())
	}
	first := mustToken(t, src, false)
	if mustToken(t, src, false) != first || fx.entra.Calls() != 1 {
		t.Fatal("second call should come from the cache")
	}

	// Kubernetes rotates the projected token; the federated credential
	// accepts the new one only. A forced refresh must use it at once
	// (azidentity's own WorkloadIdentityCredential would wait 10 minutes).
	rotated := identitytest.FederatedToken("https://oidc.prod-aks.azure.com/abc/", "system:serviceaccount:agents:goagent", time.Now().Add(2*time.Hour))
	fx.entra.AddApp(identitytest.App{TenantID: tenantID, ClientID: clientID, FederatedToken: rotated})
	writeFile(t, dir, "azure-identity-token", rotated)
	second := mustToken(t, src, true)
	if second == first || fx.entra.Calls() != 2 {
		t.Fatalf("forced refresh: new=%v calls=%d", second != first, fx.entra.Calls())
	}
}

func TestWorkloadIdentityErrors(t *testing.T) {
	dir := t.TempDir()
	good := identitytest.FederatedToken("https://issuer.example/", "system:serviceaccount:agents:goagent", time.Now().Add(time.Hour))
	wrongSubject := identitytest.FederatedToken("https://issuer.example/", "system:serviceaccount:default:default", time.Now().Add(time.Hour))
	expired := identitytest.FederatedToken("https://issuer.example/", "system:serviceaccount:agents:goagent", time.Now().Add(-time.Minute))
	tests := []struct {
		name    string
		content *string // nil: no file
		want    []string
		calls   int
	}{
		{"missing file", nil, []string{"read federated token", "azure.workload.identity/use"}, 0},
		{"empty file", ptr("\n"), []string{"is empty"}, 0},
		{"expired token", &expired, []string{"expired at", "projected volume"}, 0},
		{"no matching federated credential", &wrongSubject, []string{"AADSTS700213", `subject "system:serviceaccount:default:default"`, `issuer "https://issuer.example/"`, "api://AzureADTokenExchange"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := dir + "/" + strings.ReplaceAll(tt.name, " ", "-")
			if tt.content != nil {
				writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "-"), *tt.content)
			}
			fx := newEntraEnv(t, identitytest.App{FederatedToken: good}, map[string]string{envFederatedTokenFile: file})
			src, err := Resolve(context.Background(), fx.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = src.Token(context.Background(), false)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, tok := range []string{good, wrongSubject, expired} {
				if strings.Contains(err.Error(), tok) {
					t.Fatal("federated token in error")
				}
			}
			if fx.entra.Calls() != tt.calls {
				t.Fatalf("%d calls, want %d", fx.entra.Calls(), tt.calls)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestEntraForcedRefreshBypassesAzidentityCache(t *testing.T) {
	fx := newEntraEnv(t, identitytest.App{Secret: secret}, map[string]string{envClientSecret: secret})
	fx.entra.SetLifetime(time.Hour) // long enough for MSAL to serve it from its cache
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := mustToken(t, src, false)
	b := mustToken(t, src, true)
	c := mustToken(t, src, false)
	if a == b || b != c || fx.entra.Calls() != 2 {
		t.Fatalf("a==b %v, b==c %v, calls %d", a == b, b == c, fx.entra.Calls())
	}
}

func TestEntraShortLivedTokensRefreshBeforeExpiry(t *testing.T) {
	clk := newClock()
	fx := newEntraEnv(t, identitytest.App{Secret: secret}, map[string]string{envClientSecret: secret})
	fx.cfg.now = clk.Now
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// DefaultLifetime is 4 min, so the margin is 24 s.
	a := mustToken(t, src, false)
	clk.Advance(3 * time.Minute)
	if mustToken(t, src, false) != a || fx.entra.Calls() != 1 {
		t.Fatal("refreshed too early")
	}
	clk.Advance(40 * time.Second)
	if mustToken(t, src, false) == a || fx.entra.Calls() != 2 {
		t.Fatal("not refreshed before expiry")
	}
}

func TestEntraRetriesAndAudience(t *testing.T) {
	fx := newEntraEnv(t, identitytest.App{Secret: secret}, map[string]string{envClientSecret: secret})
	fx.entra.FailNext(2, http.StatusServiceUnavailable)
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustToken(t, src, false)
	if fx.entra.Calls() != 3 {
		t.Fatalf("%d calls, want 3 (two failures retried)", fx.entra.Calls())
	}

	fx.entra.SetAudience("https://management.azure.com/")
	_, err = src.Token(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), `audience "https://management.azure.com/" instead of Azure DevOps`) {
		t.Fatalf("err = %v", err)
	}
}

func TestAuthorityHostMustBeHTTPS(t *testing.T) {
	fx := newEntraEnv(t, identitytest.App{Secret: secret}, map[string]string{envClientSecret: secret, envAuthorityHost: "http://login.example/"})
	if _, err := Resolve(context.Background(), fx.cfg); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("err = %v", err)
	}
}

func TestEntraUnreachable(t *testing.T) {
	fx := newEntraEnv(t, identitytest.App{Secret: secret}, map[string]string{envClientSecret: secret, envAuthorityHost: "https://127.0.0.1:1/"})
	src, err := Resolve(context.Background(), fx.cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "could not reach Entra") {
		t.Fatalf("err = %v", err)
	}
}

package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

// entraKid is the key id the identity fakes sign their access tokens with
// (identitytest.Key(2)); the emulator trusts that key as Entra's.
const entraKid = "fake"

// credential is one way of giving the agent an identity, set up against the
// fakes and the emulator.
type credential struct {
	scheme  string              // how the registration calls authenticate: Basic or Bearer
	kind    string              // what `goagent check` calls it
	tenant  string              // what `goagent check` shows (none for a PAT)
	appID   string              // likewise
	secrets []string            // values that must never be shown
	fake    *identitytest.Knobs // the token issuer, nil when the test mints the token
}

// issued lists the tokens the fake issued.
func (c credential) issued() []string {
	if c.fake == nil {
		return nil
	}
	return c.fake.Issued()
}

// credentialSetup configures agent a to use one kind of credential, with an
// identity the emulator knows as inOrg / poolAdmin.
type credentialSetup func(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential

var credentialKinds = []struct {
	name  string
	setup credentialSetup
}{
	{"PAT", setupPAT},
	{"JWT in AZP_TOKEN", setupJWT(false)},
	{"JWT in AZP_TOKEN_FILE", setupJWT(true)},
	{"workload identity", setupWorkloadIdentity},
	{"service principal with secret", setupClientSecret},
	{"service principal with certificate", setupCertificate(false)},
	{"service principal with password-protected certificate", setupCertificate(true)},
	{"managed identity (Container Apps)", setupManagedIdentity},
}

func setupPAT(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential {
	pat := w.srv.PAT()
	if !inOrg || !poolAdmin {
		pat = randomSecret("pat")
		addUser(t, w, devserver.User{Name: "pat user", PAT: pat, InOrg: inOrg, PoolAdmin: poolAdmin})
	}
	a.set("AZP_TOKEN", pat)
	return credential{scheme: "Basic", kind: "personal access token", secrets: []string{pat}}
}

func addUser(t *testing.T, w *world, u devserver.User) {
	t.Helper()
	if err := w.srv.AddUser(u); err != nil {
		t.Fatal(err)
	}
}

// entraJWT mints an Entra access token for Azure DevOps, signed with the key
// the fakes use.
func entraJWT(tenant, oid, appID string, life time.Duration) string {
	now := time.Now()
	return identitytest.Sign(identitytest.Key(2), map[string]any{"typ": "JWT", "alg": "RS256", "kid": entraKid}, map[string]any{
		"aud": identitytest.AzureDevOpsResource, "iss": "https://sts.windows.net/" + tenant + "/",
		"tid": tenant, "oid": oid, "sub": oid, "appid": appID, "idtyp": "app",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(), "uti": randomSecret(""),
	})
}

func trustFakes(w *world) { w.srv.TrustEntraKey(entraKid, &identitytest.Key(2).PublicKey) }

func setupJWT(inFile bool) credentialSetup {
	return func(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential {
		trustFakes(w)
		oid, app := uuid.NewString(), uuid.NewString()
		addUser(t, w, devserver.User{Name: "jwt user", ObjectID: oid, InOrg: inOrg, PoolAdmin: poolAdmin})
		tok := entraJWT(w.srv.TenantID(), oid, app, time.Hour)
		a.set("AZP_TOKEN", "")
		if inFile {
			a.set("AZP_TOKEN_FILE", writeSecretFile(t, a, "token", tok))
		} else {
			a.set("AZP_TOKEN", tok)
		}
		return credential{scheme: "Bearer", kind: "bearer token", tenant: w.srv.TenantID(), appID: app, secrets: []string{tok}}
	}
}

func writeSecretFile(t *testing.T, a *agent, name, content string) string {
	t.Helper()
	dir := filepath.Join(a.home, "secrets")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// entraApp registers app with a fresh fake Entra and the emulator, and
// points the agent at it.
func entraApp(t *testing.T, w *world, a *agent, app identitytest.App, inOrg, poolAdmin bool) *identitytest.Entra {
	trustFakes(w)
	e := identitytest.NewEntra(t)
	app.TenantID, app.ClientID, app.ObjectID = w.srv.TenantID(), uuid.NewString(), uuid.NewString()
	e.AddApp(app)
	addUser(t, w, devserver.User{Name: "app " + app.ClientID, ObjectID: app.ObjectID, InOrg: inOrg, PoolAdmin: poolAdmin})
	a.set("AZP_TOKEN", "", "AZURE_CLIENT_ID", app.ClientID, "AZURE_TENANT_ID", app.TenantID, "AZURE_AUTHORITY_HOST", e.AuthorityHost())
	return e
}

func setupWorkloadIdentity(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential {
	fed := identitytest.FederatedToken("https://oidc.aks.example/"+uuid.NewString()+"/", "system:serviceaccount:agents:goagent", time.Now().Add(time.Hour))
	e := entraApp(t, w, a, identitytest.App{FederatedToken: fed}, inOrg, poolAdmin)
	a.set("AZURE_FEDERATED_TOKEN_FILE", writeSecretFile(t, a, "azure-identity-token", fed))
	return credential{scheme: "Bearer", kind: "workload identity", tenant: w.srv.TenantID(), appID: a.env["AZURE_CLIENT_ID"], secrets: []string{fed}, fake: &e.Knobs}
}

func setupClientSecret(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential {
	secret := randomSecret("sp~")
	e := entraApp(t, w, a, identitytest.App{Secret: secret}, inOrg, poolAdmin)
	a.set("AZURE_CLIENT_SECRET", secret)
	return credential{scheme: "Bearer", kind: "service principal", tenant: w.srv.TenantID(), appID: a.env["AZURE_CLIENT_ID"], secrets: []string{secret}, fake: &e.Knobs}
}

func setupCertificate(withPassword bool) credentialSetup {
	return func(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential {
		cert, certPEM, keyPEM := testCertificate(t)
		e := entraApp(t, w, a, identitytest.App{Certificate: cert}, inOrg, poolAdmin)
		c := credential{scheme: "Bearer", kind: "service principal", tenant: w.srv.TenantID(), appID: a.env["AZURE_CLIENT_ID"], fake: &e.Knobs}
		if !withPassword {
			a.set("AZURE_CLIENT_CERTIFICATE_PATH", writeSecretFile(t, a, "sp.pem", string(certPEM)+string(keyPEM)))
			return c
		}
		password := randomSecret("pfx-")
		a.set("AZURE_CLIENT_CERTIFICATE_PATH", pkcs12File(t, a, certPEM, keyPEM, password), "AZURE_CLIENT_CERTIFICATE_PASSWORD", password)
		c.secrets = []string{password}
		return c
	}
}

// testCertificate is a self-signed certificate for a fixed test key.
func testCertificate(t *testing.T) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	key := identitytest.Key(0)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "goagent e2e service principal"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
}

// pkcs12File packs the certificate and key into a password-protected .pfx
// with the openssl command (the Makefile's deps install it), using the
// SHA-1/3DES algorithms azidentity can read.
func pkcs12File(t *testing.T, a *agent, certPEM, keyPEM []byte, password string) string {
	t.Helper()
	dir := t.TempDir()
	cf, kf, out := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem"), filepath.Join(a.home, "secrets", "sp.pfx")
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", "pkcs12", "-export", "-in", cf, "-inkey", kf, "-out", out,
		"-passout", "env:PFX_PASSWORD", "-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1")
	cmd.Env = append(os.Environ(), "PFX_PASSWORD="+password)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs12 (needed for the password-protected certificate; `make deps` installs openssl): %v\n%s", err, b)
	}
	return out
}

func setupManagedIdentity(t *testing.T, w *world, a *agent, inOrg, poolAdmin bool) credential {
	trustFakes(w)
	mi := identitytest.NewManagedIdentity(t)
	claims := jwtClaims(t, fetchMIToken(t, mi))
	oid, _ := claims["oid"].(string)
	appID, _ := claims["appid"].(string)
	addUser(t, w, devserver.User{Name: "managed identity", ObjectID: oid, TenantID: mi.TenantID(), InOrg: inOrg, PoolAdmin: poolAdmin})
	a.set("AZP_TOKEN", "", "IDENTITY_ENDPOINT", mi.Endpoint(), "IDENTITY_HEADER", mi.Header())
	return credential{scheme: "Bearer", kind: "managed identity", tenant: mi.TenantID(), appID: appID, secrets: []string{mi.Header()}, fake: &mi.Knobs}
}

// fetchMIToken asks the fake endpoint for a token, to learn the identity's
// object id the way Azure would show it.
func fetchMIToken(t *testing.T, mi *identitytest.ManagedIdentity) string {
	t.Helper()
	req, _ := http.NewRequest("GET", mi.Endpoint()+"?api-version=2019-08-01&resource="+url.QueryEscape(identitytest.AzureDevOpsResource), nil)
	req.Header.Set("X-IDENTITY-HEADER", mi.Header())
	resp, err := mi.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		t.Fatalf("managed identity fake: %v", err)
	}
	return out.AccessToken
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// authOf is the scheme and credential hash the emulator recorded for the
// first exchange matching method and resource.
func (w *world) authOf(t *testing.T, method, resource string) string {
	t.Helper()
	ex := w.exchanges(method, resource)
	if len(ex) == 0 {
		t.Fatalf("no %s %s recorded", method, resource)
	}
	return ex[0].RequestHeader.Get("Authorization")
}

// recordedAuth is how the emulator's recorder shows a credential.
func recordedAuth(scheme, credential string) string {
	sum := sha256.Sum256([]byte(credential))
	return scheme + " sha256:" + hex.EncodeToString(sum[:4])
}

// TestCredentialKinds: every credential kind registers through the binary,
// runs a job on the agent's own credential, unregisters, and `goagent check`
// describes it without showing it.
func TestCredentialKinds(t *testing.T) {
	t.Parallel()
	for _, ck := range credentialKinds {
		t.Run(ck.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("identity")
			c := ck.setup(t, w, a, true, true)

			chk := a.run("check")
			if chk.code != 0 {
				t.Fatalf("check exited %d; output:\n%s", chk.code, chk.output())
			}
			out := chk.stdout.String()
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if last := lines[len(lines)-1]; last != "ready" {
				t.Errorf("check did not end with ready:\n%s", out)
			}
			want := []string{c.kind}
			if c.tenant != "" {
				want = append(want, "tenant "+c.tenant, "app id "+c.appID, "audience "+identitytest.AzureDevOpsResource, "expires ")
			}
			for _, s := range want {
				if !strings.Contains(strings.ToLower(out), strings.ToLower(s)) {
					t.Errorf("check does not show %q:\n%s", s, out)
				}
			}

			j := w.queue(t, scriptJob("as "+ck.name, "echo hello"))
			p := a.start("run", "--once")
			expectResult(t, j, "succeeded", p)
			p.expectExit(t, 0)
			if _, ok := w.agentByName("identity"); ok {
				t.Error("the agent stayed registered")
			}
			reg := w.authOf(t, "POST", "agents")
			if !strings.HasPrefix(reg, c.scheme+" ") {
				t.Errorf("registration authenticated with %q, want %s", reg, c.scheme)
			}
			if s := w.authOf(t, "POST", "sessions"); s == reg || !strings.HasPrefix(s, "Bearer ") {
				t.Errorf("the session was opened with %q, not with the agent's own credential", s)
			}
			if d := w.authOf(t, "DELETE", "agents"); !strings.HasPrefix(d, c.scheme+" ") {
				t.Errorf("the agent was removed with %q, want the registration credential (%s)", d, c.scheme)
			}
		})
	}
}

// TestTokenFileRotation: a token file rewritten while the agent runs is read
// again; the agent removes itself with the new token.
func TestTokenFileRotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	trustFakes(w)
	oid := uuid.NewString()
	addUser(t, w, devserver.User{Name: "rotating", ObjectID: oid, InOrg: true, PoolAdmin: true})
	a := w.newAgent("rotating").set("AZP_TOKEN", "")
	first := entraJWT(w.srv.TenantID(), oid, oid, time.Hour)
	path := writeSecretFile(t, a, "token", first)
	a.set("AZP_TOKEN_FILE", path)

	g := newGate(t)
	j := w.queue(t, scriptJob("rotation", g.wait()))
	p := a.start("run", "--once")
	eventually(t, "the job to start", func() bool { return j.State() == devserver.JobRunning })
	second := entraJWT(w.srv.TenantID(), oid, oid, 2*time.Hour)
	writeSecretFile(t, a, "token", second)
	g.open(t)
	expectResult(t, j, "succeeded", p)
	p.expectExit(t, 0)

	if got := w.authOf(t, "POST", "agents"); got != recordedAuth("Bearer", first) {
		t.Errorf("registered with %q, want the first token", got)
	}
	if got := w.authOf(t, "DELETE", "agents"); got != recordedAuth("Bearer", second) {
		t.Errorf("removed with %q, want the rotated token %q", got, recordedAuth("Bearer", second))
	}
	if !strings.Contains(p.output(), "token file changed") {
		t.Errorf("the agent did not log the rotation:\n%s", p.output())
	}
}

// TestIdentityRefused: the two mistakes every Entra setup makes first are
// explained with the credential tried and the fix.
func TestIdentityRefused(t *testing.T) {
	t.Parallel()
	for _, ck := range credentialKinds {
		for _, tc := range []struct {
			name             string
			inOrg, poolAdmin bool
			want             []string
		}{
			{"not in the organization", false, false, []string{"401", "member of the organization"}},
			{"no pool Administrator", true, false, []string{"403", "Administrator role", "Agent pools"}},
		} {
			t.Run(ck.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				w := newWorld(t, devserver.Options{})
				a := w.newAgent("refused")
				c := ck.setup(t, w, a, tc.inOrg, tc.poolAdmin)
				p := a.run("register")
				if p.code != 1 {
					t.Fatalf("register exited %d, want 1; output:\n%s", p.code, p.output())
				}
				for _, s := range append([]string{c.kind}, tc.want...) {
					if !strings.Contains(strings.ToLower(p.output()), strings.ToLower(s)) {
						t.Errorf("the error does not say %q:\n%s", s, p.output())
					}
				}
				if n := len(w.srv.Agents("")); n != 0 {
					t.Errorf("%d agents registered", n)
				}
				if tc.inOrg {
					return
				}
				// check finds the same cause before anyone tries to register.
				chk := a.run("check")
				if chk.code != 1 {
					t.Errorf("check exited %d, want 1:\n%s", chk.code, chk.output())
				}
				for _, s := range append([]string{"not ready"}, tc.want...) {
					if !strings.Contains(strings.ToLower(chk.stdout.String()), strings.ToLower(s)) {
						t.Errorf("check does not say %q:\n%s", s, chk.output())
					}
				}
			})
		}
	}
}

// TestLongJobOutlivesTokens: the listener runs on the agent's own credential
// after registration, so neither the registration identity's short-lived
// Entra token nor the expiry of the agent's own access token limits a job;
// at the end the agent removes itself with a fresh Entra token.
func TestLongJobOutlivesTokens(t *testing.T) {
	t.Parallel()
	w := newWorld(t, devserver.Options{})
	a := w.newAgent("marathon").set("GOAGENT_RENEW_PERIOD", "100ms")
	c := setupClientSecret(t, w, a, true, true)
	c.fake.SetLifetime(3 * time.Second)
	g := newGate(t)
	j := w.queue(t, scriptJob("long", g.wait()))
	p := a.start("run", "--once")
	eventually(t, "the job to start", func() bool { return j.State() == devserver.JobRunning })
	first := c.issued()
	if len(first) == 0 {
		t.Fatal("no Entra token was issued")
	}
	exp := time.Unix(int64(jwtClaims(t, first[len(first)-1])["exp"].(float64)), 0)
	tokenCalls := len(w.exchanges("", "token"))
	w.srv.ExpireAgentTokens()
	r0 := j.Renewals()
	eventually(t, "the Entra tokens to expire while renewals go on", func() bool {
		return time.Now().After(exp.Add(time.Second)) && j.Renewals() >= r0+3
	})
	if n := len(w.exchanges("", "token")); n <= tokenCalls {
		t.Errorf("the agent did not fetch a new access token after its old one expired (%d token requests, %d before)", n, tokenCalls)
	}
	g.open(t)
	expectResult(t, j, "succeeded", p)
	p.expectExit(t, 0)
	if _, ok := w.agentByName("marathon"); ok {
		t.Fatal("the agent could not remove itself after its first Entra tokens expired")
	}
	entra := map[string]bool{}
	for _, tok := range first {
		entra[recordedAuth("Bearer", tok)] = true
	}
	if entra[w.authOf(t, "DELETE", "agents")] {
		t.Error("the agent was removed with an expired Entra token, not a fresh one")
	}
	for _, res := range []string{"sessions", "messages", "jobrequests"} {
		for _, e := range w.exchanges("", res) {
			if auth := e.RequestHeader.Get("Authorization"); entra[auth] || auth == "" {
				t.Errorf("%s %s carried %q, not the agent's own token", e.Method, e.Path, auth)
			}
		}
	}
}

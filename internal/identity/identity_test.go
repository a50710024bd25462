package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

func TestSelection(t *testing.T) {
	dir := t.TempDir()
	_, certPath := selfSignedCert(t, dir)
	fedFile := writeFile(t, dir, "fed", identitytest.FederatedToken("https://issuer/", "sub", time.Now().Add(time.Hour)))
	tokenFile := writeFile(t, dir, "pat", "file-pat")
	ids := map[string]string{envClientID: clientID, envTenantID: tenantID}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range ids {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	wi := map[string]string{envFederatedTokenFile: fedFile}
	sec := map[string]string{envClientSecret: secret}
	cert := map[string]string{envCertPath: certPath}
	all := with(map[string]string{envFederatedTokenFile: fedFile, envClientSecret: secret, envCertPath: certPath})

	tests := []struct {
		name      string
		cfg       Config
		env       map[string]string
		kind      string
		describes string // substring of Describe
		err       string // substring of the error
	}{
		{name: "explicit token wins over everything", cfg: Config{Token: "pat"}, env: all, kind: KindPAT, describes: "personal access token"},
		{name: "token file", cfg: Config{TokenFile: tokenFile}, env: all, kind: KindPAT, describes: tokenFile},
		{name: "workload identity before service principals", env: all, kind: KindWorkloadIdentity, describes: fedFile},
		{name: "secret before certificate", env: with(map[string]string{envClientSecret: secret, envCertPath: certPath}), kind: KindServicePrincipal, describes: "secret from AZURE_CLIENT_SECRET"},
		{name: "certificate", env: with(cert), kind: KindServicePrincipal, describes: "certificate " + certPath},
		{name: "auto with incomplete workload identity", env: map[string]string{envFederatedTokenFile: fedFile, envTenantID: tenantID},
			err: "--auth auto chose workload identity because AZURE_FEDERATED_TOKEN_FILE is set: workload identity needs AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID; not set: AZURE_CLIENT_ID"},
		{name: "auto with secret but no tenant", env: map[string]string{envClientSecret: secret, envClientID: clientID}, err: "not set: AZURE_TENANT_ID"},
		{name: "invalid tenant", env: map[string]string{envClientSecret: secret, envClientID: clientID, envTenantID: "not a tenant!"}, err: "is not a tenant id"},
		{name: "nothing configured", env: map[string]string{}, err: "no credential configured"},
		{name: "explicit workload identity", cfg: Config{Auth: "Workload-Identity"}, env: with(wi), kind: KindWorkloadIdentity},
		{name: "explicit workload identity unconfigured", cfg: Config{Auth: "workload-identity"}, env: ids, err: "not set: AZURE_FEDERATED_TOKEN_FILE"},
		{name: "explicit service principal (official alias SP)", cfg: Config{Auth: "SP"}, env: all, kind: KindServicePrincipal, describes: "secret"},
		{name: "explicit service principal unconfigured", cfg: Config{Auth: "service-principal"}, env: ids, err: "set AZURE_CLIENT_SECRET"},
		{name: "explicit pat without token", cfg: Config{Auth: "pat"}, env: all, err: "no token given"},
		{name: "explicit pat ignores identities", cfg: Config{Auth: "PAT", Token: "pat"}, env: all, kind: KindPAT},
		{name: "explicit kind ignores token", cfg: Config{Auth: "service-principal", Token: "pat"}, env: with(sec), kind: KindServicePrincipal},
		{name: "unknown kind", cfg: Config{Auth: "kerberos"}, env: all, err: `unknown credential kind; use one of auto, pat`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Env = envOf(tt.env)
			cfg.HTTPClient = offline()
			src, err := Resolve(context.Background(), cfg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if src.Kind != tt.kind || !strings.Contains(src.Describe(), tt.describes) {
				t.Fatalf("%s: %s", src.Kind, src.Describe())
			}
		})
	}
}

func TestAutoLogsTheChoice(t *testing.T) {
	log, buf := captureLogger()
	env := map[string]string{envClientID: clientID, envTenantID: tenantID, envClientSecret: secret}
	if _, err := Resolve(context.Background(), Config{Env: envOf(env), HTTPClient: offline(), Logger: log}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "identity selected") || !strings.Contains(out, "kind=service-principal") || !strings.Contains(out, "AZURE_CLIENT_SECRET is set") {
		t.Fatalf("log: %s", out)
	}
}

func TestExplanations(t *testing.T) {
	for _, kind := range []string{KindPAT, KindManagedIdentity, KindWorkloadIdentity, KindServicePrincipal, KindAzureCLI, KindAgentOAuth, "other"} {
		if ExplainUnauthorized(kind) == "" || ExplainForbidden(kind) == "" {
			t.Errorf("%s: empty explanation", kind)
		}
	}
	if !strings.Contains(ExplainUnauthorized(KindManagedIdentity), "Organization settings → Users") {
		t.Error("identity not added to the organization is not explained")
	}
	if !strings.Contains(ExplainForbidden(KindWorkloadIdentity), "Administrator role") {
		t.Error("pool role not explained")
	}
	if !strings.Contains(ExplainUnauthorized(KindPAT), "Agent Pools (Read & manage)") {
		t.Error("PAT scope not explained")
	}
}

func TestParseAnswer(t *testing.T) {
	tests := []struct {
		body string
		want entraAnswer
	}{
		{`{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x\r\nTimestamp: y","trace_id":"t"}`,
			entraAnswer{Status: 401, Code: "invalid_client", Description: "AADSTS7000215: Invalid client secret provided.", AADSTS: "7000215", TraceID: "t"}},
		{`{"statusCode":400,"message":"No managed identity found for specified ClientId/ResourceId/PrincipalId.","correlationId":"c"}`,
			entraAnswer{Status: 401, Description: "No managed identity found for specified ClientId/ResourceId/PrincipalId."}},
		{`{"error":{"code":"BadRequest","message":"nope"}}`, entraAnswer{Status: 401, Code: "BadRequest", Description: "nope"}},
		{`plain text`, entraAnswer{Status: 401, Description: "plain text"}},
	}
	for _, tt := range tests {
		if got := parseAnswer(401, []byte(tt.body)); got != tt.want {
			t.Errorf("parseAnswer(%s) = %+v, want %+v", tt.body, got, tt.want)
		}
	}
}

func FuzzParseAnswer(f *testing.F) {
	f.Add([]byte(`{"error":"invalid_client","error_description":"AADSTS7000215: x"}`))
	f.Add([]byte(`{"error":{"code":1}}`))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, body []byte) {
		a := parseAnswer(400, body)
		if len(a.Description) > 410 || strings.Contains(a.Description, "\n") {
			t.Fatalf("description not summarized: %q", a.Description)
		}
		_ = a.String()
	})
}

func TestDescribeToken(t *testing.T) {
	pat, _, _ := explicitToken("some-pat")
	if s := Describe(pat).String(); s != "personal access token (Basic)" {
		t.Fatal(s)
	}
	exp := time.Unix(1900000000, 0)
	jwt := identitytest.Sign(identitytest.Key(0), nil, map[string]any{
		"aud": adoResource, "tid": tenantID, "oid": "o-1", "azp": "app-2", "idtyp": "app", "exp": exp.Unix(), "iss": "https://login.microsoftonline.com/" + tenantID + "/v2.0",
	})
	info := Describe(azdoBearer(jwt))
	want := TokenInfo{Kind: "JWT bearer token", TenantID: tenantID, ObjectID: "o-1", AppID: "app-2", Audience: adoResource, IdentityType: "app",
		Issuer: "https://login.microsoftonline.com/" + tenantID + "/v2.0", ExpiresOn: exp}
	if info != want {
		t.Fatalf("%+v\nwant %+v", info, want)
	}
	s := info.String()
	if strings.Contains(s, jwt) || !strings.Contains(s, "tenant "+tenantID) || !strings.Contains(s, "expires 2030-") {
		t.Fatal(s)
	}
	if got := Describe(azdoBearer("opaque")).Kind; got != "opaque bearer token" {
		t.Fatal(got)
	}
}

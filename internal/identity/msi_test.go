package identity

// Managed identity tests set process environment variables (azidentity reads
// IDENTITY_ENDPOINT and IDENTITY_HEADER there), so none of them is parallel.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

// cleanEnv empties every variable the resolver or azidentity would act on.
func cleanEnv(t *testing.T) {
	for _, name := range append(msalEnv, envFederatedTokenFile, envClientID, envTenantID, envClientSecret,
		envCertPath, envCertPassword, envAuthorityHost, "AZURE_REGIONAL_AUTHORITY_NAME") {
		t.Setenv(name, "")
	}
}

func TestManagedIdentityContainerApps(t *testing.T) {
	cleanEnv(t)
	m := identitytest.NewManagedIdentity(t)
	m.Setenv(t)
	log, buf := captureLogger()
	src, err := Resolve(context.Background(), Config{HTTPClient: m.Client(), Logger: log, retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindManagedIdentity || src.Describe() != "managed identity (Container Apps/App Service endpoint "+m.Endpoint()+", system-assigned)" {
		t.Fatalf("%s: %s", src.Kind, src.Describe())
	}
	if !strings.Contains(buf.String(), "IDENTITY_ENDPOINT and IDENTITY_HEADER are set") {
		t.Fatalf("selection not logged: %s", buf.String())
	}
	tok := mustToken(t, src, false)
	if info := Describe(azdoBearer(tok)); info.AppID != identitytest.SystemAssignedClientID || info.Audience != adoResource {
		t.Fatalf("token info %+v", info)
	}
	if m.Calls() != 1 {
		t.Fatalf("%d calls", m.Calls())
	}
}

func TestManagedIdentityUserAssignedAndForcedRefresh(t *testing.T) {
	cleanEnv(t)
	m := identitytest.NewManagedIdentity(t)
	m.Setenv(t)
	// A long lifetime puts the token in MSAL's process-wide cache; the client
	// id is unique to this test so no other test's token is found there.
	const uami = "7e7e7e7e-1111-4222-8333-7e7e7e7e7e7e"
	m.AssignUser(uami)
	m.SetLifetime(time.Hour)
	t.Setenv(envClientID, uami)
	src, err := Resolve(context.Background(), Config{Auth: "managed-identity", HTTPClient: m.Client(), retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.Describe(), "user-assigned client id "+uami) {
		t.Fatal(src.Describe())
	}
	a := mustToken(t, src, false)
	if Describe(azdoBearer(a)).AppID != uami {
		t.Fatal("not the user-assigned identity's token")
	}
	if mustToken(t, src, false) != a || m.Calls() != 1 {
		t.Fatal("second call should be cached")
	}
	b := mustToken(t, src, true)
	if b == a || m.Calls() != 2 {
		t.Fatalf("forced refresh: new=%v calls=%d", b != a, m.Calls())
	}
}

func TestManagedIdentityFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(m *identitytest.ManagedIdentity, t *testing.T)
		want   []string
		absent []string
	}{
		{"system identity not assigned", func(m *identitytest.ManagedIdentity, t *testing.T) { m.SetSystemAssigned(false) },
			[]string{"endpoint answered 400", "No managed identity found", "assign a system- or user-assigned identity to the container app", "set AZURE_CLIENT_ID"}, nil},
		{"user identity not assigned", func(m *identitytest.ManagedIdentity, t *testing.T) {
			t.Setenv(envClientID, "0d0d0d0d-0000-4000-8000-0d0d0d0d0d0d")
		},
			[]string{"no identity with client id 0d0d0d0d-0000-4000-8000-0d0d0d0d0d0d is assigned", "unset AZURE_CLIENT_ID"}, nil},
		{"wrong identity header", func(m *identitytest.ManagedIdentity, t *testing.T) { t.Setenv("IDENTITY_HEADER", "stale-header-value") },
			[]string{"answered 403", "rejected IDENTITY_HEADER"}, []string{"stale-header-value"}},
		{"wrong audience", func(m *identitytest.ManagedIdentity, t *testing.T) { m.SetAudience("https://vault.azure.net") },
			[]string{`audience "https://vault.azure.net" instead of Azure DevOps`, "IDENTITY_ENDPOINT"}, nil},
		{"endpoint keeps failing", func(m *identitytest.ManagedIdentity, t *testing.T) { m.FailNext(100, http.StatusInternalServerError) },
			[]string{"answered 500", "is failing"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			m := identitytest.NewManagedIdentity(t)
			m.Setenv(t)
			tt.setup(m, t)
			src, err := Resolve(context.Background(), Config{HTTPClient: m.Client(), retry: fastRetry})
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
			for _, a := range append(tt.absent, m.Header()) {
				if strings.Contains(err.Error(), a) {
					t.Errorf("error contains %q", a)
				}
			}
		})
	}
}

func TestManagedIdentityRecoversFromTransientFailures(t *testing.T) {
	cleanEnv(t)
	m := identitytest.NewManagedIdentity(t)
	m.Setenv(t)
	m.FailNext(2, http.StatusServiceUnavailable)
	src, err := Resolve(context.Background(), Config{HTTPClient: m.Client(), retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	mustToken(t, src, false)
	if m.Calls() != 3 {
		t.Fatalf("%d calls, want 3", m.Calls())
	}
}

func TestManagedIdentityEnvMustMatchProcess(t *testing.T) {
	cleanEnv(t)
	m := identitytest.NewManagedIdentity(t)
	env := map[string]string{"IDENTITY_ENDPOINT": m.Endpoint(), "IDENTITY_HEADER": m.Header()}
	_, err := Resolve(context.Background(), Config{Env: envOf(env), HTTPClient: m.Client()})
	if err == nil || !strings.Contains(err.Error(), "process environment") || strings.Contains(err.Error(), m.Header()) {
		t.Fatalf("err = %v", err)
	}
}

func TestManagedIdentityIMDS(t *testing.T) {
	cleanEnv(t)
	imds := identitytest.NewIMDS(t)
	src, err := Resolve(context.Background(), Config{Auth: "managed-identity", HTTPClient: imds.Client(nil), retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if src.Describe() != "managed identity (IMDS, system-assigned)" {
		t.Fatal(src.Describe())
	}
	tok := mustToken(t, src, false)
	if Describe(azdoBearer(tok)).Audience != adoResource || imds.Calls() != 1 || imds.Probes() != 0 {
		t.Fatalf("calls %d probes %d", imds.Calls(), imds.Probes())
	}
	imds.SetSystemAssigned(false)
	_, err = src.Token(context.Background(), true)
	if err == nil || !strings.Contains(err.Error(), "IMDS answered 400") || !strings.Contains(err.Error(), "Identity not found") ||
		!strings.Contains(err.Error(), "VM scale set") {
		t.Fatalf("err = %v", err)
	}
}

func TestManagedIdentityIMDSUserAssignedNotAssigned(t *testing.T) {
	cleanEnv(t)
	t.Setenv(envClientID, "0e0e0e0e-0000-4000-8000-0e0e0e0e0e0e")
	imds := identitytest.NewIMDS(t)
	src, err := Resolve(context.Background(), Config{Auth: "managed-identity", HTTPClient: imds.Client(nil), retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "no identity with client id 0e0e0e0e-0000-4000-8000-0e0e0e0e0e0e") {
		t.Fatalf("err = %v", err)
	}
}

func TestManagedIdentityIMDSUnreachable(t *testing.T) {
	cleanEnv(t)
	src, err := Resolve(context.Background(), Config{Auth: "managed-identity", HTTPClient: &http.Client{Transport: identitytest.Transport(nil, nil)},
		retry: &fastRetryNone})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "not an Azure VM") {
		t.Fatalf("err = %v", err)
	}
}

func TestAutoProbesIMDS(t *testing.T) {
	cleanEnv(t)
	t.Setenv("PATH", "")
	imds := identitytest.NewIMDS(t)
	log, buf := captureLogger()
	src, err := Resolve(context.Background(), Config{HTTPClient: imds.Client(nil), Logger: log, retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindManagedIdentity || imds.Probes() != 1 || !strings.Contains(buf.String(), "IMDS") {
		t.Fatalf("kind %s probes %d log %s", src.Kind, imds.Probes(), buf.String())
	}
	mustToken(t, src, false)

	// Without IMDS (and without az) auto finds nothing and says what to set.
	_, err = Resolve(context.Background(), Config{HTTPClient: offline()})
	if err == nil || !strings.Contains(err.Error(), "no credential configured") {
		t.Fatalf("err = %v", err)
	}
}

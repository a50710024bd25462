package identity

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

// fakeAz installs an `az` that records its arguments and prints out, or
// fails with stderr, using shell built-ins only (PATH holds nothing else).
func fakeAz(t *testing.T, out, stderr string) (argsFile string) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	script := fmt.Sprintf("#!/bin/sh\necho \"$@\" > '%s'\n", argsFile)
	if stderr != "" {
		script += fmt.Sprintf("printf '%%s\\n' '%s' >&2\nexit 1\n", stderr)
	} else {
		script += fmt.Sprintf("printf '%%s' '%s'\n", out)
	}
	if err := os.WriteFile(filepath.Join(dir, "az"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	return argsFile
}

func TestAzureCLI(t *testing.T) {
	cleanEnv(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	jwt := identitytest.Sign(identitytest.Key(0), nil, map[string]any{"aud": adoResource, "tid": tenantID, "upn": "dev@contoso.com", "idtyp": "user", "exp": exp.Unix()})
	args := fakeAz(t, fmt.Sprintf(`{"accessToken":"%s","expires_on":%d,"tenant":"%s","tokenType":"Bearer"}`, jwt, exp.Unix(), tenantID), "")
	t.Setenv(envTenantID, tenantID)
	src, err := Resolve(context.Background(), Config{HTTPClient: offline()})
	if err != nil {
		t.Fatal(err)
	}
	if src.Kind != KindAzureCLI || !strings.Contains(src.Describe(), "Azure CLI (") || !strings.Contains(src.Describe(), "tenant "+tenantID) {
		t.Fatalf("%s: %s", src.Kind, src.Describe())
	}
	tok, err := src.Token(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Value != jwt || !tok.ExpiresOn.Equal(exp) {
		t.Fatalf("token expires %v", tok.ExpiresOn)
	}
	got, _ := os.ReadFile(args)
	if want := "account get-access-token -o json --resource " + adoResource + " --tenant " + tenantID; strings.TrimSpace(string(got)) != want {
		t.Fatalf("az %s, want az %s", got, want)
	}
	if info := Describe(tok); info.UPN != "dev@contoso.com" || info.IdentityType != "user" {
		t.Fatalf("info %+v", info)
	}
}

func TestAzureCLINotLoggedIn(t *testing.T) {
	cleanEnv(t)
	fakeAz(t, "", "ERROR: Please run az login to setup account.")
	src, err := Resolve(context.Background(), Config{Auth: "azure-cli", HTTPClient: offline()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.Token(context.Background(), false)
	if err == nil || !strings.Contains(err.Error(), "Please run az login") || !strings.Contains(err.Error(), "run `az login`") {
		t.Fatalf("err = %v", err)
	}
}

func TestAzureCLIMissing(t *testing.T) {
	cleanEnv(t)
	t.Setenv("PATH", t.TempDir())
	if _, err := Resolve(context.Background(), Config{Auth: "azure-cli", HTTPClient: offline()}); err == nil || !strings.Contains(err.Error(), "/bin/sh and `az` on PATH") {
		t.Fatalf("err = %v", err)
	}
}

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// TestNoSecretLeaks runs check, a whole --once job, register and remove for
// every credential kind, and looks for every secret involved in everything
// the agent printed and everything the emulator saw on the wire.
func TestNoSecretLeaks(t *testing.T) {
	t.Parallel()
	for _, ck := range credentialKinds {
		t.Run(ck.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("leaktight")
			c := ck.setup(t, w, a, true, true)
			secretVar := randomSecret("var-")
			msg := scriptJob("secrets", "echo \"the secret is $(deploy.password)\"\necho \"client secret: ${AZURE_CLIENT_SECRET:-none}\"")
			msg.Variables["deploy.password"] = wire.VariableValue{Value: secretVar, IsSecret: true}
			j := w.queue(t, msg)

			if p := a.run("check"); p.code != 0 {
				t.Fatalf("check exited %d:\n%s", p.code, p.output())
			}
			p := a.start("run", "--once", "--debug")
			expectResult(t, j, "succeeded", p)
			p.expectExit(t, 0)
			a.run("register").expectExit(t, 0)
			a.run("remove").expectExit(t, 0)

			log := j.Logs()[stepLog(t, j)]
			if !strings.Contains(log, "the secret is ***") {
				t.Fatalf("the step did not print the masked secret variable, so this test proves nothing:\n%s", log)
			}
			secrets := append([]string{w.srv.PAT(), secretVar, j.Token()}, c.secrets...)
			secrets = append(secrets, c.issued()...)
			if len(secrets) < 4 {
				t.Fatalf("only %d secrets to look for", len(secrets))
			}
			haystacks := map[string]string{"agent output": w.outputs()}
			for i, e := range w.srv.Recorder().Exchanges() {
				var b strings.Builder
				b.WriteString(e.Path + "?" + e.Query + "\n")
				for k, vs := range e.RequestHeader {
					b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
				}
				b.Write(e.RequestBody)
				b.WriteString("\n")
				b.Write(e.ResponseBody)
				haystacks[e.Method+" "+e.Resource+" #"+strconv.Itoa(i)] = b.String()
			}
			for id, l := range j.Logs() {
				haystacks["job log "+strconv.Itoa(id)] = l
			}
			for _, s := range secrets {
				for where, text := range haystacks {
					if strings.Contains(text, s) {
						t.Errorf("a secret (%s…) appears in %s", s[:6], where)
					}
				}
			}
		})
	}
}

// TestStepsDoNotInheritCredentials: a step printing its environment sees
// none of the agent's credential variables unless they are passed on purpose.
func TestStepsDoNotInheritCredentials(t *testing.T) {
	t.Parallel()
	credentialVars := []string{"AZP_TOKEN", "AZP_TOKEN_FILE", "IDENTITY_HEADER", "IDENTITY_ENDPOINT", "AZURE_CLIENT_SECRET",
		"AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "VSTS_AGENT_INPUT_TOKEN"}
	for _, tc := range []struct {
		name      string
		tokenFile bool
		env       []string
		args      []string
		passed    []string
	}{
		{"AZP_TOKEN", false, nil, nil, nil},
		{"AZP_TOKEN_FILE", true, nil, nil, nil},
		{"AZP_PASS_ENV", false, []string{"AZP_PASS_ENV", "AZURE_FEDERATED_TOKEN_FILE, identity_endpoint"}, nil, []string{"AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT"}},
		{"--pass-env", true, nil, []string{"--pass-env", "AZP_TOKEN_FILE", "--pass-env", "AZURE_CLIENT_ID"}, []string{"AZP_TOKEN_FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("scrubbed").set(
				"IDENTITY_HEADER", randomSecret("idh-"), "IDENTITY_ENDPOINT", "https://127.0.0.1:9/msi/token",
				"AZURE_CLIENT_ID", "00000000-0000-4000-8000-000000000001",
				"AZURE_CLIENT_SECRET", randomSecret("sp-"), "AZURE_CLIENT_CERTIFICATE_PASSWORD", randomSecret("pw-"),
				"AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/sp.pfx", "AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token",
				"MY_TOOL_HOME", "/opt/tool")
			if tc.tokenFile {
				a.set("AZP_TOKEN", "", "AZP_TOKEN_FILE", writeSecretFile(t, a, "pat", w.srv.PAT()))
			} else {
				// The official agent's spelling of AZP_TOKEN; AZP_TOKEN wins.
				a.set("VSTS_AGENT_INPUT_TOKEN", randomSecret("vsts-"))
			}
			a.set(tc.env...)
			out := filepath.Join(t.TempDir(), "env")
			j := w.queue(t, scriptJob("printenv", "env > "+out))
			p := a.start(append([]string{"run", "--once"}, tc.args...)...)
			expectResult(t, j, "succeeded", p)
			p.expectExit(t, 0)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			env := map[string]string{}
			for _, kv := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
			if env["MY_TOOL_HOME"] != "/opt/tool" || env["AZURE_CLIENT_ID"] == "" {
				t.Fatalf("the step did not get the agent's ordinary environment; printed:\n%s", b)
			}
			for _, name := range credentialVars {
				_, got := env[name]
				want := false
				for _, p := range tc.passed {
					want = want || p == name
				}
				if got != want {
					t.Errorf("step environment has %s: %v, want %v", name, got, want)
				}
				if v := a.env[name]; got && want && env[name] != v {
					t.Errorf("passed %s=%q, want the agent's value", name, env[name])
				}
			}
		})
	}
}

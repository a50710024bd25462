package e2e

import (
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// TestExitCodes: 0 when the agent did its job, 1 for configuration, identity
// and registration errors with a message naming the cause and the fix, 2 for
// usage errors (DESIGN.md).
func TestExitCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		fault *devserver.Fault
		code  int
		says  []string
	}{
		{"no command", nil, nil, nil, 2, []string{"Usage"}},
		{"unknown command", nil, []string{"launch"}, nil, 2, []string{`unknown command "launch"`}},
		{"unknown flag", nil, []string{"run", "--bogus"}, nil, 2, []string{"bogus"}},
		{"stray argument", nil, []string{"run", "extra"}, nil, 2, []string{`unexpected argument "extra"`}},
		{"no URL", []string{"AZP_URL", ""}, []string{"run"}, nil, 2, []string{"--url", "AZP_URL"}},
		{"bad idle timeout", []string{"AZP_IDLE_TIMEOUT", "soon"}, []string{"run", "--once"}, nil, 2, []string{"idle timeout", "soon"}},
		{"bad AZP_REPLACE", []string{"AZP_REPLACE", "maybe"}, []string{"register"}, nil, 2, []string{"AZP_REPLACE", "true or false"}},
		{"unknown --auth", []string{"AZP_AUTH", "kerberos"}, []string{"register"}, nil, 2, []string{`--auth "kerberos"`, "use one of"}},
		{"bad test knob", []string{"GOAGENT_RENEW_PERIOD", "often"}, []string{"run"}, nil, 2, []string{"GOAGENT_RENEW_PERIOD"}},
		{"help", nil, []string{"--help"}, nil, 0, []string{"goagent run"}},
		{"version", nil, []string{"version"}, nil, 0, []string{"goagent e2e", "reports agent version"}},
		{"wrong PAT", []string{"AZP_TOKEN", "wrongwrongwrongwrongwrongwrongwrongwrongwrongwrong12"}, []string{"register"}, nil, 1, []string{"401", "personal access token", "create a new one"}},
		{"missing pool", []string{"AZP_POOL", "gpu"}, []string{"run", "--once"}, nil, 1, []string{`pool "gpu" not found`, "create the agent pool"}},
		{"not the organization URL", []string{"AZP_URL", "/elsewhere"}, []string{"register"}, nil, 1, []string{"404", "--url", "organization URL"}},
		{"check: not the organization URL", []string{"AZP_URL", "/elsewhere"}, []string{"check"}, nil, 1, []string{"not ready", "404", "--url", "organization URL"}},
		{"--auth pat without a token", []string{"AZP_TOKEN", "", "AZP_AUTH", "pat"}, []string{"register"}, nil, 1, []string{"no token", "AZP_TOKEN"}},
		{"missing token file", []string{"AZP_TOKEN", "", "AZP_TOKEN_FILE", "/nonexistent/token"}, []string{"run", "--once"}, nil, 1, []string{"/nonexistent/token", "does not exist"}},
		{"workload identity without its variables", []string{"AZP_TOKEN", "", "AZP_AUTH", "workload-identity"}, []string{"register"}, nil, 1, []string{"AZURE_FEDERATED_TOKEN_FILE"}},
		{"registration refused by a 503", nil, []string{"register"}, &devserver.Fault{Method: "POST", Resource: "agents", Status: 503}, 1, []string{`register agent "exit"`, "503"}},
		{"remove without a registration or URL", []string{"AZP_URL", ""}, []string{"remove"}, nil, 2, []string{"AZP_URL", "no registration"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, devserver.Options{})
			a := w.newAgent("exit")
			if len(tc.env) == 2 && tc.env[0] == "AZP_URL" && strings.HasPrefix(tc.env[1], "/") {
				tc.env = []string{"AZP_URL", strings.TrimSuffix(w.srv.URL(), "/"+w.srv.Org()) + tc.env[1]}
			}
			a.set(tc.env...)
			if tc.fault != nil {
				w.srv.Faults().Add(*tc.fault)
			}
			p := a.run(tc.args...)
			if p.code != tc.code {
				t.Fatalf("goagent %s exited %d, want %d; output:\n%s", strings.Join(tc.args, " "), p.code, tc.code, p.output())
			}
			for _, s := range tc.says {
				if !strings.Contains(p.output(), s) {
					t.Errorf("the output does not say %q:\n%s", s, p.output())
				}
			}
			if tc.code != 0 && len(w.srv.Agents("")) != 0 {
				t.Error("a failed command left an agent registered")
			}
		})
	}
}

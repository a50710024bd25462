package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

// imageUID is the uid/gid the images run as and the manifests request.
const imageUID = 65532

// envNamePattern matches the names of environment variables goagent and
// azidentity read for their configuration.
var envNamePattern = regexp.MustCompile(`^(AZP|AZURE|IDENTITY|MSI)_[A-Z0-9_]+$`)

// goagentFacts are what the deploy files must agree with, read from
// goagent's own source so that a renamed variable fails these tests.
type goagentFacts struct {
	env       map[string]bool // environment variables read
	authKinds map[string]bool // accepted AZP_AUTH values
}

func readGoagentFacts(t *testing.T) goagentFacts {
	t.Helper()
	f := goagentFacts{env: map[string]bool{}, authKinds: map[string]bool{}}
	for _, dir := range []string{"cmd/goagent", "internal/identity"} {
		for _, file := range parseDir(t, filepath.Join(repoRoot, dir)) {
			ast.Inspect(file, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && envNamePattern.MatchString(s) {
						f.env[s] = true
					}
				case *ast.ValueSpec:
					// identity.authAliases: the spellings --auth/AZP_AUTH accepts.
					for i, name := range n.Names {
						if name.Name != "authAliases" || i >= len(n.Values) {
							continue
						}
						if cl, ok := n.Values[i].(*ast.CompositeLit); ok {
							for _, el := range cl.Elts {
								kv, ok := el.(*ast.KeyValueExpr)
								if !ok {
									continue
								}
								if lit, ok := kv.Key.(*ast.BasicLit); ok {
									if s, err := strconv.Unquote(lit.Value); err == nil && s != "" {
										f.authKinds[s] = true
									}
								}
							}
						}
					}
				}
				return true
			})
		}
	}
	for _, must := range []string{"AZP_URL", "AZP_POOL", "AZP_AUTH", "AZP_AGENT_NAME", "AZP_WORK", "AZP_PLACEHOLDER", "AZP_IDLE_TIMEOUT", "AZURE_CLIENT_ID"} {
		if !f.env[must] {
			t.Fatalf("goagent's source no longer mentions %s: update the deploy files and these tests", must)
		}
	}
	for _, must := range []string{"managed-identity", "workload-identity"} {
		if !f.authKinds[must] {
			t.Fatalf("identity.authAliases no longer accepts %q: update the deploy files", must)
		}
	}
	return f
}

// parseDir parses the non-test Go files of dir.
func parseDir(t *testing.T, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read goagent's source: %v", err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", e.Name(), err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go source in %s", dir)
	}
	return files
}

// agentEnv is the environment one agent container gets, as a deploy file
// declares it.
type agentEnv struct {
	where string            // for messages: file and object
	vars  map[string]string // name → value as written (expressions kept verbatim)
}

// check enforces what every agent container needs: names goagent reads,
// the URL and pool, an Entra credential of the wanted kind, and no PAT or
// client secret.
func (e agentEnv) check(t *testing.T, facts goagentFacts, wantAuth string) {
	t.Helper()
	for name := range e.vars {
		if strings.HasPrefix(name, "AZP_") || strings.HasPrefix(name, "AZURE_") {
			if !facts.env[name] {
				t.Errorf("%s sets %s, which goagent does not read (a typo?)", e.where, name)
			}
		}
	}
	for _, need := range []string{"AZP_URL", "AZP_POOL", "AZP_AUTH"} {
		if _, ok := e.vars[need]; !ok {
			t.Errorf("%s does not set %s", e.where, need)
		}
	}
	if got := e.vars["AZP_AUTH"]; got != wantAuth || !facts.authKinds[got] {
		t.Errorf("%s: AZP_AUTH=%q, want %q (accepted by goagent: %v)", e.where, got, wantAuth, facts.authKinds[wantAuth])
	}
	for _, secret := range []string{"AZP_TOKEN", "AZP_TOKEN_FILE", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH"} {
		if _, ok := e.vars[secret]; ok {
			t.Errorf("%s sets %s: the agent must authenticate with its managed or workload identity, not a secret", e.where, secret)
		}
	}
	if wantAuth == "managed-identity" {
		// A client id would make azidentity look for a user-assigned identity.
		if _, ok := e.vars["AZURE_CLIENT_ID"]; ok {
			t.Errorf("%s sets AZURE_CLIENT_ID, which selects a user-assigned identity instead of the system-assigned one", e.where)
		}
	}
	if v, ok := e.vars["AZP_IDLE_TIMEOUT"]; ok && !isDuration(v) {
		t.Errorf("%s: AZP_IDLE_TIMEOUT=%q is neither a Go duration nor seconds", e.where, v)
	}
}

// placeholder reports whether the environment registers a placeholder, as
// goagent's envBool reads AZP_PLACEHOLDER.
func (e agentEnv) placeholder() bool {
	v := strings.TrimSpace(e.vars["AZP_PLACEHOLDER"])
	b, err := strconv.ParseBool(v)
	return err == nil && b || strings.EqualFold(v, "yes")
}

func isDuration(s string) bool {
	if _, err := strconv.Atoi(s); err == nil {
		return true
	}
	_, err := time.ParseDuration(s)
	return err == nil
}

func TestGoagentFacts(t *testing.T) {
	f := readGoagentFacts(t)
	// The scan must not be so loose that anything passes.
	for _, absent := range []string{"AZP_AGENTNAME", "AZP_TOKENS", "AZURE_SECRET"} {
		if f.env[absent] {
			t.Errorf("the source scan claims goagent reads %s", absent)
		}
	}
	if f.authKinds["auto-magic"] || len(f.authKinds) < 3 {
		t.Errorf("auth kinds read from identity.authAliases look wrong: %v", f.authKinds)
	}
}

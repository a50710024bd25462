package script

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/goagent-dev/goagent/internal/steps/stepstest"
)

type sanitizeCorpus struct {
	Env   map[string]string `json:"env"`
	Cases []struct {
		Args          string `json:"args"`
		BashExpanded  string `json:"bashExpanded"`
		BashSanitized string `json:"bashSanitized"`
		PSExpanded    string `json:"psExpanded"`
		PSSanitized   string `json:"psSanitized"`
	} `json:"cases"`
}

func loadCorpus(t testing.TB) sanitizeCorpus {
	t.Helper()
	b, err := os.ReadFile("testdata/sanitize.json")
	if err != nil {
		t.Fatal(err)
	}
	var c sanitizeCorpus
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Cases) < 100 {
		t.Fatalf("corpus has %d cases", len(c.Cases))
	}
	return c
}

func expandString(f func([]uint16, func(string) string) []uint16, s string, env map[string]string) string {
	return string(utf16.Decode(f(utf16.Encode([]rune(s)), func(n string) string { return env[n] })))
}

// The port against outputs captured from the official implementations.
func TestSanitizerMatchesOfficial(t *testing.T) {
	c := loadCorpus(t)
	for _, tc := range c.Cases {
		if got := expandString(expandBashEnv, tc.Args, c.Env); got != tc.BashExpanded {
			t.Errorf("bash expand %q: got %q, want %q", tc.Args, got, tc.BashExpanded)
		}
		if got := sanitizeArgs(tc.BashExpanded, bashSanitizer); got != tc.BashSanitized {
			t.Errorf("bash sanitize %q: got %q, want %q", tc.BashExpanded, got, tc.BashSanitized)
		}
		if got := expandString(expandPowerShellEnv, tc.Args, c.Env); got != tc.PSExpanded {
			t.Errorf("pwsh expand %q: got %q, want %q", tc.Args, got, tc.PSExpanded)
		}
		if got := sanitizeArgs(tc.PSExpanded, powerShellSanitizer); got != tc.PSSanitized {
			t.Errorf("pwsh sanitize %q: got %q, want %q", tc.PSExpanded, got, tc.PSSanitized)
		}
	}
}

func TestValidateFileArgsDecision(t *testing.T) {
	c := loadCorpus(t)
	var env []string
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	env = append(env, "AZP_75787_ENABLE_NEW_LOGIC=true")
	blocked := 0
	for _, tc := range c.Cases {
		con := &stepstest.Console{}
		err := validateFileArgs(con, env, tc.Args, bashSanitizer)
		want := tc.BashSanitized != tc.Args && tc.BashSanitized != tc.BashExpanded
		if (err != nil) != want {
			t.Errorf("bash %q: error %v, want blocked=%v", tc.Args, err, want)
		}
		if want {
			blocked++
		}
		err = validateFileArgs(con, env, tc.Args, powerShellSanitizer)
		want = tc.PSSanitized != tc.Args && tc.PSSanitized != tc.PSExpanded
		if (err != nil) != want {
			t.Errorf("pwsh %q: error %v, want blocked=%v", tc.Args, err, want)
		}
	}
	if blocked == 0 || blocked == len(c.Cases) {
		t.Errorf("corpus blocks %d of %d: not a useful corpus", blocked, len(c.Cases))
	}
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{"", "$VAR", `\$VAR`, "${VAR}", "${!X}", "'$VAR'", "$env:VAR", "${env:VAR}", "`$env:VAR",
		"$env:`X", "$env:A`B`C", "a;b", "x\\\\;", "é😀$", "-f $true", "${", "$"} {
		f.Add(s)
	}
}

func FuzzBashExpandAndSanitize(f *testing.F) {
	fuzzSeeds(f)
	env := map[string]string{"VAR": "v;$VAR", "A": "", "HOME": "/h"}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		out := expandString(expandBashEnv, s, env)
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("expansion changed %q without a $: %q", s, out)
		}
		san := sanitizeArgs(out, bashSanitizer)
		if strings.ContainsAny(strings.ReplaceAll(san, "_#removed#_", ""), "`;|&<>()") && !strings.Contains(san, `\`) {
			t.Fatalf("sanitized %q still holds a shell metacharacter: %q", out, san)
		}
	})
}

func FuzzPowerShellExpandAndSanitize(f *testing.F) {
	fuzzSeeds(f)
	env := map[string]string{"VAR": "v`;", "X": "", "A": "a"}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		out := expandString(expandPowerShellEnv, s, env)
		if !strings.Contains(strings.ToLower(s), "env:") && out != s {
			t.Fatalf("expansion changed %q without $env: %q", s, out)
		}
		san := sanitizeArgs(out, powerShellSanitizer)
		if sanitizeArgs(san, powerShellSanitizer) != san {
			t.Fatalf("sanitize not idempotent on %q", san)
		}
	})
}

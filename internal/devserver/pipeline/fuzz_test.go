package pipeline

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCompile: whatever the input, Compile returns a pipeline the agent can
// take or an ErrorList with a message per problem, and never panics.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yml"))
	for _, file := range files {
		if src, err := os.ReadFile(file); err == nil {
			f.Add(src)
		}
	}
	for _, s := range []string{
		"",
		"steps:",
		"steps: []",
		"steps: [{script: x}]",
		"steps:\n- script:\n",
		"jobs:\n- job: a\n  dependsOn: a\n  steps: [{bash: x}]",
		"jobs: [{job: a, steps: [{checkout: none}]}, {job: b, dependsOn: [a, a], steps: [{pwsh: x}]}]",
		"name: $(Rev:rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr)$(Date:yyyyyyyyyyyyyyyy\nsteps: [{script: x}]",
		"variables: [{name: a}, {name: a, value: b}]\nsteps: [{script: x, env: {A: [1]}}]",
		"steps:\n- task: x@99999999999999999999\n- task: '@1'\n- task: a@-1",
		"a: &x [*x]",
		"? [complex, key]\n: value",
		"steps:\n- script: x\n  name: " + strings.Repeat("n", 150),
		"steps: !!map {}",
		"--- \n...\n",
		"\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Compile(src, testOptions())
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty ErrorList", err, err)
			}
			for _, e := range list {
				if e == nil || e.Msg == "" || e.Line < 0 {
					t.Fatalf("malformed problem %#v", e)
				}
			}
			return
		}
		if len(p.Jobs) == 0 {
			t.Fatal("compiled a pipeline without jobs")
		}
		if _, err := p.Order(); err != nil {
			t.Fatalf("compiled pipeline does not order: %v", err)
		}
		for _, j := range p.Jobs {
			if _, err := json.Marshal(j.Message); err != nil {
				t.Fatalf("job %s: %v", j.Name, err)
			}
			if len(j.Message.Steps) == 0 {
				t.Fatalf("job %s has no steps", j.Name)
			}
			seen := map[string]bool{}
			for _, s := range j.Message.Steps {
				k := strings.ToLower(s.Name)
				if s.Name == "" || seen[k] || !stepNamePattern.MatchString(s.Name) {
					t.Fatalf("job %s: bad or repeated step name %q", j.Name, s.Name)
				}
				seen[k] = true
			}
			if _, err := j.Bind(Connection{CollectionURL: "https://127.0.0.1/o", AccessToken: "t"}); err != nil {
				t.Fatalf("bind job %s: %v", j.Name, err)
			}
		}
	})
}

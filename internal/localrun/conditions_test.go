package localrun

import (
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/wire"
)

func TestJobConditions(t *testing.T) {
	outcomes := map[string]depOutcome{
		"Build":  {result: "succeeded", outputs: map[string]string{"meta.version": "1.2.3"}},
		"Lint":   {result: "failed"},
		"Flaky":  {result: "succeededWithIssues"},
		"Docs":   {result: "skipped"},
		"Cancel": {result: "canceled"},
	}
	vars := map[string]wire.VariableValue{"Deploy": {Value: "true"}, "env": {Value: "prod"}}
	for _, tc := range []struct {
		name      string
		condition string
		deps      []string
		canceled  bool
		want      bool
		err       string
	}{
		{"default without dependencies", "", nil, false, true, ""},
		{"default after success", "", []string{"Build"}, false, true, ""},
		{"default after succeeded with issues", "succeeded()", []string{"Build", "Flaky"}, false, true, ""},
		{"default after a failure", "", []string{"Build", "Lint"}, false, false, ""},
		{"default after a skipped job", "", []string{"Docs"}, false, false, ""},
		{"default after a canceled job", "", []string{"Cancel"}, false, false, ""},
		{"failed() without dependencies", "failed()", nil, false, false, ""},
		{"failed() after a failure", "failed()", []string{"Build", "Lint"}, false, true, ""},
		{"failed() after successes", "failed()", []string{"Build", "Flaky"}, false, false, ""},
		{"named succeeded", "succeeded('Build')", []string{"Build", "Lint"}, false, true, ""},
		{"named succeeded ignores case", "succeeded('build')", []string{"Build"}, false, true, ""},
		{"named failed", "failed('Lint')", []string{"Build", "Lint"}, false, true, ""},
		{"named failed of a success", "failed('Build')", []string{"Build", "Lint"}, false, false, ""},
		{"named, several", "succeeded('Build', 'Flaky')", []string{"Build", "Flaky", "Lint"}, false, true, ""},
		{"not a dependency", "succeeded('Other')", []string{"Build"}, false, false, `job "Other" is not a dependency of job "J"`},
		{"succeededOrFailed", "succeededOrFailed()", []string{"Build", "Lint"}, false, true, ""},
		{"succeededOrFailed after a skip", "succeededOrFailed()", []string{"Docs"}, false, false, ""},
		{"always", "always()", []string{"Docs", "Lint"}, false, true, ""},
		{"always when canceled", "always()", []string{"Build"}, true, true, ""},
		{"succeeded when canceled", "succeeded()", []string{"Build"}, true, false, ""},
		{"canceled()", "canceled()", nil, true, true, ""},
		{"canceled() not canceled", "canceled()", nil, false, false, ""},
		{"variables", "and(succeeded(), eq(variables.deploy, 'true'), eq(variables['ENV'], 'prod'))", []string{"Build"}, false, true, ""},
		{"dependency result", "in(dependencies.Flaky.result, 'Succeeded', 'SucceededWithIssues')", []string{"Flaky"}, false, true, ""},
		{"dependency result of a skip", "eq(dependencies.Docs.result, 'Skipped')", []string{"Docs"}, false, true, ""},
		{"dependency outputs", "eq(dependencies.Build.outputs['meta.version'], '1.2.3')", []string{"Build"}, false, true, ""},
		{"only direct dependencies", "eq(dependencies.Build.result, 'Succeeded')", []string{"Lint"}, false, false, ""},
		{"syntax error", "eq(variables.x", []string{"Build"}, false, false, "condition \"eq(variables.x\" of job J"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &jobCondition{job: "J", vars: vars, deps: tc.deps, outcomes: outcomes, canceled: tc.canceled}
			got, err := evalCondition(c, tc.condition)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("%s = %v, want %v", tc.condition, got, tc.want)
			}
		})
	}
}

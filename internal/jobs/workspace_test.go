package jobs_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/wire"
)

// TestWorkspaceAcrossJobs runs jobs one after another on one runner: the
// build directory number is stable per collection and definition, a/ and
// TestResults/ start empty, _temp is emptied before and after every job, and
// the clean options (workspace.clean, build.clean, agent.clean.buildDirectory)
// delete what BuildDirectoryManager deletes.
func TestWorkspaceAcrossJobs(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	script := strings.Join([]string{
		`cd "$AGENT_BUILDDIRECTORY"`,
		`for f in s/src b/bin a/art TestResults/tr root; do [ -e "$f" ] && echo "has $f"; done`,
		`ls -A "$AGENT_TEMPDIRECTORY" | grep -v '\.sh$' | sed 's/^/temp /'`,
		`echo "dir $(basename "$AGENT_BUILDDIRECTORY")"`,
		`touch s/src b/bin a/art TestResults/tr root "$AGENT_TEMPDIRECTORY/tmpfile"`,
	}, "\n")
	temp := filepath.Join(r.WorkDir, "_temp")
	runs := []struct {
		name       string
		definition string
		clean      string // workspace.clean
		vars       map[string]wire.VariableValue
		leftover   bool // a file left in _temp before the job
		want       []string
	}{
		{name: "first job", definition: "2", want: []string{"dir 1"}},
		{name: "same definition reuses N", definition: "2", leftover: true, want: []string{"dir 1", "has b/bin", "has root", "has s/src"}},
		{name: "another definition", definition: "3", want: []string{"dir 2"}},
		{name: "back to the first", definition: "2", want: []string{"dir 1", "has b/bin", "has root", "has s/src"}},
		{name: "clean outputs", definition: "2", clean: "outputs", want: []string{"dir 1", "has root", "has s/src"}},
		{name: "clean resources", definition: "2", clean: "resources", want: []string{"dir 1", "has b/bin", "has root"}},
		{name: "clean all", definition: "2", clean: "all", want: []string{"dir 1"}},
		{name: "build.clean wins over workspace", definition: "2", clean: "outputs",
			vars: map[string]wire.VariableValue{"build.clean": {Value: "Source"}}, want: []string{"dir 1", "has b/bin", "has root"}},
		{name: "agent.clean.buildDirectory wins over build.clean", definition: "2",
			vars: map[string]wire.VariableValue{"agent.clean.buildDirectory": {Value: "all"}, "build.clean": {Value: "binary"}}, want: []string{"dir 1"}},
		{name: "workspace.clean is macro-expanded", definition: "2", clean: "$(opt)",
			vars: map[string]wire.VariableValue{"opt": {Value: "outputs"}}, want: []string{"dir 1", "has root", "has s/src"}},
	}
	for _, tc := range runs {
		vars := map[string]wire.VariableValue{"system.definitionId": {Value: tc.definition}}
		for k, v := range tc.vars {
			vars[k] = v
		}
		m := message(vars, stepSpec{script: script})
		if tc.clean != "" {
			m.Workspace = &wire.WorkspaceOptions{Clean: tc.clean}
		}
		if tc.leftover {
			if err := os.WriteFile(filepath.Join(temp, "leftover"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		res, rep := run(t, r, m)
		if res != "succeeded" {
			t.Fatalf("%s: %s\n%s", tc.name, res, rep.all())
		}
		var got []string
		for _, l := range rep.lines[stepID(0)] {
			if strings.HasPrefix(l, "has ") || strings.HasPrefix(l, "dir ") || strings.HasPrefix(l, "temp ") {
				got = append(got, l)
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if left, err := os.ReadDir(temp); err != nil || len(left) != 0 {
			t.Errorf("%s: _temp after the job: %v %v", tc.name, left, err)
		}
	}
}

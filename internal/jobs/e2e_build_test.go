package jobs_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// buildVars names build 5 of the emulator's project in a job message.
func buildVars(extra map[string]wire.VariableValue) map[string]wire.VariableValue {
	v := map[string]wire.VariableValue{
		"build.buildId":     {Value: "5", IsReadonly: true},
		"build.buildNumber": {Value: "20250101.1", IsReadonly: true},
	}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// indexFrom is the position of line in lines at or after from, -1 when
// absent.
func indexFrom(lines []string, line string, from int) int {
	for i := from; i < len(lines); i++ {
		if lines[i] == line {
			return i
		}
	}
	return -1
}

// TestEmulatorBuildCommands: build.updatebuildnumber and build.addbuildtag
// call the emulator's Build area over the job's connection; the step waits
// for them before it finishes and logs the official lines; later steps see
// the new number; the body-based tag call is used when the knob says so.
func TestEmulatorBuildCommands(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	j := l.queue(emuMessage(buildVars(nil),
		stepSpec{name: "rename", script: strings.Join([]string{
			`echo "##vso[build.updatebuildnumber]1.2.3"`,
			`echo "##vso[build.addbuildtag]release"`,
			`echo "script done"`,
		}, "\n")},
		// Its own step: the calls of one step run concurrently.
		stepSpec{name: "after", script: strings.Join([]string{
			`echo "number is $(Build.BuildNumber) / $BUILD_BUILDNUMBER"`,
			`echo "##vso[build.addbuildtag]  Nightly  "`,
		}, "\n")},
	))
	if res := l.wait(j); res != "succeeded" {
		t.Fatalf("result %s", res)
	}
	b, ok := j.Build()
	if !ok || b.ID != 5 || b.Number != "1.2.3" || strings.Join(b.Tags, ",") != "Nightly,release" {
		t.Fatalf("the emulator's build: %+v %v", b, ok)
	}
	log := logMessages(j, stepID(0))
	order := []string{
		"script done",
		"##[section]Async Command Start: Update Build Number",
		"Update build number to 1.2.3 for build 5",
		"##[section]Async Command End: Update Build Number",
		"##[section]Async Command Start: Add Build Tag",
		"Build '5' has following tags now: release",
		"##[section]Async Command End: Add Build Tag",
		"##[section]Finishing: rename",
	}
	last := -1
	for _, want := range order {
		if last = indexFrom(log, want, last+1); last < 0 {
			t.Fatalf("log line %q missing or out of order:\n%s", want, strings.Join(log, "\n"))
		}
	}
	after := logMessages(j, stepID(1))
	if !hasLine(after, "number is 1.2.3 / 1.2.3") || !hasLine(after, "Build '5' has following tags now: Nightly, release") {
		t.Errorf("the next step does not see the new number, or its tag was not trimmed:\n%s", strings.Join(after, "\n"))
	}
	if w := issues(record(t, j, stepID(0)), "warning"); len(w) != 0 {
		t.Errorf("warnings %q", w)
	}

	// The knob switches tags to the body API, which keeps ';' intact.
	j2 := l.queue(emuMessage(buildVars(map[string]wire.VariableValue{"AGENT_USE_BUILD_TAGS_BODY_API": {Value: "true"}}),
		stepSpec{script: `echo "##vso[build.addbuildtag]a;b"`},
	))
	if res := l.wait(j2); res != "succeeded" {
		t.Fatalf("body API job: %s", res)
	}
	if b, _ := j2.Build(); strings.Join(b.Tags, "|") != "a;b|Nightly|release" {
		t.Errorf("tags after the body API %q", b.Tags)
	}
	methods := map[string]int{}
	for _, ex := range l.srv.Recorder().Exchanges() {
		if ex.Resource == "tags" || ex.Resource == "builds" {
			methods[ex.Method+" "+ex.Resource]++
			if ex.Status != http.StatusOK {
				t.Errorf("%s %s: %d", ex.Method, ex.Path, ex.Status)
			}
		}
	}
	if methods["PATCH builds"] != 1 || methods["PUT tags"] != 2 || methods["POST tags"] != 1 || len(methods) != 3 {
		t.Errorf("Build area calls %v", methods)
	}
	l.checkViolations()
}

// TestEmulatorBuildCommandFailures: what the official commands refuse at
// once (empty data, no build) and what the service refuses (unknown build,
// no permission) fail the step with an error naming the build and the cause.
func TestEmulatorBuildCommandFailures(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	fault := l.srv.Faults().Add(devserver.Fault{Method: http.MethodPut, Resource: "tags", Status: http.StatusForbidden})
	const docLink = "Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"
	cases := []struct {
		script string
		errors []string // exact, or a prefix ending in "…"
	}{
		{`echo "##vso[build.updatebuildnumber]"`, []string{
			"Unable to process command '##vso[build.updatebuildnumber]' successfully. " + docLink,
			"Build number is required."}},
		{`echo "##vso[build.addbuildtag]   "`, []string{
			"Unable to process command '##vso[build.addbuildtag]   ' successfully. " + docLink,
			"Build tag is required."}},
		{`echo "##vso[build.addbuildtag]denied"`, []string{
			"add tag 'denied' to build 5: PUT …"}},
		{"echo '##vso[task.setvariable variable=build.buildId]999'\necho '##vso[build.updatebuildnumber]9.9.9'", []string{
			"update the build number of build 999 to '9.9.9': PATCH …"}},
	}
	var specs []stepSpec
	for _, c := range cases {
		specs = append(specs, stepSpec{script: c.script, continueOnError: true})
	}
	j := l.queue(emuMessage(buildVars(nil), specs...))
	if res := l.wait(j); res != "succeededWithIssues" {
		t.Fatalf("result %s", res)
	}
	for i, c := range cases {
		r := record(t, j, stepID(i))
		if result(r) != "succeededWithIssues" {
			t.Errorf("%q: step %s, want failed (turned succeededWithIssues)", c.script, result(r))
		}
		got := issues(r, "error")
		if len(got) != len(c.errors) {
			t.Errorf("%q: errors %q, want %q", c.script, got, c.errors)
			continue
		}
		for k, want := range c.errors {
			if p, ok := strings.CutSuffix(want, "…"); ok {
				if !strings.HasPrefix(got[k], p) {
					t.Errorf("%q: error %q, want it to start %q", c.script, got[k], p)
				}
			} else if got[k] != want {
				t.Errorf("%q: error %q, want %q", c.script, got[k], want)
			}
		}
	}
	denied := issues(record(t, j, stepID(2)), "error")
	if len(denied) == 1 && (!strings.Contains(denied[0], "403 Forbidden") || !strings.Contains(denied[0], "'Update build information' permission")) {
		t.Errorf("the 403 error names no cause or fix: %q", denied[0])
	}
	notFound := issues(record(t, j, stepID(3)), "error")
	if len(notFound) == 1 && (!strings.Contains(notFound[0], "404 Not Found (BuildNotFoundException)") || !strings.Contains(notFound[0], "no build 999 in project")) {
		t.Errorf("the 404 error names no cause: %q", notFound[0])
	}
	if fault.Hits() != 1 {
		t.Errorf("the 403 fault fired %d times", fault.Hits())
	}
	// Build.BuildNumber changes before the service call, as in the official
	// command, even though the call failed.
	if b, _ := j.Build(); b.Number != "20250101.1" || len(b.Tags) != 0 {
		t.Errorf("refused calls changed the build: %+v", b)
	}

	// A job that names no build (a release job, say) cannot use them.
	j2 := l.queue(emuMessage(nil,
		stepSpec{script: `echo "##vso[build.updatebuildnumber]1.0"`, continueOnError: true},
		stepSpec{script: `echo "##vso[build.addbuildtag]t"`},
	))
	if res := l.wait(j2); res != "failed" {
		t.Fatalf("job without a build: %s", res)
	}
	for i, cmd := range []string{"build.updatebuildnumber", "build.addbuildtag"} {
		e := issues(record(t, j2, stepID(i)), "error")
		if len(e) != 2 || !strings.HasPrefix(e[1], "Value cannot be null. (Parameter 'buildId'): ") || !strings.Contains(e[1], "##vso["+cmd+"]") {
			t.Errorf("%s without a build: %q", cmd, e)
		}
	}
	if res := result(record(t, j2, stepID(1))); res != "failed" {
		t.Errorf("a failed build command without continueOnError: step %s", res)
	}
}

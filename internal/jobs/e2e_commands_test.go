package jobs_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/wire"
)

const docLink = "Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"

// TestEmulatorLoggingCommands runs every logging command of worker.md §5.2
// through the emulator: what goagent honours takes effect, what it cannot
// honour draws a warning or an error naming the command, malformed lines
// draw the official warning, and ##[group]-style lines are plain text.
func TestEmulatorLoggingCommands(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	const svc = "8d2f3c4e-1111-4222-8333-944455556666"
	files := `cd "$AGENT_TEMPDIRECTORY"; for f in f1.txt f2.bin f3.md f4.log f5.md; do echo "content of $f" > $f; done`
	cmds := strings.Join([]string{
		files,
		`echo '##[group]Title'`, `echo 'inside'`, `echo '##[endgroup]'`,
		`echo '##[error]not an issue'`, `echo '##[warning]nor this'`, `echo '##[section]plain'`,
		`echo '##vso[task.logissue type=warning;sourcepath=a.go;linenumber=3;columnnumber=4;code=W1]careful'`,
		`echo '##vso[task.issue type=error]bad thing'`,
		`echo '##vso[task.setprogress value=50;]halfway'`,
		`echo '##vso[task.logdetail id=6f0a7c2e-0000-4000-8000-000000000009;name=detail;type=build;order=1]detail text'`,
		`echo '##vso[task.debug]dbg message'`,
		`echo '##vso[task.setvariable variable=v1]val1'`,
		`echo '##vso[task.settaskvariable variable=tv]tval'`,
		`echo '##vso[task.prependpath]/opt/first'`, `echo '##vso[task.prependpath]/opt/second'`,
		`printf '##vso[task.uploadfile]%s\n' "$PWD/f1.txt"`,
		`printf '##vso[task.addattachment type=myType;name=myName]%s\n' "$PWD/f2.bin"`,
		`printf '##vso[task.uploadsummary]%s\n' "$PWD/f3.md"`,
		`printf '##vso[build.uploadlog]%s\n' "$PWD/f4.log"`,
		`printf '##vso[build.uploadsummary]%s\n' "$PWD/f5.md"`,
		`echo '##vso[task.setendpoint id=` + svc + `;field=authParameter;key=password]new-endpoint-secret-77'`,
		`echo '##vso[task.setendpoint id=` + svc + `;field=url]https://127.0.0.1:9/moved'`,
		`echo '##vso[build.updatebuildnumber]1.2.3'`,
		`echo '##vso[build.addbuildtag]mytag'`,
		`echo '##vso[telemetry.publish area=a;feature=f]{}'`,
		`echo '##vso[results.publish type=JUnit;resultFiles=x.xml]'`,
		`echo '##vso[results.publishtoevidencestore testrunner=x]'`,
		`echo '##vso[codecoverage.publish codecoveragetool=Cobertura;summaryfile=x.xml]'`,
		`echo '##vso[nosuch.cmd]x'`,
		`echo '##vso[tasksetvariable]x'`,
		`echo 'not a ##vso command'`,
		`echo '##VSO[task.setvariable variable=upper]x'`,
	}, "\n")
	failing := map[int]struct {
		script string
		errors []string
	}{
		1: {`echo '##vso[task.bogus]x'`, []string{
			"Unable to process command '##vso[task.bogus]x' successfully. " + docLink,
			"##vso[task.bogus] is not a recognized command for task command extension. " + docLink + "."}},
		2: {`echo '##vso[artifact.upload artifactname=drop]/tmp/x'`, []string{
			"Unable to process command '##vso[artifact.upload artifactname=drop]/tmp/x' successfully. " + docLink}},
		3: {`echo '##vso[release.updatereleasename]r1'`, []string{"release commands are not supported for Build flow. " + docLink}},
		4: {`echo '##vso[task.setvariable]novar'`, []string{
			"Unable to process command '##vso[task.setvariable]novar' successfully. " + docLink,
			"Required field 'variable' is missing in ##vso[task.setvariable] command."}},
		6: {`echo '##vso[artifact.associate artifactname=drop;artifacttype=container]#/1/drop'`, []string{
			"Unable to process command '##vso[artifact.associate artifactname=drop;artifacttype=container]#/1/drop' successfully. " + docLink}},
		5: {`echo '##vso[task.setvariable variable=ml;issecret=true]a%0Ab'`, []string{
			"Unable to process command '##vso[task.setvariable variable=ml;issecret=true]a%0Ab' successfully. " + docLink,
			"Secrets cannot contain multiple lines"}},
	}
	specs := []stepSpec{{name: "cmds", script: cmds}}
	for i := 1; i <= len(failing); i++ {
		specs = append(specs, stepSpec{script: failing[i].script, continueOnError: true})
	}
	specs = append(specs, stepSpec{name: "after", condition: "always()", script: strings.Join([]string{
		`echo "V1=$V1 UPPER=${UPPER:-unset} BN=$BUILD_BUILDNUMBER"`,
		`echo "PATH=$PATH"`,
		`echo "secret new-endpoint-secret-77"`,
	}, "\n")})
	m := emuMessage(map[string]wire.VariableValue{"system.debug": {Value: "true"}, "build.buildId": {Value: "5", IsReadonly: true}}, specs...)
	m.Resources.Endpoints = append(m.Resources.Endpoints, wire.ServiceEndpoint{
		ID: svc, Name: "svc", Type: "generic", URL: "https://127.0.0.1:9/svc",
		Authorization: wire.EndpointAuth{Scheme: "UsernamePassword", Parameters: map[string]string{"username": "svc-user-name", "password": "old-password-1234"}},
	})
	j := l.queue(m)
	if res := l.wait(j); res != "succeededWithIssues" {
		t.Fatalf("result %s", res)
	}

	r := record(t, j, stepID(0))
	if result(r) != "succeeded" {
		t.Errorf("commands step %s", result(r))
	}
	log := logMessages(j, stepID(0))
	for _, want := range []string{
		"##[group]Title", "inside", "##[endgroup]", "##[error]not an issue", "##[warning]nor this", "##[section]plain",
		"##[debug]dbg message",
		"##[debug]Processed: ##vso[task.setvariable variable=v1]val1",
		"##vso[tasksetvariable]x", "not a ##vso command", "##VSO[task.setvariable variable=upper]x",
		// The Build service calls, awaited when the step ends.
		"##[section]Async Command Start: Update Build Number", "Update build number to 1.2.3 for build 5",
		"##[section]Async Command End: Update Build Number",
		"##[section]Async Command Start: Add Build Tag", "Build '5' has following tags now: mytag",
		"##[section]Async Command End: Add Build Tag",
	} {
		if !hasLine(log, want) {
			t.Errorf("commands log lacks %q", want)
		}
	}
	// task.logdetail writes nothing to the log: it makes a detail record.
	if _, recs, _ := j.DetailTimeline(stepID(0)); len(recs) != 1 || str(recs[0].Name) != "detail" || str(recs[0].CurrentOperation) != "detail text" || hasLine(log, "detail detail text") {
		t.Errorf("task.logdetail: detail records %+v", recs)
	}
	for _, l := range log {
		if strings.Contains(l, "##[debug]Processed: ##vso[task.debug]") {
			t.Error("task.debug was traced as processed")
		}
	}
	warnings := issues(r, "warning")
	wantWarnings := []string{
		"a.go(3,4): warning W1: careful",
		"##vso[telemetry.publish] was ignored", "##vso[results.publish] was ignored",
		"##vso[results.publishtoevidencestore] was ignored", "##vso[codecoverage.publish] was ignored",
		"Cannot find command extension for ##vso[nosuch.command]. " + docLink,
		"'##vso[tasksetvariable]x' contains logging command keyword '##vso', but it's not a legal command.",
		"'not a ##vso command' contains logging command keyword '##vso', but it's not a legal command.",
	}
	if num(r.WarningCount) != len(wantWarnings) {
		t.Errorf("%d warnings, want %d: %q", num(r.WarningCount), len(wantWarnings), warnings)
	}
	for _, w := range wantWarnings {
		found := false
		for _, got := range warnings {
			found = found || strings.HasPrefix(got, w)
		}
		if !found {
			t.Errorf("no warning starting %q in %q", w, warnings)
		}
	}
	if e := issues(r, "error"); len(e) != 1 || e[0] != "bad thing" {
		t.Errorf("errors %q: only task.issue makes one", e)
	}
	if str(r.CurrentOperation) != "halfway" || num(r.PercentComplete) != 100 {
		t.Errorf("progress %d %q", num(r.PercentComplete), str(r.CurrentOperation))
	}
	for i := 1; i <= len(failing); i++ {
		f := failing[i]
		r := record(t, j, stepID(i))
		if result(r) != "succeededWithIssues" {
			t.Errorf("%s: step %s, want a failure turned succeededWithIssues", f.script, result(r))
		}
		got := issues(r, "error")
		if len(got) < len(f.errors) || strings.Join(got[:len(f.errors)], "\n") != strings.Join(f.errors, "\n") {
			t.Errorf("%s: errors\n%q\nwant\n%q", f.script, got, f.errors)
		}
	}
	after := logMessages(j, stepID(len(failing)+1))
	for _, want := range []string{"V1=val1 UPPER=unset BN=1.2.3", "secret ***"} {
		if !hasLine(after, want) {
			t.Errorf("last step log lacks %q:\n%s", want, strings.Join(after, "\n"))
		}
	}
	pathOK := false
	for _, a := range after {
		pathOK = pathOK || strings.HasPrefix(a, "PATH=/opt/second:/opt/first:")
	}
	if !pathOK {
		t.Errorf("prepended PATH, most recent first, missing:\n%s", strings.Join(after, "\n"))
	}
	want := map[string]string{
		"DistributedTask.Core.FileAttachment/f1.txt": "content of f1.txt\n",
		"myType/myName":                          "content of f2.bin\n",
		"DistributedTask.Core.Summary/f3.md":     "content of f3.md\n",
		"DistributedTask.Core.Log/CustomToolLog": "content of f4.log\n",
		"DistributedTask.Core.Summary/f5.md":     "content of f5.md\n",
	}
	got := map[string]string{}
	for _, a := range j.Attachments() {
		got[a.Type+"/"+a.Name] = string(a.Data)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attachments\n%v\nwant\n%v", got, want)
	}
	if b, ok := j.Build(); !ok || b.Number != "1.2.3" || strings.Join(b.Tags, ",") != "mytag" {
		t.Errorf("the emulator's build: %+v %v", b, ok)
	}
	l.checkViolations()
}

// TestEmulatorRestrictions: a step with target commands: restricted runs
// only the commands allowed in restricted mode; settableVariables limits
// what it may set (including PATH through prependpath).
func TestEmulatorRestrictions(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	j := l.queue(emuMessage(nil,
		stepSpec{name: "restricted", target: &wire.StepTarget{Commands: "restricted"}, script: strings.Join([]string{
			`echo x > "$AGENT_TEMPDIRECTORY/f"`,
			`printf '##vso[task.addattachment type=t;name=n]%s\n' "$AGENT_TEMPDIRECTORY/f"`,
			`printf '##vso[task.uploadfile]%s\n' "$AGENT_TEMPDIRECTORY/f"`,
			`echo '##vso[build.addbuildtag]t'`,
			`echo '##vso[task.setvariable variable=rv]allowed'`,
			`echo '##vso[task.prependpath]/opt/r'`,
		}, "\n")},
		stepSpec{name: "settable", target: &wire.StepTarget{SettableVariables: &wire.SettableVariables{Allowed: []string{"ok*", "exact"}}}, script: strings.Join([]string{
			`echo '##vso[task.setvariable variable=okvar]1'`,
			`echo '##vso[task.setvariable variable=EXACT]2'`,
			`echo '##vso[task.setvariable variable=other]3'`,
			`echo '##vso[task.prependpath]/opt/s'`,
		}, "\n")},
		stepSpec{script: `echo "RV=$RV OK=$OKVAR EXACT=$EXACT OTHER=${OTHER:-unset}"; echo "PATH=$PATH"`},
	))
	if res := l.wait(j); res != "succeeded" {
		t.Fatalf("result %s", res)
	}
	notAllowed := func(c string) string {
		return "##vso[" + c + "] is not allowed in this step due to policy restrictions. " + docLink
	}
	w := issues(record(t, j, stepID(0)), "warning")
	if strings.Join(w, "\n") != strings.Join([]string{notAllowed("task.addattachment"), notAllowed("task.uploadfile"), notAllowed("build.addbuildtag")}, "\n") {
		t.Errorf("restricted warnings %q", w)
	}
	if len(j.Attachments()) != 0 {
		t.Errorf("a restricted step uploaded %d attachments", len(j.Attachments()))
	}
	w = issues(record(t, j, stepID(1)), "warning")
	if strings.Join(w, "\n") != "Setting variable 'other' has been disabled by the task or build definition.\nSetting variable 'PATH' has been disabled by the task or build definition." {
		t.Errorf("settable warnings %q", w)
	}
	out := logMessages(j, stepID(2))
	if !hasLine(out, "RV=allowed OK=1 EXACT=2 OTHER=unset") {
		t.Errorf("log:\n%s", strings.Join(out, "\n"))
	}
	pathOK := false
	for _, a := range out {
		pathOK = pathOK || strings.HasPrefix(a, "PATH=/opt/r:") && !strings.Contains(a, "/opt/s")
	}
	if !pathOK {
		t.Errorf("PATH: the restricted step may prepend, the settable one may not:\n%s", strings.Join(out, "\n"))
	}
}

// TestEmulatorReadOnlyVariables: a read-only variable (flagged in the
// message, or a system variable) set by a step draws the official warning
// and is overwritten, unless agent.readOnlyVariables is true: then the
// command fails the step and the value stays (TaskSetVariableCommand).
func TestEmulatorReadOnlyVariables(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{agents: 2})
	steps := []stepSpec{
		{script: "echo '##vso[task.setvariable variable=locked]changed'", continueOnError: true},
		{script: "echo '##vso[task.setvariable variable=Build.SourcesDirectory]/x'", continueOnError: true},
		{script: `echo "locked=$LOCKED src=$BUILD_SOURCESDIRECTORY"`},
	}
	warn := l.queue(emuMessage(map[string]wire.VariableValue{"locked": {Value: "orig", IsReadonly: true}}, steps...))
	strict := l.queue(emuMessage(map[string]wire.VariableValue{"locked": {Value: "orig", IsReadonly: true}, "agent.readOnlyVariables": {Value: "true"}}, steps...))
	if res := l.wait(warn); res != "succeeded" {
		t.Errorf("warning mode: %s", res)
	}
	if res := l.wait(strict); res != "succeededWithIssues" {
		t.Errorf("strict mode: %s", res)
	}
	for i, name := range []string{"locked", "Build.SourcesDirectory"} {
		w := issues(record(t, warn, stepID(i)), "warning")
		if len(w) != 1 || w[0] != fmt.Sprintf("Overwriting readonly variable '%s'. This behavior will be disabled in the future. See https://github.com/microsoft/azure-pipelines-yaml/blob/master/design/readonly-variables.md for details.", name) {
			t.Errorf("warning mode, %s: %q", name, w)
		}
		e := issues(record(t, strict, stepID(i)), "error")
		if len(e) != 2 || e[1] != fmt.Sprintf("Overwriting readonly variable '%s' is not permitted. See https://github.com/microsoft/azure-pipelines-yaml/blob/master/design/readonly-variables.md for details.", name) {
			t.Errorf("strict mode, %s: %q", name, e)
		}
	}
	if !hasLine(logMessages(warn, stepID(2)), "locked=changed src=/x") {
		t.Errorf("warning mode log:\n%s", logText(warn, stepID(2)))
	}
	found := false
	for _, line := range logMessages(strict, stepID(2)) {
		found = found || strings.HasPrefix(line, "locked=orig src=/") && !strings.HasSuffix(line, "src=/x")
	}
	if !found {
		t.Errorf("strict mode log:\n%s", logText(strict, stepID(2)))
	}
}

// TestEmulatorEnvironmentAndMacros: the step environment (worker.md §2.8)
// and $(macro) expansion: recursive among the message's variables with the
// official cycle and depth warnings, single-pass for inputs and env.
func TestEmulatorEnvironmentAndMacros(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	vars := map[string]wire.VariableValue{
		"my.var": {Value: "v1"}, "Mixed.Case": {Value: "mc"}, "with space": {Value: "ws"},
		"sec": {Value: "hidden-value-123", IsSecret: true}, "uses.sec": {Value: "pre-$(sec)"},
		"a": {Value: "$(b)"}, "b": {Value: "$(c)"}, "c": {Value: "deep"},
		"p": {Value: "$("}, "q": {Value: "c)"},
		"x": {Value: "$(y)"}, "y": {Value: "$(x)"},
		"odd": {Value: "$(unknown $(c))"},
	}
	// v0 → v1 → … → v50: expanding v0 needs 50 nested levels.
	for i := range 50 {
		vars[fmt.Sprintf("v%d", i)] = wire.VariableValue{Value: fmt.Sprintf("$(v%d)", i+1)}
	}
	vars["v50"] = wire.VariableValue{Value: "end"}
	j := l.queue(emuMessage(vars, stepSpec{
		env: map[string]string{"MY_VAR": "fromenv", "MAPPED": "$(sec)", "PLAINMAP": "$(a)", "NONREC": "$(p)$(q)"},
		script: strings.Join([]string{
			`echo "MY_VAR=$MY_VAR MIXED=$MIXED_CASE SPACE=$WITH_SPACE"`,
			`echo "SEC=${SEC:-unset} USES_SEC=${USES_SEC:-unset} MAPPED=$MAPPED"`,
			`echo "A=$A X=$X V0=$V0 V1=$V1 ODD=$ODD"`,
			`echo 'macro=$(a) nonrec=$(p)$(q) unknown=$(nope) depth=$(v1)'`,
			`echo "PLAINMAP=$PLAINMAP NONREC=$NONREC TF=$TF_BUILD"`,
		}, "\n"),
	}))
	if res := l.wait(j); res != "succeeded" {
		t.Fatalf("result %s", res)
	}
	want := []string{
		"MY_VAR=v1 MIXED=mc SPACE=ws",
		"SEC=unset USES_SEC=unset MAPPED=***",
		"A=deep X=$(y) V0=$(v1) V1=end ODD=$(unknown deep)",
		"macro=deep nonrec=$(c) unknown=$(nope) depth=end",
		"PLAINMAP=deep NONREC=$(c) TF=True",
	}
	got := logMessages(j, stepID(0))
	for _, w := range want {
		if !hasLine(got, w) {
			t.Errorf("log lacks %q", w)
		}
	}
	expansion := []string{
		"Unable to expand variable 'v0'. The max expansion depth (50) was exceeded.",
		"Unable to expand variable 'x'. A cyclical reference was detected.",
		"Unable to expand variable 'y'. A cyclical reference was detected.",
	}
	// The official worker gives them at initialization and again before each
	// step (StepsRunner recalculates the variables).
	init := taskRecords(j)[0]
	if w := issues(init, "warning"); strings.Join(w, "\n") != strings.Join(expansion, "\n") {
		t.Errorf("Initialize job warnings %q", w)
	}
	if w := issues(record(t, j, stepID(0)), "warning"); strings.Join(w, "\n") != strings.Join(expansion, "\n") {
		t.Errorf("step warnings %q", w)
	}
	if t.Failed() {
		t.Logf("log:\n%s", strings.Join(got, "\n"))
	}
}

package jobs_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// TestEmulatorResultMatrix runs jobs through the emulator and checks every
// step result, the job result the service received, the records' state
// transitions and order numbers, issues and counts, and log links.
func TestEmulatorResultMatrix(t *testing.T) {
	t.Parallel()
	type tcase struct {
		name  string
		vars  map[string]wire.VariableValue
		steps []stepSpec
		job   string
		want  []string // per step; "" = the step has no record
		check func(t *testing.T, j *devserver.Job)
	}
	retryScript := `f=$AGENT_TEMPDIRECTORY/count; n=$(cat $f 2>/dev/null || echo 0); echo $((n+1)) > $f; echo "attempt $n"; [ $n -ge 2 ]`
	cases := []tcase{
		{name: "all succeed", steps: []stepSpec{{script: "echo a"}, {script: "echo b"}},
			job: "succeeded", want: []string{"succeeded", "succeeded"},
			check: func(t *testing.T, j *devserver.Job) {
				// The live console got each step's lines, under its step id.
				for i, want := range []string{"a", "b"} {
					if !hasLine(j.Feed(stepID(i)), want) {
						t.Errorf("feed of step %d: %q", i, j.Feed(stepID(i)))
					}
				}
			}},
		{name: "failure skips the rest", steps: []stepSpec{{script: "exit 3"}, {script: "echo b"}},
			job: "failed", want: []string{"failed", "skipped"},
			check: func(t *testing.T, j *devserver.Job) {
				r := record(t, j, stepID(0))
				if e := issues(r, "error"); len(e) != 1 || e[0] != "Bash exited with code '3'." || num(r.ErrorCount) != 1 {
					t.Errorf("errors %d %q", num(r.ErrorCount), e)
				}
				s := record(t, j, stepID(1))
				if str(s.ResultCode) != "Skipping step due to condition evaluation." || !strings.Contains(logText(j, stepID(1)), "Skipping step due to condition evaluation.") {
					t.Errorf("skipped step: code %q log:\n%s", str(s.ResultCode), logText(j, stepID(1)))
				}
			}},
		{name: "continueOnError", steps: []stepSpec{{script: "exit 1", continueOnError: true}, {script: "echo b"}},
			job: "succeededWithIssues", want: []string{"succeededWithIssues", "succeeded"}},
		{name: "always runs after failure", steps: []stepSpec{{script: "exit 1"}, {script: "echo b", condition: "always()"}},
			job: "failed", want: []string{"failed", "succeeded"}},
		{name: "status functions after failure", steps: []stepSpec{
			{script: "exit 1"}, {script: "echo f", condition: "failed()"}, {script: "echo s", condition: "succeeded()"},
			{script: "echo sf", condition: "succeededOrFailed()"}, {script: "echo c", condition: "canceled()"}},
			job: "failed", want: []string{"failed", "succeeded", "skipped", "succeeded", "skipped"}},
		{name: "conditions on variables", vars: map[string]wire.VariableValue{"Build.Reason": {Value: "IndividualCI"}, "my.flag": {Value: "Yes"}, "short": {Value: "1.2.3"}},
			steps: []stepSpec{
				{script: "echo manual", condition: "eq(variables['Build.Reason'], 'Manual')"},
				{script: "echo flag", condition: "and(succeeded(), eq(variables['my.flag'], 'yes'), ge(variables.short, '1.2'), in(variables['build.reason'], 'IndividualCI', 'BatchedCI'))"}},
			job: "succeeded", want: []string{"skipped", "succeeded"}},
		{name: "unparsable condition fails the job at initialization", steps: []stepSpec{{script: "echo a"}, {script: "echo b", condition: "eq(1,"}},
			job: "failed", want: []string{"", ""},
			check: func(t *testing.T, j *devserver.Job) {
				recs := taskRecords(j)
				if len(recs) != 1 || str(recs[0].Name) != "Initialize job" || result(recs[0]) != "failed" {
					t.Fatalf("want only a failed Initialize job record, got %d records", len(recs))
				}
				if e := issues(recs[0], "error"); len(e) != 1 || !strings.Contains(e[0], "CmdLine1") {
					t.Errorf("initialization error does not name the step: %q", e)
				}
			}},
		{name: "task.complete Failed", steps: []stepSpec{{script: "echo '##vso[task.complete result=Failed;]done'"}},
			job: "failed", want: []string{"failed"}},
		{name: "task.complete SucceededWithIssues", steps: []stepSpec{{script: "echo '##vso[task.complete result=SucceededWithIssues;]'"}, {script: "echo b"}},
			job: "succeededWithIssues", want: []string{"succeededWithIssues", "succeeded"}},
		{name: "unsupported task", steps: []stepSpec{{task: &wire.TaskReference{ID: "e28912f1-0114-4464-802a-a3a35437fd16", Name: "CopyFiles", Version: "2.211.0"}, inputs: map[string]string{}}},
			job: "failed", want: []string{"failed"},
			check: func(t *testing.T, j *devserver.Job) {
				e := issues(record(t, j, stepID(0)), "error")
				if len(e) != 1 || !strings.Contains(e[0], "CopyFiles@2.211.0") || !strings.Contains(e[0], "e28912f1-0114-4464-802a-a3a35437fd16") || !strings.Contains(e[0], "CmdLine@2") {
					t.Errorf("error does not name the task, version, id and what runs natively: %q", e)
				}
			}},
		{name: "retries with the official delays", steps: []stepSpec{{script: retryScript, retries: 3}},
			job: "succeeded", want: []string{"succeeded"},
			check: func(t *testing.T, j *devserver.Job) {
				w := issues(record(t, j, stepID(0)), "warning")
				want := []string{
					"RetryHelper encountered task failure, will retry (attempt #: 1 out of 3) after 1000 ms",
					"RetryHelper encountered task failure, will retry (attempt #: 2 out of 3) after 4000 ms",
				}
				if strings.Join(w, "\n") != strings.Join(want, "\n") {
					t.Errorf("warnings %q", w)
				}
			}},
		{name: "retries exhausted", steps: []stepSpec{{script: "exit 1", retries: 1}},
			job: "failed", want: []string{"failed"},
			check: func(t *testing.T, j *devserver.Job) {
				r := record(t, j, stepID(0))
				if num(r.ErrorCount) != 2 || num(r.WarningCount) != 1 {
					t.Errorf("errors %d warnings %d, want one failure per attempt and one retry warning", num(r.ErrorCount), num(r.WarningCount))
				}
			}},
		{name: "retry count capped at 10", steps: []stepSpec{{script: "echo ok", retries: 11}},
			job: "succeeded", want: []string{"succeeded"},
			check: func(t *testing.T, j *devserver.Job) {
				w := issues(record(t, j, stepID(0)), "warning")
				if len(w) != 1 || w[0] != "The maximum allowed number of attempts is 10 but got 11. Retry attempts count will be decreased to 10." {
					t.Errorf("warnings %q", w)
				}
			}},
		{name: "timeoutInMinutes", steps: []stepSpec{{script: "echo started; sleep 600", timeoutMinutes: 1}, {script: "echo after", condition: "always()"}},
			job: "failed", want: []string{"failed", "succeeded"},
			check: func(t *testing.T, j *devserver.Job) {
				e := issues(record(t, j, stepID(0)), "error")
				if len(e) == 0 || e[len(e)-1] != "The task has timed out." {
					t.Errorf("errors %q", e)
				}
			}},
		{name: "enabled false", steps: []stepSpec{{script: "exit 1", disabled: true}, {script: "echo b"}},
			job: "succeeded", want: []string{"", "succeeded"}},
		{name: "agent.jobstatus", steps: []stepSpec{{script: "exit 1", continueOnError: true},
			{script: `echo "status=$AGENT_JOBSTATUS"; env | grep '^agent.jobstatus='`}},
			job: "succeededWithIssues", want: []string{"succeededWithIssues", "succeeded"},
			check: func(t *testing.T, j *devserver.Job) {
				log := logText(j, stepID(1))
				if !strings.Contains(log, " status=SucceededWithIssues") || !strings.Contains(log, " agent.jobstatus=SucceededWithIssues") {
					t.Errorf("log:\n%s", log)
				}
			}},
	}

	if testing.Short() {
		// The timeout case takes the minute timeoutInMinutes: 1 means.
		cases = slices.DeleteFunc(cases, func(c tcase) bool { return c.name == "timeoutInMinutes" })
	}
	// One agent per job: the listener drops a job request that arrives
	// while it is still winding down the previous job (see the report), so
	// no agent here runs two jobs.
	l := newLab(t, labOptions{agents: len(cases)})
	jobsByCase := make([]*devserver.Job, len(cases))
	for i, c := range cases {
		jobsByCase[i] = l.queue(emuMessage(c.vars, c.steps...))
	}
	var wg sync.WaitGroup
	results := make([]string, len(cases))
	for i := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = l.wait(jobsByCase[i])
		}()
	}
	wg.Wait()

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := jobsByCase[i]
			if results[i] != c.job {
				t.Errorf("emulator job result = %s, want %s", results[i], c.job)
			}
			if ev := j.Events(); len(ev) != 1 || ev[0].Name != "JobCompleted" || ev[0].Result != c.job {
				t.Errorf("plan events %+v", ev)
			}
			jr := record(t, j, j.ID())
			if result(jr) != c.job || state(jr) != "completed" {
				t.Errorf("job record %s/%s", state(jr), result(jr))
			}
			for k, want := range c.want {
				if want == "" {
					if hasRecord(j, stepID(k)) {
						t.Errorf("step %d has a record", k)
					}
					continue
				}
				r := record(t, j, stepID(k))
				if state(r) != "completed" || result(r) != want {
					t.Errorf("step %d: %s/%s, want completed/%s\n%s", k, state(r), result(r), want, logText(j, stepID(k)))
				}
				if r.Log == nil || r.Log.Id == nil {
					t.Errorf("step %d links no log", k)
				}
				if e, w := issues(r, "error"), issues(r, "warning"); len(e) != num(r.ErrorCount) || len(w) != num(r.WarningCount) {
					t.Errorf("step %d: counts %d/%d for %d errors and %d warnings", k, num(r.ErrorCount), num(r.WarningCount), len(e), len(w))
				}
			}
			checkRecordOrder(t, j, c.want)
			states := recordStates(t, l.srv, j.PlanID())
			for _, r := range j.Timeline() {
				want := "pending inProgress completed"
				switch {
				case *r.Type == "Job":
					want = "inProgress completed"
				case result(r) == "skipped":
					// Started and completed at once: the official queue
					// merges the two updates into one.
					want = "pending completed"
					if r.StartTime == nil || r.FinishTime == nil {
						t.Errorf("skipped record %q lacks its start or finish time", str(r.Name))
					}
				}
				if got := strings.Join(states[strings.ToLower(r.Id.String())], " "); got != want {
					t.Errorf("record %q went %s, want %s", str(r.Name), got, want)
				}
			}
			if v := j.Violations(); len(v) > 0 {
				t.Errorf("violations: %q", v)
			}
			if c.check != nil {
				c.check(t, j)
			}
		})
	}
	l.checkViolations()
}

// checkRecordOrder checks the Task records' order numbers: Initialize job
// first, the steps that have records in message order, Finalize Job last
// (absent when initialization failed).
func checkRecordOrder(t *testing.T, j *devserver.Job, want []string) {
	t.Helper()
	recs := taskRecords(j)
	var names []string
	for i, r := range recs {
		if num(r.Order) != i+1 {
			t.Errorf("record %q has order %d, want %d", str(r.Name), num(r.Order), i+1)
		}
		names = append(names, str(r.Name))
	}
	exp := []string{"Initialize job"}
	initFailed := true
	for k, w := range want {
		if w != "" {
			exp = append(exp, "CmdLine"+string(rune('0'+k)))
			initFailed = false
		}
	}
	if !initFailed {
		exp = append(exp, "Finalize Job")
	}
	if strings.Join(names, ",") != strings.Join(exp, ",") {
		t.Errorf("records %q, want %q", names, exp)
	}
}

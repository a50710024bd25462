package jobs_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/wire"
)

// detailIDs are record ids for the logdetail tests.
const (
	dParent = "3f0c6a1e-6a6b-4d49-9a3e-0d4d7e6c2a10"
	dChild  = "7b1e9c2d-1111-4222-8333-444455556666"
	dOther  = "9a8b7c6d-0000-4000-8000-00000000000a"
)

func (m *memReporter) detailUpdates() []detailUpdate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]detailUpdate(nil), m.details...)
}

func (m *memReporter) historyLen(n int) []jobs.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]jobs.Record(nil), m.history[:n]...)
}

// TestLogDetailValidation: what TaskDetailCommand refuses up front fails the
// step with the official messages; the tracker spans the job.
func TestLogDetailValidation(t *testing.T) {
	t.Parallel()
	const p = "##vso[task.logdetail "
	cases := []struct {
		name   string
		script []string // the last line is the one that fails, or none does
		err    string   // "" when every line succeeds
	}{
		{"no id", []string{p + "name=a;type=t]x"}, "Value cannot be null. (Parameter 'Can't update timeline record, timeline record id is not provided.')"},
		{"zero id", []string{p + "id=00000000-0000-0000-0000-000000000000;name=a;type=t]x"}, "Value cannot be null. (Parameter 'Can't update timeline record, timeline record id is not provided.')"},
		{"id not a GUID", []string{p + "id=xyz;name=a;type=t]x"}, "Unrecognized Guid format."},
		{"id with misplaced dashes", []string{p + "id=3f0c6a1e6-a6b-4d49-9a3e-0d4d7e6c2a10;name=a;type=t]x"}, "Dashes are in the wrong position for GUID parsing."},
		{"id with a non-hex digit", []string{p + "id=3f0c6a1e-6a6b-4d49-9a3e-0d4d7e6c2a1z;name=a;type=t]x"}, "Guid string should only contain hexadecimal characters."},
		{"parent id not a GUID", []string{p + "id=11111111-0000-4000-8000-000000000001;parentid=zz;name=a;type=t]x"}, "Unrecognized Guid format."},
		// An empty value is no property at all (Command.TryParse drops it).
		{"empty id", []string{p + "id=;name=a;type=t]x"}, "Value cannot be null. (Parameter 'Can't update timeline record, timeline record id is not provided.')"},
		{"new record without name", []string{p + "id=11111111-0000-4000-8000-000000000002;type=t]x"}, "Value cannot be null. (Parameter 'Name is required for this new timeline record.')"},
		{"new record without type", []string{p + "id=11111111-0000-4000-8000-000000000003;name=a]x"}, "Value cannot be null. (Parameter 'Type is required for this new timeline record.')"},
		{"parent not created", []string{p + "id=11111111-0000-4000-8000-000000000004;parentid=11111111-0000-4000-8000-0000000000ff;name=a;type=t]x"},
			"Value cannot be null. (Parameter 'Parent timeline record has not been created for this new timeline record.')"},
		{"parent changed", []string{
			p + "id=22222222-0000-4000-8000-000000000001;name=a;type=t]",
			p + "id=22222222-0000-4000-8000-000000000002;name=b;type=t]",
			p + "id=22222222-0000-4000-8000-000000000003;parentid=22222222-0000-4000-8000-000000000001;name=c;type=t]",
			p + "id=22222222-0000-4000-8000-000000000003;parentid=22222222-0000-4000-8000-000000000002]",
		}, "Can't change parent timeline record of an existing timeline record."},
		{"parent given to a record created without one", []string{
			p + "id=33333333-0000-4000-8000-000000000001;name=a;type=t]",
			p + "id=33333333-0000-4000-8000-000000000001;parentid=22222222-0000-4000-8000-000000000001]",
		}, "Can't change parent timeline record of an existing timeline record."},
		{"Job record", []string{p + "id=44444444-0000-4000-8000-000000000001;name=a;type=Job]"}, "Specified argument was out of the range of valid values. (Parameter 'record')"},
		// Valid: the zero parent needs no record; the same parent again is
		// no change; a record another step created needs no name; the
		// Job check is case-sensitive.
		{"valid", []string{
			p + "id=55555555-0000-4000-8000-000000000001;parentid=00000000-0000-0000-0000-000000000000;name=a;type=t]",
			p + "id=55555555-0000-4000-8000-000000000001;parentid=00000000-0000-0000-0000-000000000000;progress=5]",
			p + "id=22222222-0000-4000-8000-000000000003;parentid=22222222-0000-4000-8000-000000000001;progress=7]",
			p + "id={55555555-0000-4000-8000-000000000002};parentid=22222222000040008000000000000001;name=b;type=job]",
		}, ""},
	}
	var specs []stepSpec
	for _, c := range cases {
		var lines []string
		for _, l := range c.script {
			lines = append(lines, "echo '"+l+"'")
		}
		specs = append(specs, stepSpec{name: strings.ReplaceAll(c.name, " ", "_"), script: strings.Join(lines, "\n"), continueOnError: true})
	}
	res, rep := run(t, newRunner(t), message(nil, specs...))
	if res != jobs.ResultSucceededWithIssues {
		t.Fatalf("job result %s", res)
	}
	for i, c := range cases {
		r := rep.rec(stepID(i))
		var errs []string
		for _, is := range r.Issues {
			if is.Type == "error" {
				errs = append(errs, is.Message)
			}
		}
		if c.err == "" {
			if len(errs) != 0 || r.Result != jobs.ResultSucceeded {
				t.Errorf("%s: result %s, errors %q", c.name, r.Result, errs)
			}
			continue
		}
		want := []string{
			"Unable to process command '" + c.script[len(c.script)-1] + "' successfully. " + docLink,
			c.err,
		}
		if strings.Join(errs, "\n") != strings.Join(want, "\n") || r.Result != jobs.ResultSucceededWithIssues {
			t.Errorf("%s: result %s, errors\n%q\nwant\n%q", c.name, r.Result, errs, want)
		}
	}
}

// TestLogDetailMerge: a step's detail records are merged field by field,
// the step record names the detail timeline before its first record, the
// records are completed when the step ends, nothing reaches the log, and a
// later step has a timeline of its own while the job's tracker still knows
// the records.
func TestLogDetailMerge(t *testing.T) {
	t.Parallel()
	const p = "##vso[task.logdetail "
	first := strings.Join([]string{
		"echo '" + p + "id=" + dParent + ";name=Parent;type=build;order=1;starttime=2025-01-02T04:04:05+01:00]starting'",
		"echo '" + p + "id=" + dChild + ";parentid=" + dParent + ";name=Child;type=test;progress=150;order=x]child op'",
		"echo '" + p + "id=" + dChild + ";progress=40;state=Bogus]'",
		"echo '" + p + "id=" + dParent + ";state=Completed;result=FAILED;progress=-3]'",
		"echo '" + p + "id=" + dOther + ";name=Other;type=t;state=Completed;finishtime=not-a-time;result=nonsense]'",
		"echo plain output",
	}, "\n")
	second := "echo '" + p + "id=" + dChild + ";progress=60]second step'"
	before := time.Now().UTC()
	res, rep := run(t, newRunner(t), message(nil,
		stepSpec{name: "first", script: first},
		stepSpec{name: "second", script: second},
	))
	after := time.Now().UTC()
	if res != jobs.ResultSucceeded {
		t.Fatalf("job result %s\n%s", res, rep.all())
	}
	if log := rep.log(stepID(0)); strings.Contains(log, "starting") || strings.Contains(log, "child op") || !strings.Contains(log, "plain output") {
		t.Errorf("step log:\n%s", log)
	}
	ups := rep.detailUpdates()
	byTL := map[string][]detailUpdate{}
	var tls []string
	for _, u := range ups {
		if byTL[u.timeline] == nil {
			tls = append(tls, u.timeline)
		}
		byTL[u.timeline] = append(byTL[u.timeline], u)
	}
	if len(tls) != 2 {
		t.Fatalf("detail timelines %q, want one per step", tls)
	}
	for i, tl := range tls {
		step := rep.rec(stepID(i))
		if step.Details != tl {
			t.Errorf("step %d names detail timeline %q, its records went to %q", i, step.Details, tl)
		}
		// The step record naming the timeline was published before the
		// timeline's first record.
		named := false
		for _, r := range rep.historyLen(byTL[tl][0].after) {
			named = named || (r.ID == stepID(i) && r.Details == tl)
		}
		if !named {
			t.Errorf("step %d: detail record sent before the step record named timeline %s", i, tl)
		}
	}
	last := func(tl, id string) jobs.DetailRecord {
		var out jobs.DetailRecord
		for _, u := range byTL[tl] {
			if u.rec.ID == id {
				out = u.rec
			}
		}
		return out
	}
	inRange := func(tm time.Time) bool {
		return !tm.Before(before.Add(-time.Second)) && !tm.After(after.Add(time.Second))
	}
	pct := func(p *int) int {
		if p == nil {
			return -1
		}
		return *p
	}
	ord := func(p *int) int { return pct(p) }

	parent := last(tls[0], dParent)
	if parent.Name != "Parent" || parent.Type != "build" || ord(parent.Order) != 1 || parent.ParentID != "" ||
		parent.State != jobs.StateCompleted || parent.Result != jobs.ResultFailed || pct(parent.PercentComplete) != 0 ||
		parent.CurrentOperation != "starting" || !parent.StartTime.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) || !inRange(parent.FinishTime) {
		t.Errorf("parent %+v", parent)
	}
	child := last(tls[0], dChild)
	if child.Name != "Child" || child.Type != "test" || child.Order != nil || child.ParentID != dParent ||
		child.State != jobs.StateCompleted || child.Result != jobs.ResultSucceeded || pct(child.PercentComplete) != 40 ||
		child.CurrentOperation != "child op" || !inRange(child.StartTime) || !inRange(child.FinishTime) {
		t.Errorf("child %+v", child)
	}
	other := last(tls[0], dOther)
	if other.State != jobs.StateCompleted || other.Result != jobs.ResultSucceeded || pct(other.PercentComplete) != 100 || !inRange(other.FinishTime) {
		t.Errorf("other %+v", other)
	}
	// The child's intermediate states, in order: created with the progress
	// clamped, updated, then a state the command cannot parse is pending.
	var childStates []string
	for _, u := range byTL[tls[0]] {
		if u.rec.ID == dChild {
			childStates = append(childStates, u.rec.State+"/"+strconv.Itoa(pct(u.rec.PercentComplete)))
		}
	}
	if got := strings.Join(childStates, " "); got != "inProgress/100 pending/40 completed/40" {
		t.Errorf("child updates %s", got)
	}
	// The second step's timeline has the child as the command gave it: no
	// name or type (the tracker knew it), its parent from the tracker.
	c2 := last(tls[1], dChild)
	if c2.Name != "" || c2.Type != "" || c2.ParentID != dParent || pct(c2.PercentComplete) != 60 || c2.CurrentOperation != "second step" ||
		c2.State != jobs.StateCompleted || c2.Result != jobs.ResultSucceeded {
		t.Errorf("second step's child %+v", c2)
	}
}

// TestLogDetailRestricted: logdetail is allowed in restricted mode.
func TestLogDetailRestricted(t *testing.T) {
	t.Parallel()
	res, rep := run(t, newRunner(t), message(nil, stepSpec{
		target: &wire.StepTarget{Commands: "restricted"},
		script: "echo '##vso[task.logdetail id=" + dParent + ";name=n;type=t]op'",
	}))
	if res != jobs.ResultSucceeded {
		t.Fatalf("result %s", res)
	}
	if ups := rep.detailUpdates(); len(ups) != 2 || ups[0].rec.Name != "n" || ups[1].rec.State != jobs.StateCompleted {
		t.Errorf("detail updates %+v", ups)
	}
	if r := rep.rec(stepID(0)); len(r.Issues) != 0 {
		t.Errorf("issues %+v", r.Issues)
	}
}

package localrun

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// consoleRig drives a jobView with a clock the test moves.
type consoleRig struct {
	t     *testing.T
	out   bytes.Buffer
	v     *jobView
	clock time.Time
	job   uuid.UUID
	t0    time.Time
}

func newRig(t *testing.T, color, verbose bool) *consoleRig {
	r := &consoleRig{t: t, job: uuid.New(), clock: time.Unix(1700000000, 0), t0: time.Unix(1700000000, 0)}
	p := &printer{w: &r.out, color: color, mask: func(s string) string { return strings.ReplaceAll(s, "hunter2", "***") }}
	r.v = newJobView(p, r.job.String(), verbose)
	r.v.now = func() time.Time { return r.clock }
	return r
}

// step is a record update of a step: state "pending", "inProgress" or a
// completed result.
func (r *consoleRig) step(id uuid.UUID, order int, name, refName, state string) {
	rec := taskagent.TimelineRecord{Id: &id, ParentId: &r.job, Type: ptr("Task"), Name: &name, RefName: &refName, Order: &order}
	st := taskagent.TimelineRecordState(state)
	switch state {
	case "pending", "inProgress":
	default:
		st = "completed"
		res := taskagent.TaskResult(state)
		rec.Result = &res
		rec.FinishTime = &azuredevops.Time{Time: r.t0.Add(1500 * time.Millisecond)}
	}
	if state != "pending" {
		rec.StartTime = &azuredevops.Time{Time: r.t0}
	}
	rec.State = &st
	r.v.handle(devserver.Event{Kind: devserver.EventRecordUpdated, JobID: r.job.String(), Record: &rec})
}

func (r *consoleRig) lines(step uuid.UUID, lines ...string) {
	r.v.handle(devserver.Event{Kind: devserver.EventFeedLines, JobID: r.job.String(), StepID: step.String(), Lines: lines})
}

func (r *consoleRig) pump(after time.Duration) string {
	r.clock = r.clock.Add(after)
	r.v.pump(false)
	out := r.out.String()
	r.out.Reset()
	return out
}

func (r *consoleRig) final() string {
	r.v.pump(true)
	out := r.out.String()
	r.out.Reset()
	return out
}

func ptr[T any](v T) *T { return &v }

func expectLines(t *testing.T, got string, want ...string) {
	t.Helper()
	g := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if got == "" {
		g = nil
	}
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("console\n got %q\nwant %q", g, want)
	}
}

func TestConsoleKeepsStepsInOrder(t *testing.T) {
	r := newRig(t, false, false)
	a, b := uuid.New(), uuid.New()
	r.step(a, 2, "Build", "build", "pending")
	r.step(b, 3, "Test", "test", "pending")
	// Lines may beat their record: they wait for it.
	r.lines(a, "compiling")
	expectLines(t, r.pump(0))
	r.step(a, 2, "Build", "build", "inProgress")
	expectLines(t, r.pump(0), "▶ Build", "  compiling")
	r.lines(a, "linking", "##[section]Finishing: Build")
	r.step(a, 2, "Build", "build", "succeeded")
	// Completed, but its last lines may still be in flight.
	expectLines(t, r.pump(100*time.Millisecond), "  linking")
	r.lines(a, "late line")
	expectLines(t, r.pump(100*time.Millisecond), "  late line")
	// A line of the next step means the previous one said everything.
	r.step(b, 3, "Test", "test", "inProgress")
	r.lines(b, "testing hunter2")
	expectLines(t, r.pump(0), "✔ succeeded in 1.5s", "▶ Test", "  testing ***")
	r.step(b, 3, "Test", "test", "failed")
	expectLines(t, r.pump(0))
	expectLines(t, r.pump(settleDelay), "✖ failed in 1.5s")
	// Lines after the result are still shown, marked with the step.
	r.lines(b, "straggler")
	expectLines(t, r.pump(0), "  [Test]  straggler")
}

func TestConsoleSkippedAndQuietSteps(t *testing.T) {
	r := newRig(t, false, false)
	init, skip, slow, fin := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	r.step(init, 1, "Initialize job", "JobExtension_Init", "inProgress")
	r.lines(init, "Agent name: 'x'")
	expectLines(t, r.pump(time.Second))
	r.step(init, 1, "Initialize job", "JobExtension_Init", "succeeded")
	expectLines(t, r.pump(0), "✔ Initialize job in 1.5s")

	// A skipped step explains itself; the console says it in one line.
	r.step(skip, 2, "Deploy", "deploy", "inProgress")
	expectLines(t, r.pump(headerDelay/2))
	r.lines(skip, skipNotice, "Evaluating: eq(variables.x, 'y')", "Expanded: eq('a', 'y')", "Result: False")
	r.step(skip, 2, "Deploy", "deploy", "skipped")
	expectLines(t, r.pump(0), "⊘ Deploy — skipped (eq(variables.x, 'y') is false)")

	// A step without output gets its header after a moment.
	r.step(slow, 3, "Sleep", "sleep", "inProgress")
	expectLines(t, r.pump(0))
	expectLines(t, r.pump(headerDelay), "▶ Sleep")
	r.step(slow, 3, "Sleep", "sleep", "succeeded")
	expectLines(t, r.pump(settleDelay), "✔ succeeded in 1.5s")

	// A quiet step that fails shows what it held back.
	r.step(fin, 4, "Finalize Job", "JobExtension_Final", "inProgress")
	r.lines(fin, "##[error]could not clean up")
	r.lines(uuid.MustParse(r.job.String()), "##[section]Finishing: the job")
	r.step(fin, 4, "Finalize Job", "JobExtension_Final", "failed")
	expectLines(t, r.final(), "▶ Finalize Job", "  ##[error]could not clean up", "✖ failed in 1.5s")
}

func TestConsoleVerboseAndFinal(t *testing.T) {
	r := newRig(t, false, true)
	init, stuck := uuid.New(), uuid.New()
	r.step(init, 1, "Initialize job", "JobExtension_Init", "inProgress")
	r.lines(init, "Agent name: 'x'")
	expectLines(t, r.pump(0), "▶ Initialize job", "  Agent name: 'x'")
	r.step(init, 1, "Initialize job", "JobExtension_Init", "succeeded")
	r.step(stuck, 2, "Stuck", "stuck", "inProgress")
	r.lines(stuck, "working")
	expectLines(t, r.pump(0), "✔ succeeded in 1.5s", "▶ Stuck", "  working")
	orphan := uuid.New()
	r.lines(orphan, "a line of an unknown record")
	expectLines(t, r.final(), "  (the step did not report a result)", "  a line of an unknown record")
}

func TestConsoleLineRendering(t *testing.T) {
	plain := &printer{mask: func(s string) string { return s }}
	color := &printer{color: true, mask: func(s string) string { return s }}
	for _, tc := range []struct{ in, plain, color string }{
		{"hello", "  hello", "  hello"},
		{"##[error]boom", "  ##[error]boom", "  " + ansiRed + "Error: boom" + ansiReset},
		{"##[warning]careful", "  ##[warning]careful", "  " + ansiYellow + "Warning: careful" + ansiReset},
		{"##[command]git fetch", "  ##[command]git fetch", "  " + ansiBlue + "git fetch" + ansiReset},
		{"##[group]Details", "  ##[group]Details", "  " + ansiBold + "▸ Details" + ansiReset},
		{"##[endgroup]", "  ##[endgroup]", ""},
		{"Receiving 1%\rReceiving 50%\rReceiving 100%, done.", "  Receiving 100%, done.", "  Receiving 100%, done."},
		{"Receiving 1%\rReceiving 50%\rRecei...", "  Receiving 50%", "  Receiving 50%"},
		{"\r\r", "  ", ""},
	} {
		if got := plain.line(tc.in); got != tc.plain {
			t.Errorf("plain %q = %q, want %q", tc.in, got, tc.plain)
		}
		if got := color.line(tc.in); got != tc.color && !(tc.color == "" && strings.TrimSpace(got) == "") {
			t.Errorf("color %q = %q, want %q", tc.in, got, tc.color)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {42 * time.Millisecond, "42ms"}, {1500 * time.Millisecond, "1.5s"}, {61 * time.Second, "1m01s"}, {2*time.Hour + 5*time.Minute, "2h05m"}} {
		if got := fmtDuration(tc.d); got != tc.want {
			t.Errorf("fmtDuration(%s) = %s, want %s", tc.d, got, tc.want)
		}
	}
	if n := visibleLen(ansiBold + "✔ ok" + ansiReset); n != 4 {
		t.Errorf("visibleLen = %d, want 4", n)
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	p := &printer{w: &b, color: true, mask: func(s string) string { return s }}
	p.table([][]string{{"JOB", "RESULT", ""}, {p.style(ansiBold, "Build"), p.style(ansiGreen, "✔ ok"), ""}, {"", "✖ failed", "note"}})
	want := "  JOB    RESULT\n  " + ansiBold + "Build" + ansiReset + "  " + ansiGreen + "✔ ok" + ansiReset + "\n         ✖ failed  note\n"
	if b.String() != want {
		t.Errorf("table\n%q\nwant\n%q", b.String(), want)
	}
}

package webui

import (
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
)

func TestSettleDropsWhatTheReReadCovered(t *testing.T) {
	feed := func(step string, lines ...string) devserver.Event {
		return devserver.Event{Kind: devserver.EventFeedLines, StepID: step, Lines: lines}
	}
	other := devserver.Event{Kind: devserver.EventJobStarted, JobID: "j"}
	cases := []struct {
		name    string
		read    map[string][]string // what the re-read gave per step
		pending []devserver.Event
		want    []devserver.Event
	}{
		{
			name:    "nothing covered",
			read:    map[string][]string{"s": {"a", "b"}},
			pending: []devserver.Event{feed("s", "c"), other, feed("s", "d")},
			want:    []devserver.Event{feed("s", "c"), other, feed("s", "d")},
		},
		{
			name:    "a prefix covered",
			read:    map[string][]string{"s": {"a", "b", "c", "d", "e"}},
			pending: []devserver.Event{feed("s", "d"), other, feed("s", "e"), feed("s", "f")},
			want:    []devserver.Event{other, feed("s", "f")},
		},
		{
			name:    "all covered",
			read:    map[string][]string{"s": {"a", "b", "c", "d", "e"}},
			pending: []devserver.Event{feed("s", "c", "d"), feed("s", "e")},
			want:    []devserver.Event{},
		},
		{
			name:    "steps settle apart",
			read:    map[string][]string{"s": {"a", "b"}, "t": {"x", "y"}},
			pending: []devserver.Event{feed("t", "y"), feed("s", "c"), feed("t", "z"), feed("u", "new")},
			want:    []devserver.Event{feed("s", "c"), feed("t", "z"), feed("u", "new")},
		},
		{
			name:    "a step the re-read did not have",
			read:    map[string][]string{},
			pending: []devserver.Event{feed("s", "a")},
			want:    []devserver.Event{feed("s", "a")},
		},
		{
			// Identical output is ambiguous; the longest match wins.
			name:    "repeated lines",
			read:    map[string][]string{"s": {".", ".", "."}},
			pending: []devserver.Event{feed("s", "."), feed("s", "."), feed("s", "done")},
			want:    []devserver.Event{feed("s", "done")},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(nil, Options{})
			loaded := map[string]int{}
			for step, lines := range tc.read {
				h.consoles[step] = &console{lines: append(slices.Clone(lines), "after the re-read")}
				loaded[step] = len(lines)
			}
			got := h.settle(tc.pending, loaded)
			if len(got) != len(tc.want) {
				t.Fatalf("kept %d events %v, want %v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i].Kind != tc.want[i].Kind || got[i].StepID != tc.want[i].StepID || !slices.Equal(got[i].Lines, tc.want[i].Lines) {
					t.Fatalf("kept %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// A UI started after a run began shows what the emulator already has, and
// continues it without duplicating a line.
func TestLateAttach(t *testing.T) {
	srv := startEmulator(t)
	f := newFakeRun(t, srv, "Build")
	step := startedStep(t, f)
	f.feed(step, 1, numbered("early", 1, 25)...)
	other := uuid.New()
	f.update(f.record(other, "Task", "Lint", 2, "completed", "failed"))

	_, url := startUI(t, srv, Options{})
	v := newViewer(t, url)
	v.watch(f.job.PlanID(), step.String())
	v.until("the early lines", v.hasLines(25))
	if r := v.records[other.String()]; r.Result != "failed" || r.Name != "Lint" {
		t.Fatalf("record loaded at start: %+v", r)
	}
	f.feed(step, 26, numbered("late", 26, 5)...)
	v.until("the late lines", v.hasLines(30))
	if want := f.job.Feed(step.String()); !slices.Equal(v.lines, want) {
		t.Fatalf("console %v, want %v", v.lines, want)
	}
}

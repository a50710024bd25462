package localrun

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// settleDelay is how long a completed step's header stays open for console
// lines still in flight: the agent posts the live console and the timeline
// on separate queues, so a step's last lines may arrive after its record
// says completed. Lines of a later step end the wait at once.
const settleDelay = 750 * time.Millisecond

// headerDelay is how long a started step without output waits for its
// header: a step the agent skips explains it at once.
const headerDelay = 300 * time.Millisecond

// skipNotice is how the agent begins the log of a step it skips.
const skipNotice = "Skipping step due to condition evaluation."

// ANSI styles.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBlue   = "\x1b[34m"
	ansiCyan   = "\x1b[36m"
)

// printer writes the live console: step headers, each console line, step
// results with durations, and the summary.
type printer struct {
	w     io.Writer
	color bool
	mask  func(string) string
}

func (p *printer) style(code, s string) string {
	if !p.color || s == "" {
		return s
	}
	return code + s + ansiReset
}

func (p *printer) println(s string) { fmt.Fprintln(p.w, p.mask(s)) }

// glyph and colour of a result.
func (p *printer) result(r string) string {
	switch r {
	case "succeeded":
		return p.style(ansiGreen, "✔ succeeded")
	case "succeededWithIssues":
		return p.style(ansiYellow, "⚠ succeeded with issues")
	case "failed":
		return p.style(ansiRed, "✖ failed")
	case "canceled":
		return p.style(ansiYellow, "⊘ canceled")
	case "skipped":
		return p.style(ansiDim, "⊘ skipped")
	case "abandoned":
		return p.style(ansiRed, "✖ abandoned")
	case "":
		return p.style(ansiDim, "not run")
	}
	return r
}

// line renders one console line of a step. Plain output keeps the agent's
// text as the log has it (##[error] and friends included), so it greps like
// the official logs; on a terminal the tags become colours.
func (p *printer) line(s string) string {
	s = lastRewrite(s)
	if !p.color {
		return "  " + s
	}
	tag, rest := "", s
	if strings.HasPrefix(s, "##[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			tag, rest = strings.ToLower(s[3:i]), s[i+1:]
		}
	}
	switch tag {
	case "section":
		return "  " + p.style(ansiBold, rest)
	case "command":
		return "  " + p.style(ansiBlue, rest)
	case "error":
		return "  " + p.style(ansiRed, "Error: "+rest)
	case "warning":
		return "  " + p.style(ansiYellow, "Warning: "+rest)
	case "debug":
		return "  " + p.style(ansiDim, rest)
	case "group":
		return "  " + p.style(ansiBold, "▸ "+rest)
	case "endgroup":
		return ""
	}
	return "  " + s
}

// lastRewrite keeps what a terminal would show of a line a progress meter
// rewrote with \r: its last part, or the one before when the agent cut the
// line short (the live console truncates long lines with "...").
func lastRewrite(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	var parts []string
	for _, p := range strings.Split(s, "\r") {
		if strings.TrimSpace(p) != "" {
			parts = append(parts, p)
		}
	}
	switch {
	case len(parts) == 0:
		return ""
	case len(parts) > 1 && strings.HasSuffix(parts[len(parts)-1], "..."):
		return parts[len(parts)-2]
	}
	return parts[len(parts)-1]
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// stepView is what the console knows of one step record.
type stepView struct {
	id          string
	name        string
	refName     string
	order       int
	state       string
	result      string
	start       time.Time
	finish      time.Time
	lines       []string // received, not yet printed
	header      bool     // header printed
	closed      bool     // result printed
	completedAt time.Time
	startedAt   time.Time // when the console first saw it started
	skipping    bool      // the agent is explaining why it skips the step
	settled     bool      // a later step's lines arrived
	held        []string  // lines of a quiet step, shown if it fails
}

// quiet steps are the agent's own bookkeeping: their console is shown when
// they fail, or with Verbose.
var quietSteps = map[string]bool{"JobExtension_Init": true, "JobExtension_Final": true}

func (s *stepView) started() bool { return s.state == "inProgress" || s.state == "completed" }

// jobView follows one job's events and prints its steps strictly in order.
type jobView struct {
	p       *printer
	id      string
	verbose bool
	steps   map[string]*stepView
	orphans map[string][]string // lines of steps whose record is not known yet
	now     func() time.Time
}

func newJobView(p *printer, jobID string, verbose bool) *jobView {
	return &jobView{p: p, id: strings.ToLower(jobID), verbose: verbose, steps: map[string]*stepView{}, orphans: map[string][]string{}, now: time.Now}
}

// record merges a timeline record.
func (v *jobView) record(r *taskagent.TimelineRecord) {
	if r == nil || r.Id == nil || r.Type == nil || *r.Type != "Task" {
		return
	}
	if r.ParentId == nil || !strings.EqualFold(r.ParentId.String(), v.id) {
		return
	}
	id := r.Id.String()
	s := v.steps[id]
	if s == nil {
		s = &stepView{id: id}
		v.steps[id] = s
		if ls := v.orphans[id]; len(ls) > 0 {
			s.lines = append(s.lines, ls...)
			delete(v.orphans, id)
		}
	}
	if r.Name != nil {
		s.name = *r.Name
	}
	if r.RefName != nil {
		s.refName = *r.RefName
	}
	if r.Order != nil {
		s.order = *r.Order
	}
	if r.State != nil {
		s.state = string(*r.State)
	}
	if r.Result != nil {
		s.result = string(*r.Result)
	}
	if r.StartTime != nil {
		s.start = r.StartTime.Time
	}
	if r.FinishTime != nil {
		s.finish = r.FinishTime.Time
	}
	if s.started() && s.startedAt.IsZero() {
		s.startedAt = v.now()
	}
	if s.state == "completed" && s.completedAt.IsZero() {
		s.completedAt = v.now()
	}
}

// feed takes console lines of a step.
func (v *jobView) feed(stepID string, lines []string) {
	if stepID == v.id {
		// The job's own log: its section markers, shown as the job's header.
		return
	}
	s := v.steps[stepID]
	if s == nil {
		v.orphans[stepID] = append(v.orphans[stepID], lines...)
		return
	}
	s.lines = append(s.lines, lines...)
	for _, o := range v.steps {
		if o.order < s.order {
			o.settled = true
		}
	}
}

func (v *jobView) ordered() []*stepView {
	out := make([]*stepView, 0, len(v.steps))
	for _, s := range v.steps {
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].order < out[b].order })
	return out
}

// pump prints what can be printed without reordering: the first unfinished
// step's header and lines, its result once its lines have settled, then the
// next. With final, everything left is printed.
func (v *jobView) pump(final bool) {
	now := v.now()
	for _, s := range v.ordered() {
		if s.closed {
			// Stragglers after the result: still shown, under the step's
			// name (but not the skip explanation of a skipped step).
			if s.result != "skipped" {
				for _, l := range s.lines {
					v.emit(s, l, true)
				}
			}
			s.lines = nil
			continue
		}
		if !s.started() && !final {
			return
		}
		if !s.header {
			switch {
			case len(s.lines) > 0 && strings.HasPrefix(s.lines[0], skipNotice):
				s.skipping = true
			case len(s.lines) == 0 && s.state != "completed" && !final && now.Sub(s.startedAt) < headerDelay:
				// A step that is about to be skipped says so at once; wait
				// a moment before announcing it as running.
				return
			}
			if !s.skipping && !v.quiet(s) {
				v.p.println(v.p.style(ansiBold+ansiCyan, "▶ "+s.name))
			}
			s.header = true
		}
		if v.quiet(s) {
			s.held = append(s.held, s.lines...)
			s.lines = nil
			if s.state != "completed" && !final {
				return
			}
			if s.result == "succeeded" {
				v.p.println(v.p.style(ansiDim, "✔ "+s.name+v.took(s)))
				s.closed, s.held = true, nil
				continue
			}
			// It went wrong: show it all.
			v.p.println(v.p.style(ansiBold+ansiCyan, "▶ "+s.name))
			s.refName = ""
		}
		if s.skipping {
			s.held = append(s.held, s.lines...)
			s.lines = nil
			if s.state != "completed" && !final {
				return
			}
			why := ""
			for _, l := range s.held {
				if e, ok := strings.CutPrefix(l, "Evaluating: "); ok {
					why = " (" + e + " is false)"
				}
			}
			v.p.println(v.p.style(ansiDim, "⊘ "+s.name+" — skipped"+why))
			s.closed, s.held = true, nil
			continue
		}
		for _, l := range s.lines {
			v.emit(s, l, false)
		}
		s.lines = nil
		done := s.state == "completed" && (final || s.settled || now.Sub(s.completedAt) >= settleDelay)
		if !done {
			if final {
				v.p.println(v.p.style(ansiDim, "  (the step did not report a result)"))
				s.closed = true
				continue
			}
			return
		}
		if s.result != "succeeded" && s.result != "skipped" {
			for _, l := range s.held {
				if out := v.p.line(l); out != "" {
					v.p.println(out)
				}
			}
		}
		s.held = nil
		v.p.println(v.p.result(s.result) + v.p.style(ansiDim, v.took(s)))
		s.closed = true
	}
	if final {
		for id, ls := range v.orphans {
			for _, l := range ls {
				if out := v.p.line(l); out != "" {
					v.p.println(out)
				}
			}
			delete(v.orphans, id)
		}
	}
}

// quiet reports whether a step's console is held back (see quietSteps).
func (v *jobView) quiet(s *stepView) bool { return quietSteps[s.refName] && !v.verbose }

// took is " in <duration>" when the record has both times.
func (v *jobView) took(s *stepView) string {
	if s.start.IsZero() || s.finish.IsZero() {
		return ""
	}
	return " in " + fmtDuration(s.finish.Sub(s.start))
}

// emit prints one console line of a step. The agent's own
// "##[section]Starting:/Finishing: <step>" markers are left out: the
// header and the result line say it.
func (v *jobView) emit(s *stepView, l string, late bool) {
	if strings.HasPrefix(l, "##[section]Starting: ") || strings.HasPrefix(l, "##[section]Finishing: ") {
		return
	}
	out := v.p.line(l)
	if out == "" {
		return
	}
	if late {
		out = v.p.style(ansiDim, "  ["+s.name+"]") + out
	}
	v.p.println(out)
}

// handle applies an event of this job.
func (v *jobView) handle(ev devserver.Event) {
	if !strings.EqualFold(ev.JobID, v.id) {
		return
	}
	switch ev.Kind {
	case devserver.EventRecordUpdated:
		v.record(ev.Record)
	case devserver.EventFeedLines:
		v.feed(strings.ToLower(ev.StepID), ev.Lines)
	}
}

// table writes rows as columns padded to their visible width (styles do not
// count), two spaces apart.
func (p *printer) table(rows [][]string) {
	widths := map[int]int{}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], visibleLen(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-visibleLen(c)+2))
			}
		}
		p.println(strings.TrimRight(b.String(), " "))
	}
}

// visibleLen counts runes outside ANSI escape sequences.
func visibleLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == 0x1b {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				break
			}
			i += j + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}

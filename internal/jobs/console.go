package jobs

import (
	"strings"

	"github.com/google/uuid"
)

// maxIssuesPerType is how many errors and how many warnings a record keeps;
// the counts go on (ExecutionContext.AddIssue).
const maxIssuesPerType = 10

// console writes a record's log lines: masked, then handed to the reporter.
// It implements steps.Console.
type console struct {
	jr  *jobRun
	rec *Record
}

func (jr *jobRun) console(rec *Record) *console { return &console{jr: jr, rec: rec} }

func (c *console) write(line string) {
	if strings.IndexByte(line, '\n') < 0 {
		c.writeLines([]string{line})
		return
	}
	c.writeLines(strings.Split(line, "\n"))
}

// writeLines masks lines (none holds a '\n'; a trailing '\r' is dropped) and
// hands them to the reporter in one call. It overwrites lines.
func (c *console) writeLines(lines []string) {
	if len(lines) == 0 {
		return
	}
	for i, l := range lines {
		lines[i] = c.jr.masker.Mask(strings.TrimSuffix(l, "\r"))
	}
	c.jr.rep.WriteLines(c.rec.ID, lines)
}

// Info writes a plain line.
func (c *console) Info(line string) { c.write(line) }

// Command writes a ##[command] line.
func (c *console) Command(line string) { c.write("##[command]" + line) }

// Debug writes a ##[debug] line when system.debug is true.
func (c *console) Debug(line string) {
	if c.jr.debug {
		c.write("##[debug]" + line)
	}
}

// Warning records a warning issue and writes it.
func (c *console) Warning(msg string) {
	c.jr.addIssue(c.rec, Issue{Type: "warning", Category: "General", Message: msg})
}

// Error records an error issue and writes it.
func (c *console) Error(msg string) {
	c.jr.addIssue(c.rec, Issue{Type: "error", Category: "General", Message: msg})
}

// AddSecret masks value from now on.
func (c *console) AddSecret(value string) { c.jr.masker.AddValue(value) }

// addIssue adds an issue to a record (capped) and writes its log line.
func (jr *jobRun) addIssue(rec *Record, is Issue) {
	is.Message = jr.masker.Mask(is.Message)
	for k, v := range is.Data {
		is.Data[k] = jr.masker.Mask(v)
	}
	jr.mu.Lock()
	kept := 0
	for _, x := range rec.Issues {
		if x.Type == is.Type {
			kept++
		}
	}
	if is.Type == "error" {
		rec.ErrorCount++
	} else {
		rec.WarningCount++
	}
	if kept < maxIssuesPerType {
		rec.Issues = append(rec.Issues, is)
	}
	c := rec.clone()
	jr.mu.Unlock()
	prefix := "##[warning]"
	if is.Type == "error" {
		prefix = "##[error]"
	}
	for _, l := range strings.Split(is.Message, "\n") {
		jr.rep.WriteLine(rec.ID, prefix+l)
	}
	jr.rep.UpdateRecord(c)
}

func newID() string { return uuid.NewString() }

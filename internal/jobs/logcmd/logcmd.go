// Package logcmd parses the ##vso[...] logging commands that steps print on
// their output (worker.md §5), with the official agent's exact rules
// (Command.TryParse, CommandStringConvertor, WorkerCommandManager), and
// lists the commands the official agent implements.
//
// Parsing is all this package does; what a command means is the job
// runner's business.
package logcmd

import (
	"errors"
	"slices"
	"strings"
)

// Prefix starts a logging command. It is matched case-sensitively, as .NET's
// String.IndexOf(string) does: "##VSO[task.debug]x" is not a command and, not
// containing the keyword "##vso" either, draws no warning.
const Prefix = "##vso["

// keyword is what makes the official agent warn about a line it cannot parse.
const keyword = "##vso"

// Command is one parsed logging command.
type Command struct {
	Area  string // as written; the official agent looks areas up case-insensitively
	Event string // as written; looked up case-insensitively too
	// Properties holds the unescaped property values by lower-cased name.
	// The official dictionary is case-insensitive; lower-casing the keys
	// gives the same lookups with a plain map.
	Properties map[string]string
	Data       string // everything after the closing ']', unescaped
}

// Options holds the knobs that change parsing.
type Options struct {
	// KeepPercentEscapes mirrors DECODE_PERCENTS=false: "%AZP25" is left as
	// written instead of being decoded to "%". The official default (the
	// zero value here) decodes.
	KeepPercentEscapes bool
}

// ErrIllegal is wrapped by every *SyntaxError.
var ErrIllegal = errors.New("illegal logging command")

// SyntaxError reports a line that contains the keyword "##vso" but is not a
// legal command. Its message is the official agent's warning
// (strings.json CommandKeywordDetected). The line can hold secrets: mask
// the message before it is logged or reported.
type SyntaxError struct {
	Line   string
	Reason string // why it did not parse, for diagnostics
}

func (e *SyntaxError) Error() string {
	return "'" + e.Line + "' contains logging command keyword '##vso', but it's not a legal command. " +
		"Please see the list of accepted commands: https://go.microsoft.com/fwlink/?LinkId=817296"
}

func (e *SyntaxError) Unwrap() error { return ErrIllegal }

// Parse parses line with the default options. See Options.Parse.
func Parse(line string) (cmd *Command, found bool, err error) {
	return Options{}.Parse(line)
}

// Parse finds a logging command anywhere in line; text before it is
// discarded. found is false when the line does not contain "##vso" at all
// and should be logged as is. A line that contains "##vso" but is not a
// legal command gives found=true and a *SyntaxError; the official agent then
// warns with the error's text and logs the line as ordinary output.
//
// The rules are the official agent's: the first ']' after "##vso[" ends the
// header; the header's name part (up to the first space) splits on '.' into
// exactly two non-empty parts, empty parts being dropped ("task..debug" is
// task.debug); the rest splits on ';' into properties, empty ones dropped,
// each split at its first '=' as .NET's Split('=', 2, RemoveEmptyEntries)
// does, so "k==v" gives "v", while "k=" and "=v" are dropped. Property
// values and the data are unescaped (Unescape); keys are not.
func (o Options) Parse(line string) (cmd *Command, found bool, err error) {
	if !strings.Contains(line, keyword) {
		return nil, false, nil
	}
	fail := func(reason string) (*Command, bool, error) {
		return nil, true, &SyntaxError{Line: line, Reason: reason}
	}
	p := strings.Index(line, Prefix)
	if p < 0 {
		return fail(`no "##vso[" in the line`)
	}
	rest := line[p+len(Prefix):]
	rb := strings.IndexByte(rest, ']')
	if rb < 0 {
		return fail(`no "]" ends the command header`)
	}
	info, data := rest[:rb], rest[rb+1:]
	name, props, hasProps := strings.Cut(info, " ")
	parts := nonEmpty(strings.Split(name, "."))
	if len(parts) != 2 {
		return fail(`the command name must be "area.event"`)
	}
	cmd = &Command{Area: parts[0], Event: parts[1], Properties: map[string]string{}}
	if hasProps {
		for _, prop := range strings.Split(props, ";") {
			if k, v, ok := splitProperty(prop); ok {
				cmd.Properties[strings.ToLower(k)] = o.Unescape(v)
			}
		}
	}
	cmd.Data = o.Unescape(data)
	return cmd, true, nil
}

func nonEmpty(ss []string) []string {
	return slices.DeleteFunc(ss, func(s string) bool { return s == "" })
}

// splitProperty is .NET Core's "key=value".Split('=', 2, RemoveEmptyEntries)
// keeping only results with two parts: empty entries before the key and
// between the key and the value are skipped, so leading '=' of the key and
// of the value vanish; the value keeps any later '='.
func splitProperty(s string) (key, value string, ok bool) {
	key, value, found := strings.Cut(strings.TrimLeft(s, "="), "=")
	if !found || key == "" {
		return "", "", false
	}
	value = strings.TrimLeft(value, "=")
	return key, value, value != ""
}

// escapes are CommandStringConvertor's mappings, in its order.
var escapes = [...]struct{ token, escaped string }{
	{";", "%3B"},
	{"\r", "%0D"},
	{"\n", "%0A"},
	{"]", "%5D"},
}

// Unescape decodes a property value or data: %3B, %0D, %0A and %5D, each
// replaced in turn over the whole text, then %AZP25 to '%' unless
// KeepPercentEscapes is set. The sequences are case-sensitive, and "%25" is
// not an escape.
func (o Options) Unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	for _, e := range escapes {
		s = strings.ReplaceAll(s, e.escaped, e.token)
	}
	if !o.KeepPercentEscapes {
		s = strings.ReplaceAll(s, "%AZP25", "%")
	}
	return s
}

// Escape is the inverse of Unescape: '%' becomes %AZP25 (unless
// KeepPercentEscapes is set), then ';', CR, LF and ']' their escapes.
func (o Options) Escape(s string) string {
	if !o.KeepPercentEscapes {
		s = strings.ReplaceAll(s, "%", "%AZP25")
	}
	for _, e := range escapes {
		s = strings.ReplaceAll(s, e.token, e.escaped)
	}
	return s
}

// Escape escapes with the default options.
func Escape(s string) string { return Options{}.Escape(s) }

// Unescape unescapes with the default options.
func Unescape(s string) string { return Options{}.Unescape(s) }

// String formats the command with the default options. See Options.Format.
func (c *Command) String() string { return Options{}.Format(c) }

// Format writes c as a logging command line, properties sorted by name and
// each followed by ';' as azure-pipelines-task-lib writes them, values and
// data escaped, so that o.Parse(o.Format(c)) gives c back for every command
// o.Parse can produce. Commands built by hand round-trip when the area and
// event are non-empty without '.', ' ' or ']', keys are non-empty without
// ';', '=' or ']' and in lower case, and values are non-empty and do not
// start with '='.
func (o Options) Format(c *Command) string {
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString(c.Area)
	b.WriteByte('.')
	b.WriteString(c.Event)
	if len(c.Properties) > 0 {
		keys := make([]string, 0, len(c.Properties))
		for k := range c.Properties {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte(' ')
		for _, k := range keys {
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(o.Escape(c.Properties[k]))
			b.WriteByte(';')
		}
	}
	b.WriteByte(']')
	b.WriteString(o.Escape(c.Data))
	return b.String()
}

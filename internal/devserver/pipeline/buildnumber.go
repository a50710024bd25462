package pipeline

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// defaultNameFormat is the run number format the service uses when the
// pipeline has no `name:` (learn.microsoft.com "Configure run numbers").
const defaultNameFormat = "$(Date:yyyyMMdd)$(Rev:.r)"

// buildNumber evaluates the run number format: the documented tokens,
// pipeline variables by name; anything else stays as written.
func (c *compiler) buildNumber() string {
	if c.opts.BuildNumber != "" {
		return c.opts.BuildNumber
	}
	format := defaultNameFormat
	if c.hasName && c.nameFmt != "" {
		format = c.nameFmt
	}
	o := c.opts
	t := o.StartTime
	branch := defaultRef
	if r, ok := c.repo(selfAlias); ok {
		branch = normalizeRef(r.Ref)
	}
	var b strings.Builder
	for {
		i := strings.Index(format, "$(")
		if i < 0 {
			b.WriteString(format)
			break
		}
		end := strings.IndexByte(format[i:], ')')
		if end < 0 {
			b.WriteString(format)
			break
		}
		b.WriteString(format[:i])
		token := format[i+2 : i+end]
		format = format[i+end+1:]
		name, arg, hasArg := strings.Cut(token, ":")
		if v, ok := c.nameToken(strings.ToLower(name), arg, hasArg, t, branch); ok {
			b.WriteString(v)
		} else {
			b.WriteString("$(" + token + ")")
		}
	}
	return b.String()
}

func (c *compiler) nameToken(name, arg string, hasArg bool, t time.Time, branch string) (string, bool) {
	o := c.opts
	switch name {
	case "date":
		if !hasArg {
			arg = "yyyyMMdd"
		}
		return dotnetDate(t, arg), true
	case "rev":
		if !hasArg {
			return "", false
		}
		return revision(arg, o.Revision), true
	case "year":
		if arg == "yy" {
			return t.Format("06"), true
		}
		return t.Format("2006"), true
	case "month":
		return t.Format("01"), true
	case "dayofmonth":
		return t.Format("02"), true
	case "dayofyear":
		return fmt.Sprintf("%03d", t.YearDay()), true
	case "hours":
		return t.Format("15"), true
	case "minutes":
		return t.Format("04"), true
	case "seconds":
		return t.Format("05"), true
	case "buildid", "build.buildid":
		return strconv.Itoa(o.BuildID), true
	case "definitionname", "builddefinitionname", "build.definitionname":
		return o.DefinitionName, true
	case "teamproject", "system.teamproject":
		return o.ProjectName, true
	case "sourcebranch", "build.sourcebranch":
		return branch, true
	case "sourcebranchname", "build.sourcebranchname":
		return branch[strings.LastIndex(branch, "/")+1:], true
	}
	if hasArg {
		return "", false
	}
	for _, v := range c.vars {
		if strings.ToLower(v.name) == name {
			return v.value, true
		}
	}
	return "", false
}

// revision renders $(Rev:…): each run of r is the revision, zero-padded to
// the run's length; other characters are literal ("$(Rev:.r)" → ".2").
func revision(format string, rev int) string {
	var b strings.Builder
	for i := 0; i < len(format); {
		if format[i] != 'r' {
			b.WriteByte(format[i])
			i++
			continue
		}
		n := 0
		for i < len(format) && format[i] == 'r' {
			n++
			i++
		}
		fmt.Fprintf(&b, "%0*d", n, rev)
	}
	return b.String()
}

// dotnetDate renders the .NET custom date format specifiers a run number
// uses (yyyy yy MM M dd d HH H mm ss); other characters are literal.
func dotnetDate(t time.Time, format string) string {
	specs := []struct{ spec, layout string }{
		{"yyyy", "2006"}, {"yy", "06"}, {"MM", "01"}, {"M", "1"}, {"dd", "02"}, {"d", "2"},
		{"HH", "15"}, {"H", "15"}, {"mm", "04"}, {"ss", "05"},
	}
	var b strings.Builder
outer:
	for i := 0; i < len(format); {
		for _, s := range specs {
			if strings.HasPrefix(format[i:], s.spec) {
				v := t.Format(s.layout)
				if s.spec == "H" {
					v = strconv.Itoa(t.Hour())
				}
				b.WriteString(v)
				i += len(s.spec)
				continue outer
			}
		}
		b.WriteByte(format[i])
		i++
	}
	return b.String()
}

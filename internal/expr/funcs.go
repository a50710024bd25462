package expr

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type function struct {
	name     string
	min, max int
	// realized: the trace shows the function's value rather than its
	// arguments (TraceFullyRealized).
	realized bool
	eval     func(st *state, n *node) (any, error)
	// status is set on the agent's job-status functions.
	status func(jobStatus string) bool
}

// builtins are the well-known functions, keyed by lower-case name.
var builtins = func() map[string]*function {
	m := map[string]*function{}
	add := func(name string, min, max int, realized bool, eval func(*state, *node) (any, error)) {
		m[strings.ToLower(name)] = &function{name: name, min: min, max: max, realized: realized, eval: eval}
	}
	add("and", 2, MaxArgs, false, evalAnd)
	add("coalesce", 2, MaxArgs, false, evalCoalesce)
	add("contains", 2, 2, false, stringPredicate(func(a, b string) bool { return strings.Contains(upperFold(a), upperFold(b)) }))
	add("containsValue", 2, 2, false, evalContainsValue)
	add("convertToJson", 1, 1, true, evalConvertToJSON)
	add("endsWith", 2, 2, false, stringPredicate(func(a, b string) bool { return strings.HasSuffix(upperFold(a), upperFold(b)) }))
	add("eq", 2, 2, false, func(st *state, n *node) (any, error) { return evalEqual(st, n, true) })
	add("format", 1, 255, true, evalFormat)
	add("gt", 2, 2, false, comparison(func(c int) bool { return c > 0 }))
	add("ge", 2, 2, false, comparison(func(c int) bool { return c >= 0 }))
	add("iif", 1, 3, false, evalIif)
	add("in", 2, MaxArgs, false, func(st *state, n *node) (any, error) { return evalIn(st, n, true) })
	add("join", 2, 2, true, evalJoin)
	add("length", 1, 1, false, evalLength)
	add("lower", 1, 1, false, stringFunc(strings.ToLower))
	add("lt", 2, 2, false, comparison(func(c int) bool { return c < 0 }))
	add("le", 2, 2, false, comparison(func(c int) bool { return c <= 0 }))
	add("ne", 2, 2, false, func(st *state, n *node) (any, error) { return evalEqual(st, n, false) })
	add("not", 1, 1, false, evalNot)
	add("notIn", 2, MaxArgs, false, func(st *state, n *node) (any, error) { return evalIn(st, n, false) })
	add("or", 2, MaxArgs, false, evalOr)
	add("replace", 2, 3, false, evalReplace)
	add("split", 2, 2, true, evalSplit)
	add("startsWith", 2, 2, false, stringPredicate(func(a, b string) bool { return strings.HasPrefix(upperFold(a), upperFold(b)) }))
	add("trim", 1, 1, false, stringFunc(func(s string) string { return strings.TrimFunc(s, unicode.IsSpace) }))
	add("upper", 1, 1, false, stringFunc(strings.ToUpper))
	add("xor", 2, 2, false, evalXor)
	return m
}()

// statusFunctions are the functions the agent adds for step conditions.
var statusFunctions = []*function{
	statusFunction("always", func(string) bool { return true }),
	statusFunction("canceled", func(s string) bool { return strings.EqualFold(s, "canceled") }),
	statusFunction("failed", func(s string) bool { return strings.EqualFold(s, "failed") }),
	statusFunction("succeeded", func(s string) bool {
		return s == "" || strings.EqualFold(s, "succeeded") || strings.EqualFold(s, "succeededWithIssues")
	}),
	statusFunction("succeededOrFailed", func(s string) bool {
		return s == "" || strings.EqualFold(s, "succeeded") || strings.EqualFold(s, "succeededWithIssues") || strings.EqualFold(s, "failed")
	}),
}

func statusFunction(name string, status func(string) bool) *function {
	return &function{name: name, min: 0, max: 0, realized: true, eval: evalExtension, status: status}
}

// evalExtension calls a function the Context provides, falling back to the
// agent's status functions.
func evalExtension(st *state, n *node) (any, error) {
	args := make([]any, len(n.args))
	for i, a := range n.args {
		v, err := st.eval(a)
		if err != nil {
			return nil, err
		}
		args[i] = exported(v)
	}
	if st.fc != nil {
		v, ok, err := st.fc.Function(n.fn.name, args)
		if err != nil {
			return nil, fmt.Errorf("%s(): %w", n.name, err)
		}
		if ok {
			return v, nil
		}
	}
	if n.fn.status != nil && len(args) == 0 {
		return n.fn.status(st.c.JobStatus()), nil
	}
	return nil, fmt.Errorf("function %s() with %d argument(s) is not available in this context: the caller declared it but does not implement it", n.name, len(args))
}

func evalAnd(st *state, n *node) (any, error) {
	for _, a := range n.args {
		v, err := st.eval(a)
		if err != nil {
			return nil, err
		}
		if !toBool(v) {
			return false, nil
		}
	}
	return true, nil
}

func evalOr(st *state, n *node) (any, error) {
	for _, a := range n.args {
		v, err := st.eval(a)
		if err != nil {
			return nil, err
		}
		if toBool(v) {
			return true, nil
		}
	}
	return false, nil
}

func evalXor(st *state, n *node) (any, error) {
	l, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	r, err := st.eval(n.args[1])
	if err != nil {
		return nil, err
	}
	return toBool(l) != toBool(r), nil
}

func evalNot(st *state, n *node) (any, error) {
	v, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	return !toBool(v), nil
}

func evalIif(st *state, n *node) (any, error) {
	c, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	pick := 2
	if toBool(c) {
		pick = 1
	}
	if pick >= len(n.args) {
		return nil, nil
	}
	return st.eval(n.args[pick])
}

func evalTwo(st *state, n *node) (any, any, error) {
	l, err := st.eval(n.args[0])
	if err != nil {
		return nil, nil, err
	}
	r, err := st.eval(n.args[1])
	if err != nil {
		return nil, nil, err
	}
	return l, r, nil
}

func evalEqual(st *state, n *node, want bool) (any, error) {
	l, r, err := evalTwo(st, n)
	if err != nil {
		return nil, err
	}
	return equal(l, r) == want, nil
}

func comparison(test func(int) bool) func(*state, *node) (any, error) {
	return func(st *state, n *node) (any, error) {
		l, r, err := evalTwo(st, n)
		if err != nil {
			return nil, err
		}
		c, err := compare(l, r)
		if err != nil {
			return nil, err
		}
		return test(c), nil
	}
}

// evalIn: in (found=true) and notIn (found=false) stop at the first match.
func evalIn(st *state, n *node, found bool) (any, error) {
	l, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	for _, a := range n.args[1:] {
		r, err := st.eval(a)
		if err != nil {
			return nil, err
		}
		if equal(l, r) {
			return found, nil
		}
	}
	return !found, nil
}

func evalCoalesce(st *state, n *node) (any, error) {
	var v any
	for _, a := range n.args {
		var err error
		if v, err = st.eval(a); err != nil {
			return nil, err
		}
		if s, ok := v.(string); v != nil && (!ok || s != "") {
			break
		}
	}
	return v, nil
}

func stringPredicate(test func(a, b string) bool) func(*state, *node) (any, error) {
	return func(st *state, n *node) (any, error) {
		a, err := st.evalString(n.args[0])
		if err != nil {
			return nil, err
		}
		b, err := st.evalString(n.args[1])
		if err != nil {
			return nil, err
		}
		return test(a, b), nil
	}
}

func stringFunc(f func(string) string) func(*state, *node) (any, error) {
	return func(st *state, n *node) (any, error) {
		s, err := st.evalString(n.args[0])
		if err != nil {
			return nil, err
		}
		return f(s), nil
	}
}

// evalContainsValue converts each element to the needle's kind (the needle
// is the left operand of the comparison), and evaluates the needle only when
// the haystack is a collection.
func evalContainsValue(st *state, n *node) (any, error) {
	hay, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	if !isCollection(hay) {
		return false, nil
	}
	needle, err := st.eval(n.args[1])
	if err != nil {
		return nil, err
	}
	items, ok := arrayItems(hay)
	if !ok {
		if _, items, _, err = objectEntries(hay); err != nil {
			return nil, err
		}
	}
	for _, it := range items {
		if equal(needle, it) {
			return true, nil
		}
	}
	return false, nil
}

func evalReplace(st *state, n *node) (any, error) {
	s, err := st.evalString(n.args[0])
	if err != nil {
		return nil, err
	}
	old, err := st.evalString(n.args[1])
	if err != nil {
		return nil, err
	}
	if old == "" {
		return s, nil
	}
	repl := ""
	if len(n.args) > 2 {
		if repl, err = st.evalString(n.args[2]); err != nil {
			return nil, err
		}
	}
	if growth := len(repl) - len(old); growth > 0 && len(s)+strings.Count(s, old)*growth > maxMemory {
		return nil, errMemory(n)
	}
	return strings.ReplaceAll(s, old, repl), nil
}

// evalSplit is String.Split(new[] { sep }, StringSplitOptions.None): an empty
// separator leaves the string whole.
func evalSplit(st *state, n *node) (any, error) {
	s, err := st.evalString(n.args[0])
	if err != nil {
		return nil, err
	}
	sep, err := st.evalString(n.args[1])
	if err != nil {
		return nil, err
	}
	parts := []string{s}
	if sep != "" {
		parts = strings.Split(s, sep)
	}
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

func evalLength(st *state, n *node) (any, error) {
	v, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	if items, ok := arrayItems(v); ok {
		return float64(len(items)), nil
	}
	switch x := v.(type) {
	case string:
		return float64(utf16Len(x)), nil
	case map[string]any:
		return float64(len(x)), nil
	case map[string]string:
		return float64(len(x)), nil
	case variablesObject:
		return nil, errNotEnumerable
	}
	return nil, fmt.Errorf("Kind '%s' not supported. Only arrays, strings, dictionaries, or collections are supported for the length function.", kindOf(v))
}

// evalJoin evaluates the separator only when there are two or more elements,
// and skips elements that have no string form.
func evalJoin(st *state, n *node) (any, error) {
	v, err := st.eval(n.args[1])
	if err != nil {
		return nil, err
	}
	items, ok := arrayItems(v)
	if !ok {
		s, _ := toString(v)
		return s, nil
	}
	if len(items) == 0 {
		return "", nil
	}
	var b strings.Builder
	if s, ok := toString(items[0]); ok {
		b.WriteString(s)
	}
	if len(items) > 1 {
		sep, err := st.evalString(n.args[0])
		if err != nil {
			return nil, err
		}
		for _, it := range items[1:] {
			b.WriteString(sep)
			if s, ok := toString(it); ok {
				b.WriteString(s)
			}
			if b.Len() > maxMemory {
				return nil, errMemory(n)
			}
		}
	}
	return b.String(), nil
}

// maxMemory is the official engine's default evaluation memory limit; here
// it bounds the strings join, format and convertToJson build.
const maxMemory = 1 << 20

func errMemory(n *node) error {
	return fmt.Errorf("The maximum allowed memory size was exceeded while evaluating the following expression: %s", n.expression(false))
}

// evalFormat implements format() with the official engine's rules: {N}
// placeholders (N up to 255), {{ and }} escapes, arguments evaluated lazily
// (an argument no placeholder refers to is never evaluated) and format
// specifiers, which only date-times accept, rejected.
func evalFormat(st *state, n *node) (any, error) {
	s, err := st.evalString(n.args[0])
	if err != nil {
		return nil, err
	}
	type segment struct {
		lit  string
		arg  int // -1 for a literal
		spec string
	}
	var segs []segment
	invalid := fmt.Errorf("The following format string is invalid: %s", s)
	for i := 0; i < len(s); {
		l := indexFrom(s, '{', i)
		r := indexFrom(s, '}', i)
		switch {
		case l >= 0 && (r < 0 || r > l):
			if l+1 < len(s) && s[l+1] == '{' {
				segs = append(segs, segment{lit: s[i : l+1], arg: -1})
				i = l + 2
				continue
			}
			if r <= l+1 {
				return nil, invalid
			}
			arg, end, ok := readArgIndex(s, l+1)
			if !ok {
				return nil, invalid
			}
			spec, rb, ok := readFormatSpec(s, end)
			if !ok {
				return nil, invalid
			}
			if arg > len(n.args)-2 {
				return nil, fmt.Errorf("The following format string references more arguments than were supplied: %s", s)
			}
			segs = append(segs, segment{lit: s[i:l], arg: -1}, segment{arg: arg, spec: spec})
			i = rb + 1
		case r >= 0:
			if r+1 >= len(s) || s[r+1] != '}' {
				return nil, invalid
			}
			segs = append(segs, segment{lit: s[i : r+1], arg: -1})
			i = r + 2
		default:
			segs = append(segs, segment{lit: s[i:], arg: -1})
			i = len(s)
		}
	}
	type argValue struct {
		v any
		s string
	}
	cache := make([]*argValue, len(n.args)-1)
	var b strings.Builder
	for _, sg := range segs {
		if sg.arg < 0 {
			b.WriteString(sg.lit)
		} else {
			av := cache[sg.arg]
			if av == nil {
				v, err := st.eval(n.args[sg.arg+1])
				if err != nil {
					return nil, err
				}
				str, err := mustString(v)
				if err != nil {
					return nil, err
				}
				av = &argValue{v: v, s: str}
				cache[sg.arg] = av
			}
			if sg.spec != "" {
				return nil, fmt.Errorf("The format specifiers '%s' are not valid for objects of type '%s'", sg.spec, kindOf(av.v))
			}
			b.WriteString(av.s)
		}
		if b.Len() > maxMemory {
			return nil, errMemory(n)
		}
	}
	return b.String(), nil
}

func indexFrom(s string, c byte, from int) int {
	i := strings.IndexByte(s[from:], c)
	if i < 0 {
		return -1
	}
	return from + i
}

// readArgIndex reads the digits of a placeholder's index starting at i and
// returns the index and the offset after it. Like the official engine it
// takes any Unicode digits but accepts only an ASCII byte value (0–255).
func readArgIndex(s string, i int) (int, int, bool) {
	j := i
	for j < len(s) {
		r, w := utf8.DecodeRuneInString(s[j:])
		if !unicode.IsDigit(r) {
			break
		}
		j += w
	}
	if j == i {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(s[i:j], 10, 8)
	if err != nil {
		return 0, 0, false
	}
	return int(n), j, true
}

// readFormatSpec reads an optional ":spec" ('}}' escapes a brace) up to the
// placeholder's closing brace, returning the spec and the brace's offset.
func readFormatSpec(s string, i int) (string, int, bool) {
	if i >= len(s) {
		return "", 0, false
	}
	switch s[i] {
	case '}':
		return "", i, true
	case ':':
		var b strings.Builder
		for j := i + 1; j < len(s); {
			if s[j] != '}' {
				b.WriteByte(s[j])
				j++
				continue
			}
			if j+1 < len(s) && s[j+1] == '}' {
				b.WriteByte('}')
				j += 2
				continue
			}
			return b.String(), j, true
		}
	}
	return "", 0, false
}

// evalConvertToJSON renders a value as the official engine does: two-space
// indentation, "key": value, numbers and versions via their string forms.
// Object keys come out sorted because Go maps have no order.
func evalConvertToJSON(st *state, n *node) (any, error) {
	v, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := writeJSON(&b, v, 0, n); err != nil {
		return nil, err
	}
	return b.String(), nil
}

func writeJSON(b *strings.Builder, v any, depth int, n *node) error {
	if b.Len() > maxMemory {
		return errMemory(n)
	}
	indent := func(d int) { b.WriteByte('\n'); b.WriteString(strings.Repeat("  ", d)) }
	if items, ok := arrayItems(v); ok {
		if len(items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			indent(depth + 1)
			if err := writeJSON(b, it, depth+1, n); err != nil {
				return err
			}
		}
		indent(depth)
		b.WriteByte(']')
		return nil
	}
	keys, vals, isObj, err := objectEntries(v)
	if err != nil {
		return err
	}
	if isObj {
		if len(keys) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			indent(depth + 1)
			b.WriteString(jsonQuote(k))
			b.WriteString(": ")
			if err := writeJSON(b, vals[i], depth+1, n); err != nil {
				return err
			}
		}
		indent(depth)
		b.WriteByte('}')
		return nil
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case float64:
		b.WriteString(formatNumber(x))
	case string:
		b.WriteString(jsonQuote(x))
	case Version:
		b.WriteString(jsonQuote(x.String()))
	default:
		b.WriteString("{}")
	}
	return nil
}

// jsonQuote escapes like Newtonsoft.Json's default: quote, backslash,
// control characters, U+0085, U+2028 and U+2029; everything else verbatim.
func jsonQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x85 || r == 0x2028 || r == 0x2029 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

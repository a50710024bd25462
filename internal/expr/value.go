package expr

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// kind is the engine's value kind. Its String form is the name the official
// engine puts in messages ("Unable to convert from String to Number").
type kind uint8

const (
	kindNull kind = iota
	kindBoolean
	kindNumber
	kindString
	kindVersion
	kindArray
	kindObject
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "Null"
	case kindBoolean:
		return "Boolean"
	case kindNumber:
		return "Number"
	case kindString:
		return "String"
	case kindVersion:
		return "Version"
	case kindArray:
		return "Array"
	default:
		return "Object"
	}
}

// Version is a .NET System.Version: two to four non-negative components.
// Build and Revision are -1 when the version has fewer components, and that
// matters: .NET compares 1.2 < 1.2.0 and reports them unequal.
type Version struct {
	Major, Minor, Build, Revision int
}

// String prints Major.Minor[.Build[.Revision]] like Version.ToString().
func (v Version) String() string {
	s := strconv.Itoa(v.Major) + "." + strconv.Itoa(v.Minor)
	if v.Build >= 0 {
		s += "." + strconv.Itoa(v.Build)
		if v.Revision >= 0 {
			s += "." + strconv.Itoa(v.Revision)
		}
	}
	return s
}

func (v Version) compare(o Version) int {
	for _, d := range [...][2]int{{v.Major, o.Major}, {v.Minor, o.Minor}, {v.Build, o.Build}, {v.Revision, o.Revision}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// ParseVersion parses s the way .NET's Version.TryParse does: 2 to 4
// dot-separated components, each an Int32 >= 0 read with NumberStyles.Integer
// (so surrounding white space and a sign are tolerated: " 1.+2" is 1.2).
func ParseVersion(s string) (Version, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return Version{}, false
	}
	v := Version{Build: -1, Revision: -1}
	dst := []*int{&v.Major, &v.Minor, &v.Build, &v.Revision}
	for i, p := range parts {
		n, ok := parseInt32(p)
		if !ok || n < 0 {
			return Version{}, false
		}
		*dst[i] = n
	}
	return v, true
}

// isNetWhite is the white space .NET's number parser skips (U+0009–U+000D, U+0020).
func isNetWhite(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

func trimNetWhite(s string) string {
	i, j := 0, len(s)
	for i < j && isNetWhite(s[i]) {
		i++
	}
	for j > i && isNetWhite(s[j-1]) {
		j--
	}
	return s[i:j]
}

// parseInt32 is Int32.TryParse(s, NumberStyles.Integer, InvariantCulture).
func parseInt32(s string) (int, bool) {
	s = trimNetWhite(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	n := int64(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		if n > math.MaxInt32+1 {
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	if n > math.MaxInt32 || n < math.MinInt32 {
		return 0, false
	}
	return int(n), true
}

// maxDecimal is System.Decimal.MaxValue; the official engine keeps numbers as
// decimals, so anything larger fails to parse there and must fail here too.
const maxDecimal = 79228162514264337593543950335.0

// parseNumber mirrors Decimal.TryParse with InvariantCulture. literal selects
// the lexer's styles (AllowLeadingSign|AllowDecimalPoint); otherwise the
// conversion styles (Integer|AllowDecimalPoint|AllowThousands: surrounding
// white space and ',' group separators before the decimal point are accepted).
// Hex, exponents, "NaN" and "Infinity" are not numbers.
func parseNumber(s string, literal bool) (float64, bool) {
	if !literal {
		s = trimNetWhite(s)
	}
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var b strings.Builder
	digits, dot := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			digits = true
			b.WriteByte(c)
		case c == '.' && !dot:
			dot = true
			b.WriteByte(c)
		case c == ',' && !literal && digits && !dot:
			// group separator: dropped
		default:
			return 0, false
		}
	}
	if !digits {
		return 0, false
	}
	f, err := strconv.ParseFloat(b.String(), 64)
	if err != nil || f > maxDecimal {
		return 0, false
	}
	if neg && f != 0 {
		f = -f
	}
	return f, true
}

// formatNumber is decimal.ToString("0.#######", InvariantCulture): at most
// seven fraction digits, rounded half away from zero, no exponent, no
// thousands separator. Rounding works on the shortest decimal representation
// of the float so that a literal like 0.00000005 rounds as the decimal would.
func formatNumber(f float64) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	if math.IsInf(f, 0) {
		if f > 0 {
			return "Infinity"
		}
		return "-Infinity"
	}
	s := strconv.FormatFloat(math.Abs(f), 'f', -1, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	if len(frac) > 7 {
		up := frac[7] >= '5'
		frac = frac[:7]
		if up {
			digits := []byte(intPart + frac)
			i := len(digits) - 1
			for ; i >= 0; i-- {
				if digits[i] == '9' {
					digits[i] = '0'
					continue
				}
				digits[i]++
				break
			}
			if i < 0 {
				digits = append([]byte{'1'}, digits...)
			}
			intPart, frac = string(digits[:len(digits)-7]), string(digits[len(digits)-7:])
		}
	}
	frac = strings.TrimRight(frac, "0")
	out := intPart
	if frac != "" {
		out += "." + frac
	}
	if f < 0 && out != "0" {
		out = "-" + out
	}
	return out
}

// variablesObject is the `variables` named value: an object whose keys are
// looked up through the Context and which, like the agent's
// VariablesDictionary, cannot be enumerated.
type variablesObject struct{ c Context }

// filtered is the result of a wildcard index (foo.*, foo[*]); indexing a
// filtered array applies the index to each element.
type filtered []any

// normalize brings values that come from outside (a Context, a map element)
// into the engine's canonical Go types: numbers become float64 (a
// json.Number too), *Version a Version, named string and bool types their
// underlying values.
func normalize(v any) any {
	switch x := v.(type) {
	case nil, bool, float64, string, Version, []any, []string, map[string]any, map[string]string, filtered, variablesObject:
		return v
	case *Version:
		if x == nil {
			return nil
		}
		return *x
	case json.Number:
		if f, err := x.Float64(); err == nil {
			return f
		}
		return string(x)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return rv.Bool()
	}
	return v
}

func kindOf(v any) kind {
	switch v.(type) {
	case nil:
		return kindNull
	case bool:
		return kindBoolean
	case float64:
		return kindNumber
	case string:
		return kindString
	case Version:
		return kindVersion
	case []any, []string, filtered:
		return kindArray
	default:
		return kindObject
	}
}

// formatValue renders a value the way the official trace and error messages
// do (ExpressionUtil.FormatValue): 'quoted' strings, versions prefixed with v,
// and only the kind name for null, arrays and objects.
func formatValue(v any) string {
	switch x := v.(type) {
	case bool:
		return boolString(x)
	case float64:
		return formatNumber(x)
	case string:
		return quote(x)
	case Version:
		return "v" + x.String()
	}
	return kindOf(v).String()
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func boolString(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// castError is the official TypeCastException message.
func castError(v any, to kind) error {
	return fmt.Errorf("Unable to convert from %s to %s. Value: %s", kindOf(v), to, formatValue(v))
}

func toBool(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true // versions, arrays, objects
}

func toNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case float64:
		return x, true
	case string:
		if x == "" {
			return 0, true
		}
		return parseNumber(x, false)
	}
	return 0, false
}

func toString(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case bool:
		return boolString(x), true
	case float64:
		return formatNumber(x), true
	case string:
		return x, true
	case Version:
		return x.String(), true
	}
	return "", false
}

func toVersion(v any) (Version, bool) {
	switch x := v.(type) {
	case Version:
		return x, true
	case float64:
		return ParseVersion(formatNumber(x))
	case string:
		return ParseVersion(x)
	}
	return Version{}, false
}

// toNull: only null and the empty string convert to null.
func toNull(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	}
	return false
}

func mustNumber(v any) (float64, error) {
	if f, ok := toNumber(v); ok {
		return f, nil
	}
	return 0, castError(v, kindNumber)
}

func mustString(v any) (string, error) {
	if s, ok := toString(v); ok {
		return s, nil
	}
	return "", castError(v, kindString)
}

// equal is EvaluationResult.Equals: the right operand is converted to the
// left operand's kind; a failed conversion means "not equal".
func equal(l, r any) bool {
	switch x := l.(type) {
	case nil:
		return toNull(r)
	case bool:
		return x == toBool(r)
	case float64:
		f, ok := toNumber(r)
		return ok && x == f
	case string:
		s, ok := toString(r)
		return ok && equalFold(x, s)
	case Version:
		v, ok := toVersion(r)
		return ok && x == v
	}
	return kindOf(l) == kindOf(r) && sameRef(l, r)
}

// sameRef is the reference equality .NET applies to arrays and objects.
func sameRef(a, b any) bool {
	if _, ok := a.(variablesObject); ok {
		// The agent builds a new dictionary each time `variables` is evaluated.
		return false
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if !va.IsValid() || !vb.IsValid() || va.Type() != vb.Type() {
		return false
	}
	switch va.Kind() {
	case reflect.Map:
		return va.UnsafePointer() == vb.UnsafePointer()
	case reflect.Slice:
		return va.UnsafePointer() == vb.UnsafePointer() && va.Len() == vb.Len()
	}
	return va.Comparable() && vb.Comparable() && va.Equal(vb)
}

// compare is EvaluationResult.CompareTo: null, arrays and objects on the left
// are first converted to numbers; the right operand is converted to the left
// operand's kind, and a failed conversion is an error.
func compare(l, r any) (int, error) {
	switch x := l.(type) {
	case bool:
		rb := toBool(r)
		switch {
		case x == rb:
			return 0, nil
		case !x:
			return -1, nil
		}
		return 1, nil
	case string:
		s, ok := toString(r)
		if !ok {
			return 0, castError(r, kindString)
		}
		return compareFold(x, s), nil
	case Version:
		v, ok := toVersion(r)
		if !ok {
			return 0, castError(r, kindVersion)
		}
		return x.compare(v), nil
	}
	lf, err := mustNumber(l)
	if err != nil {
		return 0, err
	}
	rf, err := mustNumber(r)
	if err != nil {
		return 0, err
	}
	switch {
	case lf < rf:
		return -1, nil
	case lf > rf:
		return 1, nil
	}
	return 0, nil
}

// upperRune is the simple upper-case mapping StringComparison.OrdinalIgnoreCase uses.
func upperRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	return unicode.ToUpper(r)
}

func upperFold(s string) string { return strings.Map(upperRune, s) }

func equalFold(a, b string) bool {
	if a == b {
		return true
	}
	return compareFold(a, b) == 0
}

// compareFold is string.Compare(a, b, StringComparison.OrdinalIgnoreCase):
// upper-cased UTF-16 code units compared numerically.
func compareFold(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		a, b = a[na:], b[nb:]
		ua, ub := utf16Key(upperRune(ra)), utf16Key(upperRune(rb))
		if ua != ub {
			if ua < ub {
				return -1
			}
			return 1
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

// utf16Key orders runes as their UTF-16 encodings order: a supplementary
// character (a surrogate pair starting 0xD800–0xDBFF) sorts before U+E000–U+FFFF.
func utf16Key(r rune) int64 {
	if r >= 0x10000 {
		return 0xD800<<21 | int64(r)
	}
	return int64(r) << 21
}

// utf16Len is .NET's String.Length.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r >= 0x10000 {
			n++
		}
	}
	return n
}

// objectGet looks key up in an object. Dictionaries given by a caller are
// searched exactly first and then ignoring case, because the service's
// dictionaries (variables, dependencies) are case-insensitive.
func objectGet(obj any, key string) (any, bool) {
	switch m := obj.(type) {
	case variablesObject:
		if m.c == nil {
			return nil, false
		}
		s, ok := m.c.Variable(key)
		if !ok {
			return nil, false
		}
		return s, true
	case map[string]any:
		if v, ok := m[key]; ok {
			return normalize(v), true
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if equalFold(k, key) {
				return normalize(m[k]), true
			}
		}
	case map[string]string:
		if v, ok := m[key]; ok {
			return v, true
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if equalFold(k, key) {
				return m[k], true
			}
		}
	}
	return nil, false
}

// arrayItems returns the elements of an array value, normalized.
func arrayItems(v any) ([]any, bool) {
	switch a := v.(type) {
	case []any:
		out := make([]any, len(a))
		for i, x := range a {
			out[i] = normalize(x)
		}
		return out, true
	case filtered:
		return a, true
	case []string:
		out := make([]any, len(a))
		for i, x := range a {
			out[i] = x
		}
		return out, true
	}
	return nil, false
}

// errNotEnumerable is what the agent's VariablesDictionary throws when an
// expression tries to list all variables.
var errNotEnumerable = errors.New("Specified method is not supported: the variables object cannot be enumerated")

// objectEntries lists an object's keys (sorted, since Go maps have no order)
// and values.
func objectEntries(v any) ([]string, []any, bool, error) {
	switch m := v.(type) {
	case variablesObject:
		return nil, nil, false, errNotEnumerable
	case map[string]any:
		keys := slices.Sorted(maps.Keys(m))
		vals := make([]any, len(keys))
		for i, k := range keys {
			vals[i] = normalize(m[k])
		}
		return keys, vals, true, nil
	case map[string]string:
		keys := slices.Sorted(maps.Keys(m))
		vals := make([]any, len(keys))
		for i, k := range keys {
			vals[i] = m[k]
		}
		return keys, vals, true, nil
	}
	return nil, nil, false, nil
}

// exported converts internal values into the documented Eval results.
func exported(v any) any {
	switch x := v.(type) {
	case filtered:
		return []any(x)
	case variablesObject:
		return map[string]any{}
	}
	return v
}

package deploy

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
)

// A reader for the subset of Bicep the examples use: declarations whose
// values are object and array literals, with any other expression kept as
// its source text. No Bicep compiler runs here (it is a .NET tool), so the
// tests read the template's structure with this instead of with regular
// expressions: a misplaced brace or a property at the wrong depth fails.

// bicepValue is an object, an array, or an expression (Expr, its source
// text; Str and IsStr when it is a plain string literal).
type bicepValue struct {
	Keys  []string               // object keys in order
	Obj   map[string]*bicepValue // nil unless an object
	Arr   []*bicepValue          // nil unless an array (IsArr)
	IsArr bool
	Expr  string
	Str   string
	IsStr bool
}

// get walks object keys; nil when a key is missing.
func (v *bicepValue) get(keys ...string) *bicepValue {
	for _, k := range keys {
		if v == nil || v.Obj == nil {
			return nil
		}
		v = v.Obj[k]
	}
	return v
}

// text is a string literal's value or an expression's source.
func (v *bicepValue) text() string {
	if v == nil {
		return ""
	}
	if v.IsStr {
		return v.Str
	}
	return v.Expr
}

// bicepDecl is a top-level declaration: resource, param, var or output.
type bicepDecl struct {
	Keyword string // resource, param, var, output, …
	Name    string
	Type    string // a resource's 'TYPE@API', a param's or output's type
	Value   *bicepValue
}

type bicepToken struct {
	kind   string // "nl", "str", "word", or the punctuation itself
	text   string // source text
	str    string // a string token's value
	interp bool   // a string token with ${…}
	pos    int
}

func bicepTokens(src string) ([]bicepToken, error) {
	var toks []bicepToken
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			toks = append(toks, bicepToken{kind: "nl", text: "\n", pos: i})
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case strings.HasPrefix(src[i:], "//"):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("offset %d: unterminated comment", i)
			}
			i += end + 4
		case strings.HasPrefix(src[i:], "'''"):
			end := strings.Index(src[i+3:], "'''")
			if end < 0 {
				return nil, fmt.Errorf("offset %d: unterminated multi-line string", i)
			}
			body := src[i+3 : i+3+end]
			toks = append(toks, bicepToken{kind: "str", text: src[i : i+end+6], str: body, pos: i})
			i += end + 6
		case c == '\'':
			start := i
			var b strings.Builder
			interp := false
			i++
			for {
				if i >= len(src) || src[i] == '\n' {
					return nil, fmt.Errorf("offset %d: unterminated string", start)
				}
				if src[i] == '\'' {
					i++
					break
				}
				if src[i] == '\\' && i+1 < len(src) {
					esc := map[byte]string{'\'': "'", '\\': "\\", 'n': "\n", 'r': "\r", 't': "\t", '$': "$"}[src[i+1]]
					if esc == "" {
						return nil, fmt.Errorf("offset %d: unknown escape \\%c", i, src[i+1])
					}
					b.WriteString(esc)
					i += 2
					continue
				}
				if strings.HasPrefix(src[i:], "${") {
					interp = true
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, bicepToken{kind: "str", text: src[start:i], str: b.String(), interp: interp, pos: start})
		case isWordByte(c):
			start := i
			for i < len(src) && isWordByte(src[i]) {
				i++
			}
			toks = append(toks, bicepToken{kind: "word", text: src[start:i], pos: start})
		default:
			toks = append(toks, bicepToken{kind: string(c), text: string(c), pos: i})
			i++
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '.' || c < 0x80 && (unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)))
}

type bicepParser struct {
	src  string
	toks []bicepToken
	i    int
}

func parseBicep(src string) ([]bicepDecl, error) {
	toks, err := bicepTokens(src)
	if err != nil {
		return nil, err
	}
	p := &bicepParser{src: src, toks: toks}
	var decls []bicepDecl
	for {
		p.skip("nl")
		if p.done() {
			return decls, nil
		}
		if p.peek().kind == "@" { // a decorator: @description(…) and the like
			p.i++
			if _, err := p.expr(); err != nil {
				return nil, err
			}
			continue
		}
		d, err := p.decl()
		if err != nil {
			return nil, err
		}
		decls = append(decls, d)
	}
}

func (p *bicepParser) done() bool       { return p.i >= len(p.toks) }
func (p *bicepParser) peek() bicepToken { return p.toks[p.i] }

func (p *bicepParser) skip(kinds ...string) {
	for !p.done() {
		k := p.peek().kind
		ok := false
		for _, want := range kinds {
			ok = ok || k == want
		}
		if !ok {
			return
		}
		p.i++
	}
}

func (p *bicepParser) errf(format string, a ...any) error {
	pos := len(p.src)
	if !p.done() {
		pos = p.peek().pos
	}
	line := strings.Count(p.src[:pos], "\n") + 1
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, a...))
}

// decl reads KEYWORD NAME [TYPE …] [= VALUE] up to the end of the line or
// of the value.
func (p *bicepParser) decl() (bicepDecl, error) {
	kw := p.peek()
	if kw.kind != "word" {
		return bicepDecl{}, p.errf("want a declaration, found %q", kw.text)
	}
	p.i++
	d := bicepDecl{Keyword: kw.text}
	if p.done() || p.peek().kind != "word" {
		return d, p.errf("%s without a name", kw.text)
	}
	d.Name = p.peek().text
	p.i++
	// Everything up to "=" (or the end of the line) is the type part:
	// 'TYPE@API' [existing], or a type name.
	var typ []string
	for !p.done() && p.peek().kind != "=" && p.peek().kind != "nl" {
		t := p.peek()
		if t.kind == "str" {
			typ = append(typ, t.str)
		} else {
			typ = append(typ, t.text)
		}
		p.i++
	}
	d.Type = strings.Join(typ, " ")
	if p.done() || p.peek().kind == "nl" {
		return d, nil
	}
	p.i++ // =
	if !p.done() && p.peek().kind == "word" && p.peek().text == "if" {
		p.i++
		if err := p.group(); err != nil { // the (condition)
			return d, err
		}
	}
	v, err := p.value()
	if err != nil {
		return d, err
	}
	d.Value = v
	return d, nil
}

// value reads an object, an array, or an expression.
func (p *bicepParser) value() (*bicepValue, error) {
	if p.done() {
		return nil, p.errf("missing value")
	}
	switch p.peek().kind {
	case "{":
		return p.object()
	case "[":
		// An array literal, unless the brackets are part of an expression
		// such as [ … ][0]; the examples do not use those.
		return p.array()
	}
	return p.expr()
}

func (p *bicepParser) object() (*bicepValue, error) {
	p.i++ // {
	v := &bicepValue{Obj: map[string]*bicepValue{}}
	for {
		p.skip("nl", ",")
		if p.done() {
			return nil, p.errf("unterminated object")
		}
		t := p.peek()
		if t.kind == "}" {
			p.i++
			return v, nil
		}
		var key string
		switch t.kind {
		case "word":
			key = t.text
		case "str":
			key = t.str
		default:
			return nil, p.errf("want a property name, found %q", t.text)
		}
		p.i++
		if p.done() || p.peek().kind != ":" {
			return nil, p.errf("want ':' after %q", key)
		}
		p.i++
		val, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, dup := v.Obj[key]; dup {
			return nil, p.errf("property %q set twice", key)
		}
		v.Keys = append(v.Keys, key)
		v.Obj[key] = val
	}
}

func (p *bicepParser) array() (*bicepValue, error) {
	p.i++ // [
	v := &bicepValue{IsArr: true}
	for {
		p.skip("nl", ",")
		if p.done() {
			return nil, p.errf("unterminated array")
		}
		if p.peek().kind == "]" {
			p.i++
			return v, nil
		}
		item, err := p.value()
		if err != nil {
			return nil, err
		}
		v.Arr = append(v.Arr, item)
	}
}

// group skips one balanced (…) group.
func (p *bicepParser) group() error {
	if p.done() || p.peek().kind != "(" {
		return p.errf("want '('")
	}
	depth := 0
	for !p.done() {
		switch p.peek().kind {
		case "(":
			depth++
		case ")":
			depth--
		}
		p.i++
		if depth == 0 {
			return nil
		}
	}
	return p.errf("unbalanced parentheses")
}

// expr reads tokens up to a newline, comma or closing bracket at depth 0,
// keeping nested brackets whole, and returns the source text.
func (p *bicepParser) expr() (*bicepValue, error) {
	start := p.i
	depth := 0
	for !p.done() {
		k := p.peek().kind
		if depth == 0 && (k == "nl" || k == "," || k == "}" || k == "]" || k == ")") {
			break
		}
		switch k {
		case "(", "[", "{":
			depth++
		case ")", "]", "}":
			depth--
		}
		p.i++
	}
	if depth != 0 {
		return nil, p.errf("unbalanced brackets")
	}
	if p.i == start {
		return nil, p.errf("missing expression")
	}
	first, last := p.toks[start], p.toks[p.i-1]
	v := &bicepValue{Expr: p.src[first.pos : last.pos+len(last.text)]}
	if p.i == start+1 && first.kind == "str" && !first.interp {
		v.Str, v.IsStr = first.str, true
	}
	return v, nil
}

func TestBicepReader(t *testing.T) {
	src := `// comment
@description('a param')
param pool string = 'aca'
@secure()
param pat string
var n = 3
resource r 'Microsoft.X/y@2024-01-01' existing = if (!empty(pool)) {
  name: 'it\'s'
  /* block */ props: {
    list: [
      { name: 'A', value: pool }
      {
        name: 'B'
        value: '${pool}-x'
      }
    ]
    cond: empty(pool) ? [] : [ { server: 'x' } ]
    'quoted key': json('2.0')
  }
}
output o string = r.properties.x
`
	decls, err := parseBicep(src)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range decls {
		kinds = append(kinds, d.Keyword+" "+d.Name)
	}
	if got := strings.Join(kinds, ", "); got != "param pool, param pat, var n, resource r, output o" {
		t.Fatalf("declarations: %s", got)
	}
	r := decls[3]
	if r.Type != "Microsoft.X/y@2024-01-01 existing" {
		t.Errorf("resource type %q", r.Type)
	}
	if got := r.Value.get("name"); !got.IsStr || got.Str != "it's" {
		t.Errorf("name = %+v", got)
	}
	list := r.Value.get("props", "list")
	if list == nil || len(list.Arr) != 2 || list.Arr[0].get("name").Str != "A" || list.Arr[0].get("value").Expr != "pool" {
		t.Fatalf("list = %+v", list)
	}
	if b := list.Arr[1].get("value"); b.IsStr || b.Expr != "'${pool}-x'" {
		t.Errorf("an interpolated string must stay an expression: %+v", b)
	}
	if c := r.Value.get("props", "cond").Expr; c != "empty(pool) ? [] : [ { server: 'x' } ]" {
		t.Errorf("conditional kept as %q", c)
	}
	if q := r.Value.get("props", "quoted key").Expr; q != "json('2.0')" {
		t.Errorf("quoted key = %q", q)
	}
	if decls[0].Value.Str != "aca" || decls[0].Type != "string" {
		t.Errorf("param default %+v type %q", decls[0].Value, decls[0].Type)
	}

	for _, bad := range []string{
		"resource r 'T@1' = {\n  a: 1\n", // unterminated object
		"var x = {\n  a: 1\n  a: 2\n}\n", // duplicate key
		"var x = 'open\n",                // unterminated string
		"var x = {\n  a 1\n}\n",          // missing colon
		"var x = foo(\n",                 // unbalanced
	} {
		if _, err := parseBicep(bad); err == nil {
			t.Errorf("accepted malformed Bicep %q", bad)
		}
	}
}

package expr

import (
	"errors"
	"strings"
	"testing"
)

func parseMsg(reason, token string, pos int, expr string) string {
	return reason + ": '" + token + "'. Located at position " + itoa(pos) + " within expression: " + expr +
		". For more help, refer to https://go.microsoft.com/fwlink/?linkid=842996"
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestParseErrors(t *testing.T) {
	const (
		unexpected   = "Unexpected symbol"
		unrecognized = "Unrecognized value"
	)
	cases := []struct {
		expr, reason, token string
		pos                 int
	}{
		{"eq(1, 2", "Unclosed function", "eq", 1},
		{"  eq(1, 2", "Unclosed function", "eq", 3},
		{"and(true, not(false)", "Unclosed function", "and", 1},
		{"variables['a'", "Unclosed indexer", "[", 10},
		{"eq(1, 2))", unexpected, ")", 9},
		{"foo()", unrecognized, "foo", 1},
		{"counter('a', 1)", unrecognized, "counter", 1},
		{"eq", "Expected '(' to follow a function", "eq", 1},
		{"eq 1", "Expected '(' to follow a function", "eq", 1},
		{"variables.", "Expected a property name to follow the dereference operator '.'", ".", 10},
		{"'abc", unrecognized, "'abc", 1},
		{"1.2.3.4.5", unrecognized, "1.2.3.4.5", 1},
		{"1..2", unrecognized, "1..2", 1},
		{"-1.2.3", unrecognized, "-1.2.3", 1},
		{"and(true)", unexpected, ")", 9},
		{"and()", unexpected, ")", 5},
		{"succeeded('A')", unexpected, ")", 14},
		{"not(true, false)", unexpected, ",", 9},
		{"true false", unexpected, "false", 6},
		{"eq(1,,2)", unexpected, ",", 6},
		{"eq(1,)", unexpected, ")", 6},
		{"eq(1 2)", unexpected, "2", 6},
		{"variables[]", unexpected, "]", 11},
		{"variables['a', 'b']", unexpected, ",", 14},
		{"eq(variables[0 'x'], 1)", unexpected, "'x'", 16},
		{"[1]", unexpected, "[", 1},
		{"(true)", unexpected, "(", 1},
		{")", unexpected, ")", 1},
		{",", unexpected, ",", 1},
		{"*", unexpected, "*", 1},
		{"variables[**]", unexpected, "*", 12},
		{"'a'[0]", unexpected, "[", 4},
		{"null()", unexpected, "(", 5},
		{"true()", unexpected, "(", 5},
		{"-", unrecognized, "-", 1},
		{"+1", unrecognized, "+1", 1},
		{"1e5", unrecognized, "1e5", 1},
		{"0x10", unrecognized, "0x10", 1},
		{"NaN", unrecognized, "NaN", 1},
		{"eq(1, 2)x", unrecognized, "x", 9},
		{"dependencies.A.result", unrecognized, "dependencies", 1},
		{"variables.foo-bar", unexpected, "foo-bar", 11},
		{"variables.1a", unexpected, "1a", 11},
		{"eq(\"a\", 'a')", unrecognized, "\"a\"", 4},
		{"ü", unrecognized, "ü", 1},
		{"eq('ü', x)", unrecognized, "x", 9},
		{"eq('😀', x)", unrecognized, "x", 10}, // positions count UTF-16 code units
		{"eq(1, 2) && true", unrecognized, "&&", 10},
	}
	for _, c := range cases {
		t.Run(c.expr, func(t *testing.T) {
			e, err := Parse(c.expr)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) = %v, %v; want a *ParseError", c.expr, e, err)
			}
			want := parseMsg(c.reason, c.token, c.pos, c.expr)
			if err.Error() != want {
				t.Fatalf("Parse(%q) error\n got %s\nwant %s", c.expr, err, want)
			}
			if pe.Reason != c.reason || pe.Token != c.token || pe.Position != c.pos || pe.Expression != c.expr {
				t.Fatalf("ParseError fields = %+v", pe)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, s := range []string{"", "   ", "\t\n"} {
		if _, err := Parse(s); !errors.Is(err, ErrEmpty) {
			t.Errorf("Parse(%q) error = %v; want ErrEmpty", s, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	nest := func(n int, open, inner, close string) string {
		return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
	}
	depthErr := "Exceeded max expression depth 50. For more help, refer to https://go.microsoft.com/fwlink/?linkid=842996"
	lengthErr := "Exceeded max expression length 21000. For more help, refer to https://go.microsoft.com/fwlink/?linkid=842996"

	ok := []string{
		nest(49, "not(", "true", ")"),
		nest(48, "not(", "variables['x']", ")"),
		"'" + strings.Repeat("a", MaxLength-2) + "'",
		"'" + strings.Repeat("😀", (MaxLength-2)/2) + "'",
		// Dereferences do not nest containers.
		"variables" + strings.Repeat(".a", 100),
	}
	for _, s := range ok {
		e, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%.60q…): %v", s, err)
		}
		if _, err := e.Eval(vars{}); err != nil {
			t.Fatalf("Eval(%.60q…): %v", s, err)
		}
	}
	bad := map[string]string{
		nest(50, "not(", "true", ")"):                depthErr,
		nest(49, "not(", "variables['x']", ")"):      depthErr,
		nest(25, "not(eq(", "true, true)", ", 1)"):   depthErr,
		"'" + strings.Repeat("a", MaxLength-1) + "'": lengthErr,
		"'" + strings.Repeat("😀", MaxLength/2) + "'": lengthErr,
	}
	for s, want := range bad {
		_, err := Parse(s)
		var pe *ParseError
		if !errors.As(err, &pe) || err.Error() != want {
			t.Fatalf("Parse(%.60q…) error = %v; want %q", s, err, want)
		}
	}
}

func TestSyntax(t *testing.T) {
	for _, s := range []string{"dependencies.a.result", "succeeded('A')", "failed('A', 'B')", "parameters['x']"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded; the agent's syntax must reject it", s)
		}
		if _, err := jobSyntax.Parse(s); err != nil {
			t.Errorf("jobSyntax.Parse(%q): %v", s, err)
		}
	}
	// Built-in functions keep their arity whatever a Syntax declares.
	override := Syntax{Functions: []FuncSig{{Name: "eq", MinArgs: 1, MaxArgs: 5}}}
	if _, err := override.Parse("eq(1)"); err == nil || err.Error() != parseMsg("Unexpected symbol", ")", 5, "eq(1)") {
		t.Errorf("override.Parse(eq(1)) error = %v", err)
	}
	// A declared status function keeps its agent semantics for zero arguments.
	e, err := Syntax{Functions: []FuncSig{{Name: "SUCCEEDED", MaxArgs: 3}}}.Parse("succeeded()")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.EvalBool(vars{status: "failed"}); err != nil || got {
		t.Errorf("succeeded() on a failed job = %v, %v; want false", got, err)
	}
	invalid := []Syntax{
		{NamedValues: []string{"bad-name"}},
		{NamedValues: []string{""}},
		{Functions: []FuncSig{{Name: "9lives", MaxArgs: 1}}},
		{Functions: []FuncSig{{Name: "f", MinArgs: 2, MaxArgs: 1}}},
		{Functions: []FuncSig{{Name: "f", MinArgs: -1, MaxArgs: 1}}},
	}
	for _, s := range invalid {
		if _, err := s.Parse("true"); err == nil {
			t.Errorf("%+v.Parse succeeded; want a declaration error", s)
		}
	}
}

func TestString(t *testing.T) {
	for _, s := range []string{"  and( succeeded(),eq(variables.X,'y') ) ", "variables['a.b']", "1.2.3"} {
		e, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if e.String() != s {
			t.Errorf("String() = %q; want %q", e.String(), s)
		}
	}
}

package expr

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that parsing never panics, that a parsed expression
// keeps its text, that its canonical rendering parses back to the same
// rendering, and that evaluating it never panics and agrees with its trace.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"succeeded()",
		"and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'))",
		"or(failed(), canceled(), succeededOrFailed(), always())",
		"eq(variables.letters, 'ABC')",
		"not(eq(1, 2))",
		"in('B', 'A', 'B', 'C')",
		"notIn('D', 'A', 'B', 'C')",
		"xor(True, False)",
		"ge(5, 5)", "gt(5, 2)", "le(2, 2)", "lt(2, 5)", "ne(1, 2)",
		"contains('ABCDE', 'BCD')", "startsWith('ABCDE', 'AB')", "endsWith('ABCDE', 'DE')",
		"format('Hello {0} {1}', 'John', 'Doe')",
		"format('literal left brace {{ and literal right brace }}')",
		"coalesce(variables.couldBeNull, variables.couldAlsoBeNull, 'literal so it always works')",
		"join(';', split('a,b,c', ','))",
		"length('fabrikam')", "lower('FOO')", "upper('bah')",
		"replace('https://a/b', 'https://a', 'http://c')",
		"convertToJson(split('one,two', ','))",
		"iif(eq(variables['Build.Reason'], 'PullRequest'), 'a', 'b')",
		"trim('  variable  ')",
		"containsValue(split('a,b', ','), 'b')",
		"split('a,b', ',')[1]", "split('a,b', ',')[*]", "variables.*", "variables[*]",
		"true", "FALSE", "null", "-1.2", ".5", "1.", "1.2.3", "1.2.3.4", "'It''s'",
		"eq('1', 1)", "eq(1, ' 1,000.5 ')", "eq(16, '0x10')", "gt(1.10.0, '1.9.0')",
		"eq(variables.nosuch, '')", "lt(null, 1)",
		"parameters.fruits.*.colors[0]", "convertToJson(dependencies)", "succeeded('A', 'b')",
		// Malformed input.
		"", " ", "eq(1, 2", "eq(1,,2)", "variables.", "variables[", "'abc", "foo()", "[1]",
		"eq(1 2)", "variables[**]", "variables[*[1]]", "1..2", "-", "((", "))", ",", ".",
		"eq('😀', x)", "\xff\xfe", "variables.a.b.c['d'].e",
		strings.Repeat("not(", 49) + "true" + strings.Repeat(")", 49),
		strings.Repeat("not(", 50) + "true" + strings.Repeat(")", 50),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	ctx := vars{m: testVars}
	jobCtx := newJobContext("")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) && !errors.Is(err, ErrEmpty) {
				t.Fatalf("Parse(%q) returned an unexpected error type %T: %v", s, err, err)
			}
			if err.Error() == "" {
				t.Fatalf("Parse(%q) returned an empty error message", s)
			}
			return
		}
		if e.String() != s {
			t.Fatalf("String() = %q; want %q", e.String(), s)
		}
		canon := e.root.expression(true)
		e2, err := Parse(canon)
		if err != nil {
			// Canonical text can be longer (", " separators, 0.5 for .5).
			var pe *ParseError
			if errors.As(err, &pe) && strings.HasPrefix(pe.Reason, "Exceeded max expression length") {
				return
			}
			t.Fatalf("Parse(%q) = %v; canonical form of %q", canon, err, s)
		}
		if again := e2.root.expression(true); again != canon {
			t.Fatalf("canonical form not stable for %q:\n first %q\nsecond %q", s, canon, again)
		}
		v, evalErr := e.EvalBool(ctx)
		r, trace, traceErr := e.Trace(ctx)
		if (evalErr == nil) != (traceErr == nil) {
			t.Fatalf("%q: EvalBool error %v but Trace error %v", s, evalErr, traceErr)
		}
		if evalErr == nil {
			if v != r {
				t.Fatalf("%q: EvalBool = %v but Trace = %v", s, v, r)
			}
			if !strings.HasPrefix(trace, "Evaluating: ") || !strings.HasSuffix(trace, "Result: "+boolString(r)+"\n") {
				t.Fatalf("%q: malformed trace %q", s, trace)
			}
		}
		if _, err := e.Eval(ctx); (err == nil) != (evalErr == nil) {
			t.Fatalf("%q: Eval error %v but EvalBool error %v", s, err, evalErr)
		}
		// The job syntax accepts a superset; evaluate against its richer
		// context (collections, filtered arrays, extension functions).
		je, err := jobSyntax.Parse(s)
		if err != nil {
			t.Fatalf("jobSyntax.Parse(%q) = %v, but Parse accepted it", s, err)
		}
		if _, _, err := je.Trace(jobCtx); (err == nil) != (evalErr == nil) && !strings.Contains(s, "succeeded") && !strings.Contains(s, "failed") {
			t.Fatalf("%q: job syntax error %v but agent syntax error %v", s, err, evalErr)
		}
	})
}

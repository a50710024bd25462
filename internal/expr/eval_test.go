package expr

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	notEnumerable = "Specified method is not supported: the variables object cannot be enumerated"
)

func castMsg(from, to, value string) string {
	return "Unable to convert from " + from + " to " + to + ". Value: " + value
}

type evalCase struct {
	expr string
	want any
	err  string // exact error message; empty when no error is expected
	ext  bool   // uses names only the job syntax declares
}

// evalCases are drawn from the "Expressions" documentation (functions, type
// casting), the agent's ExpressionManagerL0 tests, and the behaviour of the
// official engine where the documentation is silent.
var evalCases = []evalCase{
	// Literals.
	{expr: "true", want: true},
	{expr: "TRUE", want: true},
	{expr: "False", want: false},
	{expr: "null", want: nil},
	{expr: "-1.2", want: -1.2},
	{expr: ".5", want: 0.5},
	{expr: "1.", want: 1.0},
	{expr: "007", want: 7.0},
	{expr: "-0", want: 0.0},
	{expr: "'a b c'", want: "a b c"},
	{expr: "'It''s OK if they''re using contractions.'", want: "It's OK if they're using contractions."},
	{expr: "''", want: ""},
	{expr: "1.2.3", want: Version{1, 2, 3, -1}},
	{expr: "1.2.3.4", want: Version{1, 2, 3, 4}},
	{expr: "  eq( 1 ,\t1 )  ", want: true},

	// Variables (ExpressionManagerL0.VariablesNamedValue and the docs).
	{expr: "variables['Build.SourceBranch']", want: "refs/heads/main"},
	{expr: "variables['build.sourcebranch']", want: "refs/heads/main"},
	{expr: "Variables.letters", want: "ABC"},
	{expr: "variables.nosuch", want: nil},
	{expr: "variables['nosuch']", want: nil},
	{expr: "variables[1]", want: "one"},
	{expr: "variables.*", want: nil},
	{expr: "eq(variables.someVARIABLE, 'someVALUE')", want: true},
	{expr: "eq(variables['some.VARIABLE'], 'someVALUE')", want: true},
	{expr: "eq(variables.nosuch, '')", want: true},
	{expr: "eq(variables['some.VARIABLE'], 'other value')", want: false},
	{expr: "eq(variables.nosuch, 'SomeValue')", want: false},
	{expr: "eq(variables.quote, 'it''s')", want: true},
	{expr: "eq(variables, variables)", want: false},
	{expr: "not(variables)", want: false},

	// Functions, with the documentation's examples.
	{expr: "and(eq(variables.letters, 'ABC'), eq(variables.numbers, 123))", want: true},
	{expr: "and(true, true, true, false)", want: false},
	{expr: "coalesce(variables.couldBeNull, variables.couldAlsoBeNull, 'literal so it always works')", want: "literal so it always works"},
	{expr: "coalesce(variables.empty, '', 'literal value')", want: "literal value"},
	{expr: "coalesce(variables.empty, variables.nosuch)", want: nil},
	{expr: "coalesce(variables.nosuch, variables.empty)", want: ""},
	{expr: "coalesce(0, 'x')", want: 0.0},
	{expr: "coalesce(false, 'x')", want: false},
	{expr: "contains('ABCDE', 'BCD')", want: true},
	{expr: "contains('ABCDE', 'bcd')", want: true},
	{expr: "contains('ABC', '')", want: true},
	{expr: "contains(123, 2)", want: true},
	{expr: "contains('abc', 'x')", want: false},
	{expr: "contains('Straße', 'STRASSE')", want: false},
	{expr: "endsWith('ABCDE', 'DE')", want: true},
	{expr: "endsWith('ABCDE', 'de')", want: true},
	{expr: "endsWith('ABCDE', 'CD')", want: false},
	{expr: "eq(variables.letters, 'ABC')", want: true},
	{expr: "format('Hello {0} {1}', 'John', 'Doe')", want: "Hello John Doe"},
	{expr: "format('literal left brace {{ and literal right brace }}')", want: "literal left brace { and literal right brace }"},
	{expr: "ge(5, 5)", want: true},
	{expr: "gt(5, 2)", want: true},
	{expr: "gt(5, 5)", want: false},
	{expr: "in('B', 'A', 'B', 'C')", want: true},
	{expr: "in('b', 'A', 'B', 'C')", want: true},
	{expr: "in('D', 'A', 'B', 'C')", want: false},
	{expr: "in(1, '1', '2')", want: true},
	{expr: "le(2, 2)", want: true},
	{expr: "lt(2, 5)", want: true},
	{expr: "lt(5, 2)", want: false},
	{expr: "ne(1, 2)", want: true},
	{expr: "ne('a', 'A')", want: false},
	{expr: "not(eq(1, 2))", want: true},
	{expr: "notIn('D', 'A', 'B', 'C')", want: true},
	{expr: "notIn('b', 'A', 'B')", want: false},
	{expr: "or(eq(1, 1), eq(2, 3))", want: true},
	{expr: "or(false, 0, '', variables.nosuch)", want: false},
	{expr: "startsWith('ABCDE', 'AB')", want: true},
	{expr: "startsWith(variables['Build.SourceBranch'], 'REFS/HEADS/')", want: true},
	{expr: "xor(True, False)", want: true},
	{expr: "xor(true, 'x')", want: false},
	{expr: "length('fabrikam')", want: 8.0},
	{expr: "length('')", want: 0.0},
	{expr: "length('😀')", want: 2.0}, // UTF-16 code units, like String.Length
	{expr: "length(split('a,b,c', ','))", want: 3.0},
	{expr: "lower('FOO')", want: "foo"},
	{expr: "upper('bah')", want: "BAH"},
	{expr: "upper(1.5)", want: "1.5"},
	{expr: "replace('https://www.tinfoilsecurity.com/saml/consume','https://www.tinfoilsecurity.com','http://server')", want: "http://server/saml/consume"},
	{expr: "replace('aXbXc', 'X')", want: "abc"},
	{expr: "replace('abc', '', 'z')", want: "abc"},
	{expr: "replace('aaa', 'A', 'b')", want: "aaa"},
	{expr: "split('prod1,prod2', ',')", want: []any{"prod1", "prod2"}},
	{expr: "split('a,,b,', ',')", want: []any{"a", "", "b", ""}},
	{expr: "split('a::b', '::')", want: []any{"a", "b"}},
	{expr: "split('abc', '')", want: []any{"abc"}},
	{expr: "split('', ',')", want: []any{""}},
	{expr: "split(variables.nosuch, ',')", want: []any{""}},
	{expr: "replace(split('/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/kubernetes-internal', '/')[8], '-', '_')", want: "kubernetes_internal"},
	{expr: "join(';', split('FOO,BAR,ZOO', ','))", want: "FOO;BAR;ZOO"},
	{expr: "join(',', 'abc')", want: "abc"},
	{expr: "join(',', 1.50)", want: "1.5"},
	{expr: "join(',', variables.nosuch)", want: ""},
	{expr: "join(',', split('', ','))", want: ""},
	{expr: "iif(eq(variables['Build.Reason'], 'PullRequest'), 'ManagedDevOpsPool', 'Azure Pipelines')", want: "Azure Pipelines"},
	{expr: "iif(eq(variables['Build.Reason'], 'IndividualCI'), 'ManagedDevOpsPool', 'Azure Pipelines')", want: "ManagedDevOpsPool"},
	{expr: "iif(true, 'a')", want: "a"},
	{expr: "iif(false, 'a')", want: nil},
	{expr: "trim('  variable  ')", want: "variable"},
	{expr: "trim(variables.spaced)", want: "10"},
	{expr: "convertToJson(split('one,two', ','))", want: "[\n  \"one\",\n  \"two\"\n]"},
	{expr: "convertToJson(split('', ','))", want: "[\n  \"\"\n]"},
	{expr: "convertToJson('a\"b\\c\nd')", want: `"a\"b\\c\nd"`},
	{expr: "convertToJson(1.50)", want: "1.5"},
	{expr: "convertToJson(true)", want: "true"},
	{expr: "convertToJson(variables.nosuch)", want: "null"},
	{expr: "convertToJson(1.2.3)", want: `"1.2.3"`},

	// Job status functions on a succeeded job (see statusCases for the rest).
	{expr: "always()", want: true},
	{expr: "succeeded()", want: true},
	{expr: "SUCCEEDED()", want: true},
	{expr: "succeededOrFailed()", want: true},
	{expr: "failed()", want: false},
	{expr: "canceled()", want: false},

	// Type casting: the documentation's examples.
	{expr: "lt(False, True)", want: true},
	{expr: "lt(True, False)", want: false},
	{expr: "eq('true', true)", want: true},
	{expr: "eq('false', true)", want: false},
	// Comparisons convert the right operand to the left operand's type.
	{expr: "eq('1', 1)", want: true},
	{expr: "eq(1, '1')", want: true},
	{expr: "eq(1, '1.0')", want: true},
	{expr: "eq('1.0', 1)", want: false},
	{expr: "eq(1.50, '1.5')", want: true},
	{expr: "eq('1.5', 1.50)", want: true},
	{expr: "eq('0.1234568', 0.12345675)", want: true},
	{expr: "eq('1', true)", want: false},
	{expr: "eq('True', true)", want: true},
	// String to number: Decimal.TryParse with white space, sign, decimal
	// point and thousands separators; no hex, exponent or NaN.
	{expr: "eq(1, ' 1 ')", want: true},
	{expr: "eq(10, variables.spaced)", want: true},
	{expr: "eq(variables.spaced, 10)", want: false},
	{expr: "eq(16, '0x10')", want: false},
	{expr: "ne(16, '0x10')", want: true},
	{expr: "eq(16, variables.hex)", want: false},
	{expr: "eq(1, 'NaN')", want: false},
	{expr: "eq(1, 'Infinity')", want: false},
	{expr: "eq(1000, '1,000')", want: true},
	{expr: "eq(1000.5, '1,000.5')", want: true},
	{expr: "eq(1, '1,')", want: true},
	{expr: "eq(1, ',1')", want: false},
	{expr: "eq(1, '1.000,5')", want: false},
	{expr: "eq(10, '+10')", want: true},
	{expr: "eq(-5, ' -5 ')", want: true},
	{expr: "eq(5, '- 5')", want: false},
	{expr: "eq(10, '1e1')", want: false},
	{expr: "eq(0.5, '.5')", want: true},
	{expr: "eq(5, '5.')", want: true},
	{expr: "eq(0, '')", want: true},
	{expr: "eq('', 0)", want: false},
	{expr: "gt(10, '')", want: true},
	{expr: "gt(16, '0x10')", err: castMsg("String", "Number", "'0x10'")},
	{expr: "lt(1, 'abc')", err: castMsg("String", "Number", "'abc'")},
	{expr: "eq(123, variables.numbers)", want: true},
	// Booleans: any non-empty string is true, numbers are 1 and 0.
	{expr: "eq(true, 'false')", want: true},
	{expr: "eq(false, '')", want: true},
	{expr: "eq(true, 1)", want: true},
	{expr: "eq(1, true)", want: true},
	{expr: "eq(2, true)", want: false},
	{expr: "eq(true, 2)", want: true},
	{expr: "eq(0, false)", want: true},
	{expr: "eq(true, 1.2.3)", want: true},
	{expr: "gt(true, false)", want: true},
	{expr: "not('false')", want: false},
	{expr: "not(0)", want: true},
	{expr: "not(0.0)", want: true},
	{expr: "not(1.2.3)", want: false},
	// Null and the empty string.
	{expr: "eq(variables.nosuch, 0)", want: false},
	{expr: "eq(0, variables.nosuch)", want: true},
	{expr: "eq(variables.nosuch, variables.alsoNoSuch)", want: true},
	{expr: "eq('', variables.nosuch)", want: true},
	{expr: "eq(variables.nosuch, false)", want: false},
	{expr: "eq(false, variables.nosuch)", want: true},
	{expr: "eq(variables.empty, variables.nosuch)", want: true},
	{expr: "eq(variables.nosuch, variables.empty)", want: true},
	{expr: "eq(null, '')", want: true},
	{expr: "eq(null, null)", want: true},
	{expr: "ne(null, 'a')", want: true},
	{expr: "gt(1, null)", want: true},
	{expr: "lt(null, 1)", want: true},
	{expr: "eq(null, 'null')", want: false},
	// Versions.
	{expr: "eq(1.2.3, '1.2.3')", want: true},
	{expr: "eq('1.2.3', 1.2.3)", want: true},
	{expr: "eq(1.2.3, variables.version)", want: true},
	{expr: "eq(1.2.3, ' 1.2.3 ')", want: true},
	{expr: "gt(1.10.0, 1.9.0)", want: true},
	{expr: "gt('1.10.0', '1.9.0')", want: false},
	{expr: "gt(1.10.0, '1.9.0')", want: true},
	{expr: "gt(variables.version, '1.10.0')", want: true},
	{expr: "eq(1.2.0, '1.2')", want: false},
	{expr: "gt(1.2.0, '1.2')", want: true},
	{expr: "ge(1.2.3, 1.2)", want: true},
	{expr: "eq(1.2.0, 1.2)", want: false},
	{expr: "eq(1.2.3.0, 1.2.3)", want: false},
	{expr: "lt(1.2.3, 1.2.3.0)", want: true},
	{expr: "eq(1.2.3, 5)", want: false},
	{expr: "eq(1.2.3, 'abc')", want: false},
	{expr: "eq(1.-0.3, 1.0.3)", want: true},
	{expr: "lt(1.2.3, 'abc')", err: castMsg("String", "Version", "'abc'")},
	{expr: "gt(1.2.3, true)", err: castMsg("Boolean", "Version", "True")},
	{expr: "gt(1.2.3, null)", err: castMsg("Null", "Version", "Null")},
	// Strings compare ordinally, ignoring case.
	{expr: "eq('ABC', 'abc')", want: true},
	{expr: "lt('a', 'B')", want: true},
	{expr: "gt('b', 'A')", want: true},
	{expr: "lt('a', 'ab')", want: true},
	{expr: "eq('ÄÖÜ', 'äöü')", want: true},
	{expr: "eq('abc', 1.2.3)", want: false},
	{expr: "eq('1.2.3', 1.2.3)", want: true},
	// Numbers print with up to seven decimals.
	{expr: "format('{0}', 1000000)", want: "1000000"},
	{expr: "format('{0}', -0.5)", want: "-0.5"},
	{expr: "format('{0}', 0.12345675)", want: "0.1234568"},
	{expr: "format('{0}', 0.00000004)", want: "0"},
	{expr: "format('{0}', 9.99999999)", want: "10"},
	{expr: "format('{0}', 1.2.3)", want: "1.2.3"},
	{expr: "format('{0}', true)", want: "True"},
	{expr: "format('{0}', variables.nosuch)", want: ""},
	{expr: "format('{0}{0}{1}', 'a', 'b')", want: "aab"},
	{expr: "format('a}}b{{c')", want: "a}b{c"},
	{expr: "format('{000}', 'z')", want: "z"},
	{expr: "format('{0:yyyyMMdd}', 'x')", err: "The format specifiers 'yyyyMMdd' are not valid for objects of type 'String'"},
	{expr: "format('{0', 'a')", err: "The following format string is invalid: {0"},
	{expr: "format('{}', 'a')", err: "The following format string is invalid: {}"},
	{expr: "format('{ 0}', 'a')", err: "The following format string is invalid: { 0}"},
	{expr: "format('}')", err: "The following format string is invalid: }"},
	{expr: "format('{256}', 'a')", err: "The following format string is invalid: {256}"},
	{expr: "format('{1}', 'a')", err: "The following format string references more arguments than were supplied: {1}"},
	{expr: "format('{0}', split('a', ','))", err: castMsg("Array", "String", "Array")},

	// Arrays and objects.
	{expr: "eq(split('a', ','), split('a', ','))", want: false},
	{expr: "not(split('', ','))", want: false},
	{expr: "gt(split('a', ','), 1)", err: castMsg("Array", "Number", "Array")},
	{expr: "contains(split('a', ','), 'a')", err: castMsg("Array", "String", "Array")},
	{expr: "lower(split('a', ','))", err: castMsg("Array", "String", "Array")},
	{expr: "split('a,b,c', ',')[1]", want: "b"},
	{expr: "split('a,b,c', ',')['2']", want: "c"},
	{expr: "split('a,b', ',')[5]", want: nil},
	{expr: "split('a,b', ',')[-1]", want: nil},
	{expr: "split('a,b', ',')[1.7]", want: "b"},
	{expr: "split('a,b', ',')['x']", want: nil},
	{expr: "split('a,b', ',')[*]", want: []any{"a", "b"}},
	{expr: "lower('abc')[0]", want: nil},
	{expr: "lower('abc').*", want: []any{}},
	{expr: "length(1)", err: "Kind 'Number' not supported. Only arrays, strings, dictionaries, or collections are supported for the length function."},
	{expr: "length(variables.nosuch)", err: "Kind 'Null' not supported. Only arrays, strings, dictionaries, or collections are supported for the length function."},
	{expr: "length(variables)", err: notEnumerable},
	{expr: "convertToJson(variables)", err: notEnumerable},
	{expr: "containsValue(variables, 'x')", err: notEnumerable},
	{expr: "containsValue(split('a,b', ','), 'B')", want: true},
	{expr: "containsValue(split('1,2', ','), 2)", want: true},
	{expr: "containsValue(split('1,2', ','), 3)", want: false},
	{expr: "containsValue('ab', 'a')", want: false},

	// Short-circuiting: the failing argument is never evaluated.
	{expr: "and(false, gt(1, 'x'))", want: false},
	{expr: "or(true, gt(1, 'x'))", want: true},
	{expr: "and(true, gt(1, 'x'))", err: castMsg("String", "Number", "'x'")},
	{expr: "or(false, gt(1, 'x'))", err: castMsg("String", "Number", "'x'")},
	{expr: "xor(true, gt(1, 'x'))", err: castMsg("String", "Number", "'x'")},
	{expr: "in('a', 'a', gt(1, 'x'))", want: true},
	{expr: "notIn('a', 'a', gt(1, 'x'))", want: false},
	{expr: "coalesce('a', gt(1, 'x'))", want: "a"},
	{expr: "iif(true, 'a', gt(1, 'x'))", want: "a"},
	{expr: "iif(false, gt(1, 'x'), 'b')", want: "b"},
	{expr: "format('x', gt(1, 'y'))", want: "x"},
	{expr: "format('{1}', gt(1, 'y'), 'b')", want: "b"},
	{expr: "join(gt(1, 'x'), split('a', ','))", want: "a"},
	{expr: "containsValue(variables.nosuch, gt(1, 'x'))", want: false},
	{expr: "lower('x')[gt(1, 'y')]", want: nil},
	{expr: "variables.nosuch[gt(1, 'y')]", want: nil},

	// Names only the job syntax declares: dependencies, parameters and
	// job-level status functions, through the Context's extension points.
	{ext: true, expr: "and(succeeded(), ne(dependencies.A.outputs['printvar.skipsubsequent'], 'true'))", want: true},
	{ext: true, expr: "in(dependencies.a.result, 'Succeeded', 'SucceededWithIssues', 'Skipped')", want: true},
	{ext: true, expr: "in(dependencies.b.result, 'Succeeded', 'SucceededWithIssues', 'Skipped')", want: true},
	{ext: true, expr: "dependencies.nosuch.result", want: nil},
	{ext: true, expr: "succeeded('A')", want: true},
	{ext: true, expr: "succeeded('A', 'b')", want: false},
	{ext: true, expr: "failed('c')", want: true},
	{ext: true, expr: "failed('boom')", err: "failed(): boom"},
	{ext: true, expr: "custom('x')", err: "function custom() with 1 argument(s) is not available in this context: the caller declared it but does not implement it"},
	{ext: true, expr: "containsValue(parameters.branchOptions, variables['Build.SourceBranch'])", want: true},
	{ext: true, expr: "containsValue(parameters.branchOptions, 'refs/heads/dev')", want: false},
	{ext: true, expr: "containsValue(dependencies.A, 'SUCCEEDED')", want: true},
	{ext: true, expr: "join(';', parameters.myArray)", want: "FOO;BAR;ZOO"},
	{ext: true, expr: "length(parameters.myArray)", want: 3.0},
	{ext: true, expr: "length(dependencies)", want: 3.0},
	{ext: true, expr: "eq(parameters.count, 3)", want: true},
	{ext: true, expr: "eq(parameters.ver, '2.0')", want: true},
	{ext: true, expr: "eq(parameters.jsonNum, 2.5)", want: true},
	{ext: true, expr: "parameters.state", want: "ok"},
	{ext: true, expr: "parameters.small", want: 7.0},
	{ext: true, expr: "eq(parameters.flag, 'x')", want: true},
	{ext: true, expr: "parameters.foo.*.id", want: []any{1.0, 2.0, 3.0}},
	{ext: true, expr: "parameters.fruits[*].fruitName", want: []any{"apple", "lemon"}},
	{ext: true, expr: "parameters.fruits.*.colors[0]", want: []any{"red", "yellow"}},
	{ext: true, expr: "parameters.fruits.*.colors.*", want: []any{"red", "green", "yellow"}},
	{ext: true, expr: "parameters.fruits[1]['FRUITNAME']", want: "lemon"},
	{ext: true, expr: "convertToJson(parameters.listOfValues)", want: "{\n  \"this_is\": {\n    \"a_complex\": \"object\",\n    \"with\": [\n      \"one\",\n      \"two\"\n    ]\n  }\n}"},
	{ext: true, expr: "convertToJson(dependencies.b)", want: "{\n  \"outputs\": {},\n  \"result\": \"Skipped\"\n}"},
}

func TestEval(t *testing.T) {
	for _, c := range evalCases {
		t.Run(c.expr, func(t *testing.T) {
			// Every case runs against the job syntax and its extended context;
			// those that need no extension also against the agent's own.
			runs := []struct {
				parse func(string) (*Expr, error)
				ctx   Context
			}{{jobSyntax.Parse, newJobContext("")}}
			if !c.ext {
				runs = append(runs, struct {
					parse func(string) (*Expr, error)
					ctx   Context
				}{Parse, vars{m: testVars}})
			}
			for _, r := range runs {
				e, err := r.parse(c.expr)
				if err != nil {
					t.Fatalf("Parse(%q): %v", c.expr, err)
				}
				got, err := e.Eval(r.ctx)
				if c.err != "" {
					if err == nil || err.Error() != c.err {
						t.Fatalf("Eval(%q) = %#v, %v; want error %q", c.expr, got, err, c.err)
					}
					if _, _, terr := e.Trace(r.ctx); terr == nil || terr.Error() != c.err {
						t.Fatalf("Trace(%q) error = %v; want %q", c.expr, terr, c.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("Eval(%q): %v", c.expr, err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("Eval(%q) = %#v (%T); want %#v (%T)", c.expr, got, got, c.want, c.want)
				}
				b, err := e.EvalBool(r.ctx)
				if err != nil {
					t.Fatalf("EvalBool(%q): %v", c.expr, err)
				}
				if b != toBool(normalize(c.want)) {
					t.Fatalf("EvalBool(%q) = %v; want the truthiness of %#v", c.expr, b, c.want)
				}
				tb, _, err := e.Trace(r.ctx)
				if err != nil || tb != b {
					t.Fatalf("Trace(%q) = %v, %v; want %v", c.expr, tb, err, b)
				}
			}
		})
	}
}

// TestStatusFunctions mirrors ExpressionManagerL0: each function against every
// job status; "" is the agent's default (Succeeded).
func TestStatusFunctions(t *testing.T) {
	statuses := []string{"", "succeeded", "succeededWithIssues", "failed", "canceled", "Failed", "SUCCEEDED"}
	want := map[string][]bool{
		"always()":            {true, true, true, true, true, true, true},
		"succeeded()":         {true, true, true, false, false, false, true},
		"succeededOrFailed()": {true, true, true, true, false, true, true},
		"failed()":            {false, false, false, true, false, true, false},
		"canceled()":          {false, false, false, false, true, false, false},
		"not(canceled())":     {true, true, true, true, false, true, true},
	}
	for expr, results := range want {
		e, err := Parse(expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		for i, status := range statuses {
			got, err := e.EvalBool(vars{status: status})
			if err != nil || got != results[i] {
				t.Errorf("%s with job status %q = %v, %v; want %v", expr, status, got, err, results[i])
			}
			// The job syntax's context declines zero-argument calls, so the
			// agent's semantics must still apply.
			je, err := jobSyntax.Parse(expr)
			if err != nil {
				t.Fatalf("job syntax Parse(%q): %v", expr, err)
			}
			if got, err := je.EvalBool(newJobContext(status)); err != nil || got != results[i] {
				t.Errorf("job syntax %s with job status %q = %v, %v; want %v", expr, status, got, err, results[i])
			}
		}
	}
}

func TestNilContext(t *testing.T) {
	e, err := Parse("and(succeeded(), eq(variables.x, ''))")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.EvalBool(nil); err != nil || !got {
		t.Fatalf("EvalBool(nil) = %v, %v; want true", got, err)
	}
}

// A declared named value the Context does not provide is null.
func TestNamedValueWithoutProvider(t *testing.T) {
	e, err := jobSyntax.Parse("eq(dependencies.A.result, '')")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.EvalBool(vars{}); err != nil || !got {
		t.Fatalf("EvalBool = %v, %v; want true", got, err)
	}
	e, err = jobSyntax.Parse("failed('boom')")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Eval(newJobContext("")); !errors.Is(err, errBoom) {
		t.Fatalf("Eval error = %v; want it to wrap errBoom", err)
	}
}

// The official engine caps evaluation memory at 1 MiB.
func TestMemoryLimit(t *testing.T) {
	big := strings.Repeat("a", 2000)
	for _, expr := range []string{
		"replace('" + big + "', 'a', '" + big + "')",
		"format('" + strings.Repeat("{0}", 1000) + "', '" + big + "')",
	} {
		e, err := Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Eval(vars{}); err == nil || !strings.HasPrefix(err.Error(), "The maximum allowed memory size was exceeded while evaluating the following expression: ") {
			t.Fatalf("Eval(%.40q…) error = %v; want the memory limit", expr, err)
		}
	}
}

func TestConcurrentEval(t *testing.T) {
	e, err := Parse("and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'), contains(format('{0}-{1}', variables.letters, 1.5), 'abc-1.5'))")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for i := 0; i < 8; i++ {
		go func() {
			for j := 0; j < 50; j++ {
				ok, tr, err := e.Trace(vars{m: testVars})
				if err == nil && (!ok || !strings.HasSuffix(tr, "Result: True\n")) {
					err = errors.New("unexpected result " + tr)
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

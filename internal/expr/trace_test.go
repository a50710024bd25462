package expr

import "testing"

// The trace format follows ExpressionNode.Evaluate/TraceTreeResult: the
// normalized expression, the expansion (only when it differs from the
// result), the result.
func TestTrace(t *testing.T) {
	cases := []struct {
		expr, status string
		result       bool
		trace        string
	}{
		{"succeeded()", "", true,
			"Evaluating: succeeded()\nResult: True\n"},
		{"failed()", "", false,
			"Evaluating: failed()\nResult: False\n"},
		{"true", "", true,
			"Evaluating: True\nResult: True\n"},
		{"and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'))", "", true,
			"Evaluating: and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'))\n" +
				"Expanded: and(True, eq('refs/heads/main', 'refs/heads/main'))\nResult: True\n"},
		// Short-circuited arguments stay unexpanded.
		{"and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'))", "failed", false,
			"Evaluating: and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'))\n" +
				"Expanded: and(False, eq(variables['Build.SourceBranch'], 'refs/heads/main'))\nResult: False\n"},
		// Property dereference is written as an index; function names keep
		// their spelling; literals are re-rendered.
		{"AND( Succeeded() ,eq(variables.letters,'abc'), eq(1.50, .5), ne(1.2.3, 'It''s'))", "", false,
			"Evaluating: AND(Succeeded(), eq(variables['letters'], 'abc'), eq(1.5, 0.5), ne(v1.2.3, 'It''s'))\n" +
				"Expanded: AND(True, eq('ABC', 'abc'), eq(1.5, 0.5), ne(v1.2.3, 'It''s'))\nResult: False\n"},
		{"not(canceled())", "canceled", false,
			"Evaluating: not(canceled())\nExpanded: not(True)\nResult: False\n"},
		{"or(failed(), variables.nosuch, variables)", "", true,
			"Evaluating: or(failed(), variables['nosuch'], variables)\nExpanded: or(False, Null, Object)\nResult: True\n"},
		// Functions whose trace shows their value.
		{"format('{0}-{1}', variables.letters, 2)", "", true,
			"Evaluating: format('{0}-{1}', variables['letters'], 2)\nExpanded: 'ABC-2'\nResult: True\n"},
		{"eq(join(',', split('a,b', ',')), 'a,b')", "", true,
			"Evaluating: eq(join(',', split('a,b', ',')), 'a,b')\nExpanded: eq('a,b', 'a,b')\nResult: True\n"},
		{"length(split('a,b', ','))", "", true,
			"Evaluating: length(split('a,b', ','))\nExpanded: length(Array)\nResult: True\n"},
		{"variables.empty", "", false,
			"Evaluating: variables['empty']\nExpanded: ''\nResult: False\n"},
		{"1.2.3", "", true,
			"Evaluating: v1.2.3\nExpanded: v1.2.3\nResult: True\n"},
		{"0", "", false,
			"Evaluating: 0\nExpanded: 0\nResult: False\n"},
		{"variables.*", "", false,
			"Evaluating: variables['*']\nExpanded: Null\nResult: False\n"},
	}
	for _, c := range cases {
		e, err := Parse(c.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.expr, err)
		}
		got, trace, err := e.Trace(vars{m: testVars, status: c.status})
		if err != nil || got != c.result || trace != c.trace {
			t.Errorf("Trace(%q) = %v, %v\n got %q\nwant %q", c.expr, got, err, trace, c.trace)
		}
	}
}

func TestTraceError(t *testing.T) {
	e, err := Parse("and(succeeded(), gt(1, variables.letters))")
	if err != nil {
		t.Fatal(err)
	}
	got, trace, err := e.Trace(vars{m: testVars})
	want := "Evaluating: and(succeeded(), gt(1, variables['letters']))\n"
	if err == nil || err.Error() != castMsg("String", "Number", "'ABC'") || got || trace != want {
		t.Fatalf("Trace = %v, %q, %v; want false, %q and a cast error", got, trace, err, want)
	}
}

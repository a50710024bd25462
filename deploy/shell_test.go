package deploy

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Shell commands (the az script, the Dockerfile's RUN lines, the Makefile's
// recipe) are read with a real POSIX/Bash parser and expanded with a stand-in
// environment: a variable the script gives a literal value expands to it,
// any other to "<NAME>", and a command substitution to "<cmd>". So
// `--env-vars "AZP_POOL=$AZP_POOL"` reads as the field AZP_POOL=<AZP_POOL>.

// shellCall is one simple command, expanded into fields.
type shellCall struct {
	assigns map[string]string // VAR=value prefixes
	args    []string
}

// shellCalls parses src and expands every simple command in it, in order,
// including those inside functions, conditions and command substitutions.
// known gives variables their values; others expand to "<NAME>".
func shellCalls(src string, lang syntax.LangVariant, known map[string]string) ([]shellCall, error) {
	f, err := syntax.NewParser(syntax.Variant(lang), syntax.KeepComments(false)).Parse(strings.NewReader(src), "")
	if err != nil {
		return nil, err
	}
	cfg := &expand.Config{
		Env: placeholderEnv{known: known, arrays: arrayNames(f)},
		CmdSubst: func(w io.Writer, _ *syntax.CmdSubst) error {
			_, err := io.WriteString(w, "<cmd>")
			return err
		},
	}
	var calls []shellCall
	syntax.Walk(f, func(n syntax.Node) bool {
		if err != nil {
			return false
		}
		ce, ok := n.(*syntax.CallExpr)
		if !ok {
			return true
		}
		c := shellCall{assigns: map[string]string{}}
		for _, a := range ce.Assigns {
			v := ""
			if a.Value != nil {
				if v, err = expand.Literal(cfg, a.Value); err != nil {
					err = fmt.Errorf("expand %s=…: %w", a.Name.Value, err)
					return false
				}
			}
			c.assigns[a.Name.Value] = v
		}
		if c.args, err = expand.Fields(cfg, ce.Args...); err != nil {
			err = fmt.Errorf("expand %q: %w", printWords(ce.Args), err)
			return false
		}
		calls = append(calls, c)
		return true
	})
	return calls, err
}

// literalAssignments collects VAR=literal assignments (no expansion in the
// value) anywhere in src, for use as known values.
func literalAssignments(src string) (map[string]string, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(src), "")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	syntax.Walk(f, func(n syntax.Node) bool {
		if a, ok := n.(*syntax.Assign); ok && a.Value != nil && a.Array == nil {
			if lit := a.Value.Lit(); lit != "" {
				out[a.Name.Value] = lit
			}
		}
		return true
	})
	return out, nil
}

// arrayNames lists variables assigned as arrays; they expand to nothing, as
// the optional-argument arrays of the script do when unused.
func arrayNames(f *syntax.File) map[string]bool {
	out := map[string]bool{}
	syntax.Walk(f, func(n syntax.Node) bool {
		if a, ok := n.(*syntax.Assign); ok && a.Array != nil {
			out[a.Name.Value] = true
		}
		return true
	})
	return out
}

func printWords(ws []*syntax.Word) string {
	var b strings.Builder
	p := syntax.NewPrinter()
	for i, w := range ws {
		if i > 0 {
			b.WriteByte(' ')
		}
		_ = p.Print(&b, w)
	}
	return b.String()
}

type placeholderEnv struct {
	known  map[string]string
	arrays map[string]bool
}

func (e placeholderEnv) Get(name string) expand.Variable {
	if e.arrays[name] {
		return expand.Variable{Set: true, Kind: expand.Indexed, List: []string{}}
	}
	if v, ok := e.known[name]; ok {
		return expand.Variable{Set: true, Kind: expand.String, Str: v}
	}
	return expand.Variable{Set: true, Kind: expand.String, Str: "<" + name + ">"}
}

func (e placeholderEnv) Each(func(string, expand.Variable) bool) {}

// findCalls returns the calls whose arguments start with prefix.
func findCalls(calls []shellCall, prefix ...string) []shellCall {
	var out []shellCall
	for _, c := range calls {
		if len(c.args) >= len(prefix) && slices.Equal(c.args[:len(prefix)], prefix) {
			out = append(out, c)
		}
	}
	return out
}

// cliFlags groups an az command's arguments after its verb words by flag:
// --flag v1 v2 → {"--flag": [v1, v2]}; a flag without values maps to nil.
func cliFlags(args []string) (map[string][]string, error) {
	flags := map[string][]string{}
	cur := ""
	for _, a := range args {
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "-<") {
			if _, dup := flags[a]; dup {
				return nil, fmt.Errorf("flag %s given twice", a)
			}
			cur = a
			flags[cur] = nil
			continue
		}
		if cur == "" {
			return nil, fmt.Errorf("argument %q before any flag", a)
		}
		flags[cur] = append(flags[cur], a)
	}
	return flags, nil
}

func TestShellReading(t *testing.T) {
	src := `set -eu
X=literal
opt=()
f() { az thing create --a "$X" --b "pre-$Y" "${opt[@]}" --c "$(date)" --flag; }
CGO_ENABLED=0 go build -o "$OUT"
`
	known, err := literalAssignments(src)
	if err != nil {
		t.Fatal(err)
	}
	calls, err := shellCalls(src, syntax.LangBash, known)
	if err != nil {
		t.Fatal(err)
	}
	az := findCalls(calls, "az", "thing", "create")
	if len(az) != 1 {
		t.Fatalf("found %d az calls in %+v", len(az), calls)
	}
	flags, err := cliFlags(az[0].args[3:])
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"--a": {"literal"}, "--b": {"pre-<Y>"}, "--c": {"<cmd>"}, "--flag": nil}
	if fmt.Sprint(flags) != fmt.Sprint(want) {
		t.Errorf("flags %v, want %v", flags, want)
	}
	gb := findCalls(calls, "go", "build")
	if len(gb) != 1 || gb[0].assigns["CGO_ENABLED"] != "0" || gb[0].args[3] != "<OUT>" {
		t.Errorf("go build call %+v", gb)
	}
	if _, err := cliFlags([]string{"--a", "1", "--a", "2"}); err == nil {
		t.Error("a repeated flag must be reported")
	}
	if _, err := shellCalls("if then", syntax.LangBash, nil); err == nil {
		t.Error("a syntax error must be reported")
	}
}

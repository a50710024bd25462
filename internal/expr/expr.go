// Package expr implements the Azure Pipelines runtime expression language as
// the official agent evaluates step conditions (and the service job
// conditions): literals, the variables object, the built-in functions, the
// type-casting rules and the evaluation trace the agent writes to the log of
// a skipped step.
//
// It follows the legacy engine the agent links
// (Microsoft.TeamFoundation.DistributedTask.Expressions): the same tokens,
// parse errors, limits, conversions and trace format. Beyond it, it accepts
// the null literal and the newer service functions iif and trim, as the
// documentation describes them.
package expr

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

const (
	// MaxDepth is the official limit on nested function calls and indexers.
	MaxDepth = 50
	// MaxLength is the official limit on the length of an expression, in
	// UTF-16 code units.
	MaxLength = 21000
	// MaxArgs stands for "no upper limit" in a FuncSig.
	MaxArgs = math.MaxInt32

	helpLink = "For more help, refer to https://go.microsoft.com/fwlink/?linkid=842996"
)

// ErrEmpty is returned by Parse for an empty or blank expression. The agent
// runs a step without a condition as if its condition were succeeded(), so a
// caller substitutes that.
var ErrEmpty = errors.New("the condition is empty: give an expression such as succeeded(), or omit the condition to get succeeded()")

// Context supplies what an expression can see while it is evaluated.
type Context interface {
	// Variable returns a variable's value; the lookup ignores case.
	Variable(name string) (string, bool)
	// JobStatus is "succeeded", "succeededWithIssues", "failed" or "canceled"
	// (any case); "" means succeeded, as the agent defaults Agent.JobStatus.
	JobStatus() string
}

// NamedValues is an optional interface of a Context that supplies the named
// values (other than variables) declared in a Syntax, e.g. dependencies.
// Values may be nil, bool, numbers, string, Version, []any, []string,
// map[string]any or map[string]string; map lookups try the exact key first
// and then ignore case.
type NamedValues interface {
	NamedValue(name string) (any, bool)
}

// Functions is an optional interface of a Context that implements the
// functions declared in a Syntax, e.g. the job-level succeeded('A'). It is
// also asked first for the agent's status functions. Arguments are evaluated
// before the call; ok=false falls back to the built-in zero-argument status
// functions, or is an error for any other function.
type Functions interface {
	Function(name string, args []any) (result any, ok bool, err error)
}

// FuncSig declares a function a Context implements, with its arity.
type FuncSig struct {
	Name             string
	MinArgs, MaxArgs int
}

// Syntax declares the names beyond the agent's own that an expression may
// use. The zero Syntax is the agent's step-condition language: the named value
// variables and the functions always, canceled, failed, succeeded and
// succeededOrFailed, all without arguments. A FuncSig named like one of those
// replaces its arity (the service's job conditions accept succeeded('A', 'B')).
// Names must be keywords: a letter or '_' followed by letters, digits or '_'.
type Syntax struct {
	NamedValues []string
	Functions   []FuncSig
}

// Expr is a parsed expression. It is immutable and safe for concurrent use.
type Expr struct {
	src  string
	root *node
}

// Parse parses an expression of the agent's step-condition language.
func Parse(expression string) (*Expr, error) {
	return defaultGrammar.parse(expression)
}

// Parse parses an expression that may also use the names s declares.
func (s Syntax) Parse(expression string) (*Expr, error) {
	g, err := s.grammar()
	if err != nil {
		return nil, err
	}
	return g.parse(expression)
}

// String returns the expression as it was written.
func (e *Expr) String() string { return e.src }

// Eval evaluates the expression and returns its raw result: nil, bool,
// float64, string, Version, []any or a map.
func (e *Expr) Eval(c Context) (any, error) {
	st := newState(c, false)
	v, err := st.eval(e.root)
	if err != nil {
		return nil, err
	}
	return exported(v), nil
}

// EvalBool evaluates the expression and casts the result to a boolean.
func (e *Expr) EvalBool(c Context) (bool, error) {
	st := newState(c, false)
	v, err := st.eval(e.root)
	if err != nil {
		return false, err
	}
	return toBool(v), nil
}

// Trace evaluates the expression to a boolean and also returns the trace the
// agent writes to a skipped step's log after "Skipping step due to condition
// evaluation.": an "Evaluating: " line with the normalized expression, an
// "Expanded: " line with the evaluated parts substituted (left out when it
// would repeat the result), and a "Result: " line, each ending in "\n".
// On an evaluation error the trace holds what was written before it.
// Values appear unmasked: the caller masks secrets, as the agent's log does.
func (e *Expr) Trace(c Context) (result bool, trace string, err error) {
	st := newState(c, true)
	var b strings.Builder
	b.WriteString("Evaluating: " + e.root.expression(false) + "\n")
	v, err := st.eval(e.root)
	if err != nil {
		return false, b.String(), err
	}
	result = toBool(v)
	realized, res := st.realized(e.root), boolString(result)
	if realized != res {
		b.WriteString("Expanded: " + realized + "\n")
	}
	b.WriteString("Result: " + res + "\n")
	return result, b.String(), nil
}

// ParseError is a syntax error, worded like the official engine's.
type ParseError struct {
	// Reason is the official description, e.g. "Unexpected symbol".
	Reason string
	// Token is the offending token as written; empty for the limits.
	Token string
	// Position is the 1-based position of Token, counted in UTF-16 code
	// units like the official message; 0 for the limits.
	Position   int
	Expression string
}

func (e *ParseError) Error() string {
	if e.Position == 0 {
		return e.Reason + ". " + helpLink
	}
	return fmt.Sprintf("%s: '%s'. Located at position %d within expression: %s. %s",
		e.Reason, e.Token, e.Position, e.Expression, helpLink)
}

const (
	reasonUnexpected       = "Unexpected symbol"
	reasonUnrecognized     = "Unrecognized value"
	reasonExpectedParen    = "Expected '(' to follow a function"
	reasonExpectedProperty = "Expected a property name to follow the dereference operator '.'"
	reasonUnclosedFunction = "Unclosed function"
	reasonUnclosedIndexer  = "Unclosed indexer"
)

// grammar is a compiled Syntax: lower-cased names of the extension named
// values and functions.
type grammar struct {
	named map[string]string    // lower-case name -> declared spelling
	funcs map[string]*function // extension functions
}

var defaultGrammar = func() *grammar {
	g, err := Syntax{}.grammar()
	if err != nil {
		panic(err)
	}
	return g
}()

func (s Syntax) grammar() (*grammar, error) {
	g := &grammar{
		named: map[string]string{"variables": "variables"},
		funcs: map[string]*function{},
	}
	for _, f := range statusFunctions {
		g.funcs[strings.ToLower(f.name)] = f
	}
	for _, name := range s.NamedValues {
		if !isKeyword(name) {
			return nil, fmt.Errorf("declare named value %q: a name must be a letter or '_' followed by letters, digits or '_'", name)
		}
		lower := strings.ToLower(name)
		if lower != "variables" {
			g.named[lower] = name
		}
	}
	for _, sig := range s.Functions {
		if !isKeyword(sig.Name) {
			return nil, fmt.Errorf("declare function %q: a name must be a letter or '_' followed by letters, digits or '_'", sig.Name)
		}
		if sig.MinArgs < 0 || sig.MaxArgs < sig.MinArgs {
			return nil, fmt.Errorf("declare function %q: arity %d..%d is not a valid range", sig.Name, sig.MinArgs, sig.MaxArgs)
		}
		lower := strings.ToLower(sig.Name)
		f := &function{name: sig.Name, min: sig.MinArgs, max: sig.MaxArgs, realized: true, eval: evalExtension}
		if old := g.funcs[lower]; old != nil {
			f.name, f.status = old.name, old.status
		}
		g.funcs[lower] = f
	}
	return g, nil
}

func (g *grammar) namedValue(name string) bool { _, ok := g.named[strings.ToLower(name)]; return ok }

func (g *grammar) extFunction(name string) *function { return g.funcs[strings.ToLower(name)] }

// function resolves a function token: built-ins take precedence, as in the
// official lexer.
func (g *grammar) function(name string) *function {
	if f := builtins[strings.ToLower(name)]; f != nil {
		return f
	}
	return g.extFunction(name)
}

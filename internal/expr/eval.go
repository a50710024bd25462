package expr

import (
	"math"
	"strings"
)

// state is one evaluation: the Context and, when tracing, the rendered
// result of every node whose trace shows its value rather than its
// arguments (TraceFullyRealized in the official engine).
type state struct {
	c      Context
	nv     NamedValues
	fc     Functions
	traced map[*node]string
}

type emptyContext struct{}

func (emptyContext) Variable(string) (string, bool) { return "", false }
func (emptyContext) JobStatus() string              { return "" }

func newState(c Context, trace bool) *state {
	if c == nil {
		c = emptyContext{}
	}
	st := &state{c: c}
	st.nv, _ = c.(NamedValues)
	st.fc, _ = c.(Functions)
	if trace {
		st.traced = map[*node]string{}
	}
	return st
}

func (st *state) eval(n *node) (any, error) {
	var v any
	var err error
	switch n.kind {
	case litNode:
		return n.value, nil
	case namedNode:
		v = st.named(n)
	case funcNode:
		v, err = n.fn.eval(st, n)
	case indexNode:
		v, err = st.index(n)
	}
	if err != nil {
		return nil, err
	}
	v = normalize(v)
	if s, ok := v.(string); ok && len(s) > maxMemory {
		return nil, errMemory(n)
	}
	if st.traced != nil && (n.kind != funcNode || n.fn.realized) {
		st.traced[n] = formatValue(v)
	}
	return v, nil
}

func (st *state) named(n *node) any {
	if n.canon == "variables" {
		return variablesObject{c: st.c}
	}
	if st.nv == nil {
		return nil
	}
	v, ok := st.nv.NamedValue(n.canon)
	if !ok {
		return nil
	}
	return v
}

func isCollection(v any) bool {
	switch v.(type) {
	case []any, []string, filtered, map[string]any, map[string]string, variablesObject:
		return true
	}
	return false
}

// index evaluates obj[key], obj.name, obj[*] and obj.*. The index is only
// evaluated when the object is a collection; anything else indexes to null
// (or to an empty filtered array under a wildcard).
func (st *state) index(n *node) (any, error) {
	obj, err := st.eval(n.args[0])
	if err != nil {
		return nil, err
	}
	if vo, ok := obj.(variablesObject); ok && n.wildcard() {
		// The agent's variables dictionary has no wildcard: it looks up a
		// variable named "*".
		v, _ := objectGet(vo, "*")
		return v, nil
	}
	if !isCollection(obj) {
		if n.wildcard() {
			return filtered{}, nil
		}
		return nil, nil
	}
	key, err := st.eval(n.args[1])
	if err != nil {
		return nil, err
	}
	if f, ok := obj.(filtered); ok {
		return indexFiltered(f, key, n.wildcard())
	}
	if n.wildcard() {
		if items, ok := arrayItems(obj); ok {
			return filtered(items), nil
		}
		_, vals, _, err := objectEntries(obj)
		return filtered(vals), err
	}
	if items, ok := arrayItems(obj); ok {
		if i, ok := intIndex(key); ok && i < len(items) {
			return items[i], nil
		}
		return nil, nil
	}
	if s, ok := toString(key); ok {
		v, _ := objectGet(obj, s)
		return v, nil
	}
	return nil, nil
}

// intIndex: a non-negative number (or a string that converts to one),
// rounded down.
func intIndex(key any) (int, bool) {
	f, ok := toNumber(key)
	if !ok || f < 0 || f >= math.MaxInt32 {
		return 0, false
	}
	return int(math.Floor(f)), true
}

// indexFiltered applies an index to every element of a filtered array and
// collects the hits.
func indexFiltered(f filtered, key any, wild bool) (any, error) {
	out := filtered{}
	for _, el := range f {
		el = normalize(el)
		if items, ok := arrayItems(el); ok {
			if wild {
				out = append(out, items...)
			} else if i, ok := intIndex(key); ok && i < len(items) {
				out = append(out, items[i])
			}
			continue
		}
		if !isCollection(el) {
			continue
		}
		if wild {
			_, vals, _, err := objectEntries(el)
			if err != nil {
				return nil, err
			}
			out = append(out, vals...)
		} else if s, ok := toString(key); ok {
			if v, found := objectGet(el, s); found {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

func (st *state) evalString(n *node) (string, error) {
	v, err := st.eval(n)
	if err != nil {
		return "", err
	}
	return mustString(v)
}

// realized is ConvertToRealizedExpression: the expression with every traced
// node replaced by its rendered value.
func (st *state) realized(n *node) string {
	if s, ok := st.traced[n]; ok {
		return s
	}
	switch n.kind {
	case funcNode:
		parts := make([]string, len(n.args))
		for i, a := range n.args {
			parts[i] = st.realized(a)
		}
		return n.name + "(" + strings.Join(parts, ", ") + ")"
	}
	return n.expression(false)
}

// expression is ConvertToExpression, the normalized text on the trace's
// "Evaluating:" line: arguments separated by ", ", literals re-rendered,
// .name written as ['name']. With reparse it renders text that parses back to
// the same tree (versions without the v prefix, null, .name, [*]).
func (n *node) expression(reparse bool) string {
	var b strings.Builder
	n.write(&b, reparse)
	return b.String()
}

func (n *node) write(b *strings.Builder, reparse bool) {
	switch n.kind {
	case litNode:
		switch v := n.value.(type) {
		case Version:
			if reparse {
				b.WriteString(v.String())
				return
			}
		case nil:
			if reparse {
				b.WriteString("null")
				return
			}
		}
		b.WriteString(formatValue(n.value))
	case namedNode:
		b.WriteString(n.name)
	case funcNode:
		b.WriteString(n.name)
		b.WriteByte('(')
		for i, a := range n.args {
			if i > 0 {
				b.WriteString(", ")
			}
			a.write(b, reparse)
		}
		b.WriteByte(')')
	case indexNode:
		n.args[0].write(b, reparse)
		switch {
		case reparse && n.wildcard() && n.deref:
			b.WriteString(".*")
		case reparse && n.wildcard():
			b.WriteString("[*]")
		case reparse && n.deref:
			b.WriteByte('.')
			b.WriteString(n.args[1].value.(string))
		default:
			b.WriteByte('[')
			n.args[1].write(b, reparse)
			b.WriteByte(']')
		}
	}
}

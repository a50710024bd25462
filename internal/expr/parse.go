package expr

import "strings"

type nodeKind uint8

const (
	litNode nodeKind = iota
	namedNode
	funcNode
	indexNode
)

// node is one element of the tree. An indexer has two arguments (the object
// and the index) or, for a wildcard, three: the object, '*' and true.
type node struct {
	kind  nodeKind
	name  string // a function or named value as written
	canon string // a named value's declared spelling
	value any    // a literal
	fn    *function
	args  []*node
	deref bool // an indexer written as .name
}

func (n *node) wildcard() bool { return n.kind == indexNode && len(n.args) == 3 }

type container struct {
	n   *node
	tok *token // the function name or the '['
}

// parser builds the tree token by token, with the official parser's state
// machine, so that the same inputs fail with the same message and position.
type parser struct {
	g         *grammar
	src       string
	lex       *lexer
	tok, last *token
	stack     []container
	root      *node
}

func (g *grammar) parse(src string) (*Expr, error) {
	if utf16Len(src) > MaxLength {
		return nil, &ParseError{Reason: "Exceeded max expression length 21000", Expression: src}
	}
	p := &parser{g: g, src: src, lex: &lexer{src: src, syn: g}}
	for p.advance() {
		var err error
		switch p.tok.kind {
		case tokStartIndex:
			err = p.startIndex()
		case tokEndIndex:
			err = p.endIndex()
		case tokEndParameter:
			err = p.endParameter()
		case tokSeparator:
			err = p.separator()
		case tokDereference:
			err = p.dereference()
		case tokWildcard:
			err = p.wildcard()
		case tokBoolean, tokNull, tokNumber, tokVersion, tokString, tokNamedValue:
			err = p.value()
		case tokFunction:
			err = p.function()
		case tokUnknownKeyword, tokUnrecognized:
			err = p.fail(reasonUnrecognized, p.tok)
		default:
			err = p.fail(reasonUnexpected, p.tok)
		}
		if err != nil {
			return nil, err
		}
		if len(p.stack) >= MaxDepth {
			return nil, &ParseError{Reason: "Exceeded max expression depth 50", Expression: src}
		}
	}
	if len(p.stack) > 0 {
		top := p.stack[len(p.stack)-1]
		if top.n.kind == funcNode {
			return nil, p.fail(reasonUnclosedFunction, top.tok)
		}
		return nil, p.fail(reasonUnclosedIndexer, top.tok)
	}
	if p.root == nil {
		return nil, ErrEmpty
	}
	return &Expr{src: src, root: p.root}, nil
}

func (p *parser) advance() bool {
	p.last = p.tok
	p.tok = p.lex.next()
	return p.tok != nil
}

func (p *parser) fail(reason string, t *token) error {
	return &ParseError{Reason: reason, Token: t.raw, Position: utf16Len(p.src[:t.off]) + 1, Expression: p.src}
}

func (p *parser) top() *container {
	if len(p.stack) == 0 {
		return nil
	}
	return &p.stack[len(p.stack)-1]
}

func lastIs(t *token, kinds ...tokenKind) bool {
	if t == nil {
		return false
	}
	for _, k := range kinds {
		if t.kind == k {
			return true
		}
	}
	return false
}

// valueMayStart: a value or function may only begin an expression, an
// argument or an index.
func (p *parser) valueMayStart() bool {
	return p.last == nil || lastIs(p.last, tokStartIndex, tokStartParameter, tokSeparator)
}

// indexMayFollow: '[' and '.' apply to what was just completed.
func (p *parser) indexMayFollow() bool {
	return lastIs(p.last, tokEndParameter, tokEndIndex, tokPropertyName, tokNamedValue, tokUnknownKeyword, tokWildcard)
}

// wrapLast replaces the most recent operand with an indexer over it.
func (p *parser) wrapLast(idx *node) error {
	if c := p.top(); c != nil {
		if len(c.n.args) == 0 {
			return p.fail(reasonUnexpected, p.tok)
		}
		i := len(c.n.args) - 1
		idx.args = append(idx.args, c.n.args[i])
		c.n.args[i] = idx
		return nil
	}
	if p.root == nil {
		return p.fail(reasonUnexpected, p.tok)
	}
	idx.args = append(idx.args, p.root)
	p.root = idx
	return nil
}

func (p *parser) startIndex() error {
	if !p.indexMayFollow() {
		return p.fail(reasonUnexpected, p.tok)
	}
	idx := &node{kind: indexNode}
	if err := p.wrapLast(idx); err != nil {
		return err
	}
	p.stack = append(p.stack, container{n: idx, tok: p.tok})
	return nil
}

func (p *parser) dereference() error {
	if !p.indexMayFollow() {
		return p.fail(reasonUnexpected, p.tok)
	}
	idx := &node{kind: indexNode, deref: true}
	if err := p.wrapLast(idx); err != nil {
		return err
	}
	if !p.advance() {
		return p.fail(reasonExpectedProperty, p.last)
	}
	switch p.tok.kind {
	case tokPropertyName:
		idx.args = append(idx.args, &node{kind: litNode, value: p.tok.raw})
	case tokWildcard:
		idx.args = append(idx.args, &node{kind: litNode, value: "*"}, &node{kind: litNode, value: true})
	default:
		return p.fail(reasonUnexpected, p.tok)
	}
	return nil
}

func (p *parser) wildcard() error {
	c := p.top()
	if !lastIs(p.last, tokStartIndex) || c == nil {
		return p.fail(reasonUnexpected, p.tok)
	}
	c.n.args = append(c.n.args, &node{kind: litNode, value: "*"}, &node{kind: litNode, value: true})
	return nil
}

func (p *parser) endParameter() error {
	c := p.top()
	if c == nil || c.n.kind != funcNode || len(c.n.args) < c.n.fn.min || len(c.n.args) > c.n.fn.max || lastIs(p.last, tokSeparator) {
		return p.fail(reasonUnexpected, p.tok)
	}
	p.stack = p.stack[:len(p.stack)-1]
	return nil
}

func (p *parser) endIndex() error {
	c := p.top()
	if c == nil || c.n.kind != indexNode || (len(c.n.args) != 2 && len(c.n.args) != 3) {
		return p.fail(reasonUnexpected, p.tok)
	}
	p.stack = p.stack[:len(p.stack)-1]
	return nil
}

func (p *parser) separator() error {
	c := p.top()
	if c == nil || c.n.kind != funcNode || len(c.n.args) < 1 || len(c.n.args) >= c.n.fn.max || lastIs(p.last, tokSeparator) {
		return p.fail(reasonUnexpected, p.tok)
	}
	return nil
}

func (p *parser) add(n *node) error {
	if p.root == nil {
		p.root = n
		return nil
	}
	c := p.top()
	if c == nil {
		return p.fail(reasonUnexpected, p.tok)
	}
	c.n.args = append(c.n.args, n)
	return nil
}

func (p *parser) value() error {
	if !p.valueMayStart() {
		return p.fail(reasonUnexpected, p.tok)
	}
	var n *node
	switch p.tok.kind {
	case tokNamedValue:
		n = &node{kind: namedNode, name: p.tok.raw, canon: p.g.named[strings.ToLower(p.tok.raw)]}
	default:
		n = &node{kind: litNode, value: p.tok.value}
	}
	return p.add(n)
}

func (p *parser) function() error {
	if !p.valueMayStart() {
		return p.fail(reasonUnexpected, p.tok)
	}
	if !p.advance() || p.tok.kind != tokStartParameter {
		return p.fail(reasonExpectedParen, p.last)
	}
	n := &node{kind: funcNode, name: p.last.raw, fn: p.g.function(p.last.raw)}
	if err := p.add(n); err != nil {
		return err
	}
	p.stack = append(p.stack, container{n: n, tok: p.last})
	return nil
}

package expr

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokenKind uint8

const (
	tokStartIndex tokenKind = iota
	tokEndIndex
	tokStartParameter
	tokEndParameter
	tokSeparator
	tokDereference
	tokWildcard
	tokBoolean
	tokNull
	tokNumber
	tokVersion
	tokString
	tokNamedValue
	tokFunction
	tokPropertyName
	tokUnknownKeyword
	tokUnrecognized
)

type token struct {
	kind  tokenKind
	raw   string // the token as written
	off   int    // byte offset in the expression
	value any    // parsed literal value
}

// lexer splits an expression into tokens the way the official
// LexicalAnalyzer does, including its quirks: a number or keyword runs until
// white space or punctuation, so "1abc" or "foo-bar" is one (unrecognized)
// token, and '.' starts a number only where a value may begin.
type lexer struct {
	src  string
	pos  int
	last *token
	syn  *grammar
}

func isPunctuation(c byte) bool {
	switch c {
	case '(', ')', ',', '.', '[', ']':
		return true
	}
	return false
}

// spaceAt reports whether the character at byte offset i is white space
// (char.IsWhiteSpace) and its width in bytes.
func spaceAt(s string, i int) (bool, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return c == ' ' || (c >= '\t' && c <= '\r'), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return unicode.IsSpace(r), n
}

func (l *lexer) endOfWord(i int, keepDots bool) int {
	for i < len(l.src) {
		c := l.src[i]
		if isPunctuation(c) && !(keepDots && c == '.') {
			break
		}
		if sp, _ := spaceAt(l.src, i); sp {
			break
		}
		if c < utf8.RuneSelf {
			i++
		} else {
			_, n := utf8.DecodeRuneInString(l.src[i:])
			i += n
		}
	}
	return i
}

func (l *lexer) next() *token {
	for l.pos < len(l.src) {
		sp, n := spaceAt(l.src, l.pos)
		if !sp {
			break
		}
		l.pos += n
	}
	if l.pos >= len(l.src) {
		return nil
	}
	start := l.pos
	c := l.src[start]
	var t *token
	single := func(k tokenKind) *token {
		l.pos++
		return &token{kind: k, raw: l.src[start:l.pos], off: start}
	}
	switch {
	case c == '\'':
		t = l.readString()
	case c == '(':
		t = single(tokStartParameter)
	case c == ')':
		t = single(tokEndParameter)
	case c == '*':
		t = single(tokWildcard)
	case c == ',':
		t = single(tokSeparator)
	case c == '[':
		t = single(tokStartIndex)
	case c == ']':
		t = single(tokEndIndex)
	case c == '.':
		if l.last == nil || l.last.kind == tokSeparator || l.last.kind == tokStartIndex || l.last.kind == tokStartParameter {
			t = l.readNumberOrVersion()
		} else {
			t = single(tokDereference)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		t = l.readNumberOrVersion()
	default:
		t = l.readKeyword()
	}
	l.last = t
	return t
}

// peek returns the next token without consuming it.
func (l *lexer) peek() *token {
	pos, last := l.pos, l.last
	t := l.next()
	l.pos, l.last = pos, last
	return t
}

func (l *lexer) readNumberOrVersion() *token {
	start := l.pos
	// The first character is always taken, then everything up to white space
	// or punctuation other than '.'.
	_, n := utf8.DecodeRuneInString(l.src[start:])
	l.pos = l.endOfWord(start+n, true)
	raw := l.src[start:l.pos]
	if strings.Count(raw, ".") >= 2 {
		if v, ok := ParseVersion(raw); ok {
			return &token{kind: tokVersion, raw: raw, off: start, value: v}
		}
	} else if f, ok := parseNumber(raw, true); ok {
		return &token{kind: tokNumber, raw: raw, off: start, value: f}
	}
	return &token{kind: tokUnrecognized, raw: raw, off: start}
}

func (l *lexer) readKeyword() *token {
	start := l.pos
	_, n := utf8.DecodeRuneInString(l.src[start:])
	l.pos = l.endOfWord(start+n, false)
	raw := l.src[start:l.pos]
	t := &token{kind: tokUnknownKeyword, raw: raw, off: start}
	if !isKeyword(raw) {
		return t
	}
	switch {
	case l.last != nil && l.last.kind == tokDereference:
		t.kind = tokPropertyName
	case strings.EqualFold(raw, "true"):
		t.kind, t.value = tokBoolean, true
	case strings.EqualFold(raw, "false"):
		t.kind, t.value = tokBoolean, false
	case strings.EqualFold(raw, "null"):
		t.kind = tokNull
	case builtins[strings.ToLower(raw)] != nil:
		t.kind = tokFunction
	case l.syn.namedValue(raw):
		t.kind = tokNamedValue
	case l.syn.extFunction(raw) != nil:
		t.kind = tokFunction
	}
	return t
}

func (l *lexer) readString() *token {
	start := l.pos
	var b strings.Builder
	i := start + 1
	for i < len(l.src) {
		c := l.src[i]
		i++
		if c == '\'' {
			if i < len(l.src) && l.src[i] == '\'' {
				i++
				b.WriteByte('\'')
				continue
			}
			l.pos = i
			return &token{kind: tokString, raw: l.src[start:i], off: start, value: b.String()}
		}
		b.WriteByte(c)
	}
	l.pos = i
	return &token{kind: tokUnrecognized, raw: l.src[start:i], off: start}
}

// isKeyword: an ASCII letter or '_' followed by letters, digits or '_'.
func isKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

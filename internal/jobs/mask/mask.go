// Package mask removes secrets from job output before it leaves the agent:
// log lines, console feed lines and issue messages (worker.md §6).
//
// It follows the official agent's default ("legacy") masker: every
// occurrence of every registered value is found, overlapping and adjacent
// occurrences are merged into one range, and each range is replaced by
// "***". Values are registered together with the derived forms under which
// they commonly reappear in logs (escaped for logging commands, base64,
// JSON, URI), and credentials inside URLs are always masked.
//
// A Masker is safe for concurrent use. Masking never blocks on registration:
// readers work on an immutable snapshot that AddValue and AddRegex replace.
package mask

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Token replaces every masked range (OssSecretMasker
// defaultRegexRedactionToken and the legacy masker use the same).
const Token = "***"

// MaxMinLength is the largest minimum secret length honoured. The official
// agent refuses to skip secrets longer than five characters
// (LoggedSecretMasker.MinSecretLengthLimit = 6); a larger Options.MinLength
// is lowered to this and the caller should warn, as the official agent does
// with "The value of the minimum length of the secrets is too high. Maximum
// value is set: 6".
const MaxMinLength = 6

// Options configures a Masker.
type Options struct {
	// MinLength: registered values, and each derived form on its own, that
	// have fewer characters (Unicode code points) than this are not masked.
	// It mirrors the knob AZP_IGNORE_SECRETS_SHORTER_THAN, whose default is
	// 0, and so is ours: 0 and 1 both mean every non-empty value is masked.
	// Leaking a short secret is worse than a log with a few extra "***", and
	// users migrating from the official agent keep the behaviour they know;
	// whoever prefers readable logs sets the knob. Values above MaxMinLength
	// are clamped to it.
	MinLength int
}

// Masker holds the registered secrets. The zero value is not usable; call New.
type Masker struct {
	minLen int

	mu       sync.Mutex          // serialises registration
	values   map[string]struct{} // original values already registered
	patterns map[string]struct{} // every literal pattern, original and derived
	regexes  []*regexp.Regexp    // mask hints
	hints    map[string]struct{} // hint patterns already registered

	snap atomic.Pointer[snapshot]
}

// snapshot is what Mask and Writer read: immutable once published, but for
// the literal index, built on first use: a job registers its secrets one by
// one before any output, and only the last snapshot is ever used.
type snapshot struct {
	litsOnce sync.Once
	lits     *literalSet // nil when no literal is registered; see literals
	maxLen   int         // longest literal in bytes
	regexes  []*regexp.Regexp
	prefixes []string // each regex's literal prefix: a line without it has no match
	patterns []string // sorted; kept for tests and diagnostics
}

// New returns a Masker with only the always-on URL credential rule.
func New(opts Options) *Masker {
	minLen := max(opts.MinLength, 0)
	minLen = min(minLen, MaxMinLength)
	m := &Masker{
		minLen:   minLen,
		values:   make(map[string]struct{}),
		patterns: make(map[string]struct{}),
		hints:    make(map[string]struct{}),
	}
	m.snap.Store(&snapshot{})
	return m
}

// MinLength reports the effective minimum length after clamping.
func (m *Masker) MinLength() int { return m.minLen }

// AddValue registers a secret value and the forms under which it commonly
// reappears, as the official worker and its value encoders do:
//
//   - the value, unquoted when wrapped in ' or ", trimmed of CR, LF, space;
//   - escaped as in logging commands (% to %AZP25, CR to %0D, LF to %0A) and
//     with only CR and LF escaped, each also unquoted and trimmed;
//   - base64 of the UTF-8 bytes, and the fragments that encode the value at
//     each of the three byte alignments inside a larger base64 payload;
//   - each of these JSON-string-escaped, URI-escaped (Uri.EscapeDataString)
//     and backslash-unescaped.
//
// Each form shorter than the minimum length is skipped on its own. Values
// that are empty or only white space are ignored, as the official worker
// skips them. Registering a value twice is harmless.
func (m *Masker) AddValue(v string) {
	if strings.TrimSpace(v) == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.values[v]; ok {
		return
	}
	m.values[v] = struct{}{}
	changed := false
	for _, f := range derivedForms(v) {
		if f.text == "" || utf8.RuneCountInString(f.text) < m.minLen {
			continue
		}
		if f.base64Fragment && len(f.text) < minBase64Fragment {
			continue
		}
		if _, ok := m.patterns[f.text]; ok {
			continue
		}
		m.patterns[f.text] = struct{}{}
		changed = true
	}
	if changed {
		m.publish()
	}
}

// ErrUnsupportedRegex is wrapped by AddRegex when a mask hint uses .NET
// regular expression syntax that Go's RE2 engine does not have.
var ErrUnsupportedRegex = errors.New("mask hint regex is not supported")

// AddRegex registers a mask hint of type regex from the job message. The
// official worker also registers the hint's raw text as a value (it may be
// printed with the job message); callers that print it should do the same.
//
// Hints are written for .NET's regex engine. Lookaround, backreferences,
// atomic groups and the like do not exist in Go's RE2 engine; such a hint is
// rejected with an error wrapping ErrUnsupportedRegex, and the caller should
// warn that it is not applied. The error never quotes the pattern: a hint can
// be specific enough to contain the secret itself. Matches of zero length
// mask nothing.
func (m *Masker) AddRegex(pattern string) error {
	if pattern == "" {
		return nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		var se *syntax.Error
		code := "invalid pattern"
		if errors.As(err, &se) {
			code = string(se.Code)
		}
		return fmt.Errorf("%w: %s (Go's RE2 engine has no lookaround, backreferences or atomic groups; "+
			"the hint is not applied, so register the secret as a value instead)", ErrUnsupportedRegex, code)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.hints[pattern]; ok {
		return nil
	}
	m.hints[pattern] = struct{}{}
	m.regexes = append(m.regexes, re)
	m.publish()
	return nil
}

// publish builds a new snapshot from the registered state. Called with mu held.
func (m *Masker) publish() {
	pats := make([]string, 0, len(m.patterns))
	for p := range m.patterns {
		pats = append(pats, p)
	}
	slices.Sort(pats)
	sn := &snapshot{
		regexes:  slices.Clip(slices.Clone(m.regexes)),
		patterns: pats,
	}
	for _, re := range sn.regexes {
		prefix, _ := re.LiteralPrefix()
		sn.prefixes = append(sn.prefixes, prefix)
	}
	for _, p := range pats {
		sn.maxLen = max(sn.maxLen, len(p))
	}
	m.snap.Store(sn)
}

// literals returns the index of the snapshot's patterns, nil when there are none.
func (sn *snapshot) literals() *literalSet {
	sn.litsOnce.Do(func() {
		if len(sn.patterns) > 0 {
			sn.lits = newLiteralSet(sn.patterns)
		}
	})
	return sn.lits
}

// span is a half-open byte range [start, end) to mask.
type span struct{ start, end int }

// Mask returns s with every registered secret replaced by Token. Overlapping
// and adjacent occurrences become a single Token, so no fragment of a secret
// survives between two tokens. When nothing matches, s itself is returned.
func (m *Masker) Mask(s string) string {
	if s == "" {
		return s
	}
	sn := m.snap.Load()
	var stack [8]span
	spans := stack[:0]
	if lits := sn.literals(); lits != nil {
		spans = findLiterals(lits, s, 0, len(s), spans)
	}
	// Literal spans arrive sorted by start; only regex hits need a sort.
	nlit := len(spans)
	spans = appendRegexHits(sn, s, spans)
	if len(spans) == 0 {
		return s
	}
	if len(spans) > nlit {
		slices.SortFunc(spans, func(a, b span) int { return a.start - b.start })
	}
	return render(s, spans)
}

// render replaces the union of spans (sorted by start) with tokens.
func render(s string, spans []span) string {
	var b strings.Builder
	b.Grow(len(s))
	textFrom := 0 // first byte after the last masked run
	runEnd := -1  // end of the masked run being extended
	for _, sp := range spans {
		if sp.start <= runEnd { // overlapping or adjacent: same run
			runEnd = max(runEnd, sp.end)
			continue
		}
		if runEnd >= 0 {
			textFrom = runEnd
		}
		b.WriteString(s[textFrom:sp.start])
		b.WriteString(Token)
		runEnd = sp.end
	}
	b.WriteString(s[runEnd:])
	return b.String()
}

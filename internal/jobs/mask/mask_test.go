package mask

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

func newMasker(t testing.TB, minLen int, values ...string) *Masker {
	t.Helper()
	m := New(Options{MinLength: minLen})
	for _, v := range values {
		m.AddValue(v)
	}
	return m
}

// The cases of the official agent's SecretMaskerL0 that apply to a masker
// with the default encoders (src/Test/L0/SecretMaskerTests/SecretMaskerL0.cs).
func TestMaskOfficialCases(t *testing.T) {
	tests := []struct {
		name    string
		minLen  int
		secrets []string
		in      string
		want    string
	}{
		{"no secrets", 0, nil, "abcdefg", "abcdefg"},
		{"empty input", 0, []string{"abcd"}, "", ""},
		{"replaces value", 0, []string{"def"}, "abcdefg", "abc***g"},
		{"multiple instances", 0, []string{"def"}, "abcdefgdef", "abc***g***"},
		{"adjacent instances", 0, []string{"abc"}, "abcabcdef", "***def"},
		{"multiple secrets", 0, []string{"bcd", "fgh"}, "abcdefghi", "a***e***i"},
		{"overlapping secrets", 0, []string{"def", "bcd"}, "abcdefg", "a***g"},
		{"adjacent secrets", 0, []string{"efg", "bcd"}, "abcdefgh", "a***h"},
		{"min length hides short secrets", 9, []string{"efg", "bcd"}, "abcdefgh", "abcdefgh"},
		{"negative min length", -3, []string{"efg", "bcd"}, "abcdefgh", "a***h"},
		{"boundary values", 0, []string{"bc", "defg", "h12"}, "abcdefgh123", "a***3"},
		{"boundary values min 3", 3, []string{"bc", "defg", "h12"}, "abcdefgh123", "abc***3"},
		{"simple url", 0, nil, "https://simpledomain@example.com", "https://simpledomain@example.com"},
		{"complex url", 0, nil,
			"https://url.com:443/~user/foo=bar+42-18?what=this.is.an.example....~~many@&param=value",
			"https://url.com:443/~user/foo=bar+42-18?what=this.is.an.example....~~many@&param=value"},
		{"user info", 0, nil, "https://user:pass@example.com", "https://user:***@example.com"},
		{"user info special characters", 0, nil, `https://user:pass4';.!&*()=,$-+~@example.com`, "https://user:***@example.com"},
		{"digits in user name", 0, nil, "https://username123:password@example.com", "https://username123:***@example.com"},
		{"long user and password", 0, nil,
			"https://username_loooooooooooooooooooooooooooooooooooooooooong:password_looooooooooooooooooooooooooooooooooooooooooooooooong@example.com",
			"https://username_loooooooooooooooooooooooooooooooooooooooooong:***@example.com"},
		{"encoded user name", 0, nil, "https://username%10%A3%F6:password123@example.com", "https://username%10%A3%F6:***@example.com"},
		{"encoded and escaped user name", 0, nil,
			"https://username%AZP2510%AZP25A3%AZP25F6:password123@example.com",
			"https://username%AZP2510%AZP25A3%AZP25F6:***@example.com"},
		{"json escape", 0, []string{"carriage-return\r_newline\n_tab\t_backslash\\_double-quote\""},
			"carriage-return\\r_newline\\n_tab\\t_backslash\\\\_double-quote\\\"", "***"},
		{"backslash escape", 0, []string{`abc\\def\'\"ghi\t`}, "abc\\def'\"ghi\t", "***"},
		{"uri data escape", 0, []string{"hello world"}, "hello%20world", "***"},
		{"surrogate pairs", 0, []string{"𐐷𐐷𐐷𐐷"}, "𐐷𐐷𐐷𐐷", "***"},
		{"surrogate pairs uri escaped", 0, []string{" 𐐷𐐷𐐷𐐷"}, "%20%F0%90%90%B7%F0%90%90%B7%F0%90%90%B7%F0%90%90%B7", "***"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMasker(t, tt.minLen, tt.secrets...)
			if got := m.Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMaskDerivedForms(t *testing.T) {
	// A quoted secret with a percent sign and a newline exercises every
	// derivation of Worker.InitializeSecretMasker and the value encoders.
	const secret = "\"pa%ss\nw0rd\""
	m := newMasker(t, 0, secret)
	forms := map[string]string{
		"value":                           secret,
		"unquoted":                        "pa%ss\nw0rd",
		"logging-command escaped":         "\"pa%AZP25ss%0Aw0rd\"",
		"logging-command escaped unquote": "pa%AZP25ss%0Aw0rd",
		"CR/LF escaped":                   "\"pa%ss%0Aw0rd\"",
		"CR/LF escaped unquoted":          "pa%ss%0Aw0rd",
		"base64":                          "InBhJXNzCncwcmQi",
		"base64 of unquoted":              "cGElc3MKdzByZA==",
		"json":                            `\"pa%ss\nw0rd\"`,
		"json unquoted":                   `pa%ss\nw0rd`,
		"uri":                             "%22pa%25ss%0Aw0rd%22",
		"uri of escaped":                  "%22pa%25AZP25ss%250Aw0rd%22",
	}
	for name, f := range forms {
		in := "x=" + f + ";"
		if got := m.Mask(in); got != "x=***;" {
			t.Errorf("%s: Mask(%q) = %q, want %q", name, in, got, "x=***;")
		}
	}

	trimmed := newMasker(t, 0, " \r\ntok3n-value \n")
	if got := trimmed.Mask("got tok3n-value."); got != "got ***." {
		t.Errorf("trimmed form: got %q", got)
	}
	single := newMasker(t, 0, "'single-quoted'")
	if got := single.Mask("echo single-quoted"); got != "echo ***" {
		t.Errorf("unquoted form: got %q", got)
	}
}

func TestMaskIgnoresWhitespaceOnly(t *testing.T) {
	m := newMasker(t, 0, "", " ", "\t\r\n  ")
	if n := len(m.snap.Load().patterns); n != 0 {
		t.Fatalf("whitespace-only values registered %d patterns", n)
	}
	if got := m.Mask("a  b\t\r\n c"); got != "a  b\t\r\n c" {
		t.Errorf("got %q", got)
	}
}

// A secret base64-encoded inside a larger payload (Basic auth "user:secret",
// a JSON blob) must be masked at every byte alignment. What may stay visible
// are the characters that also encode the neighbouring bytes, and padding.
func TestMaskBase64AtEveryOffset(t *testing.T) {
	const secret = "s3cr3t-P@ssw0rd!"
	m := newMasker(t, 0, secret)
	for p := 0; p <= 5; p++ {
		for q := 0; q <= 4; q++ {
			payload := strings.Repeat("u", p) + secret + strings.Repeat("v", q)
			enc := base64.StdEncoding.EncodeToString([]byte(payload))
			for _, e := range []string{enc, base64.RawURLEncoding.EncodeToString([]byte(payload))} {
				got := m.Mask("Authorization: Basic " + e)
				if !strings.HasPrefix(got, "Authorization: Basic ") || !strings.Contains(got, Token) {
					t.Fatalf("prefix %d suffix %d: %q not masked: %q", p, q, e, got)
				}
				visible := len(got) - len("Authorization: Basic ") - len(Token)
				limit := (8*p+5)/6 + (8*q+5)/6 + 1 + 2
				if visible > limit {
					t.Errorf("prefix %d suffix %d: %d base64 characters left visible in %q, at most %d may depend on other bytes",
						p, q, visible, got, limit)
				}
			}
		}
	}
}

func TestMaskBase64FragmentsNeedMinimumLength(t *testing.T) {
	// A 4-byte secret has alignment fragments of at most 5 characters; they
	// would match too much unrelated base64, so only the full form counts.
	m := newMasker(t, 0, "abcd")
	if got := m.Mask("YWJjZA=="); got != Token {
		t.Errorf("full base64 not masked: %q", got)
	}
	shifted := base64.StdEncoding.EncodeToString([]byte("xabcdx"))
	if got := m.Mask(shifted); got != shifted {
		t.Errorf("short fragment masked: %q -> %q", shifted, got)
	}
}

func TestMaskOverlapAndLongestMatch(t *testing.T) {
	tests := []struct {
		secrets []string
		in      string
		want    string
	}{
		{[]string{"abcd", "cdef"}, "xabcdefx", "x***x"},
		{[]string{"abc", "abcdef"}, "-abcdef-abc-", "-***-***-"},
		{[]string{"bcdefg", "cde"}, "abcdefgh", "a***h"},
		{[]string{"aaaa"}, "aaaaaaa", "***"},
		{[]string{"abab"}, "abababab", "***"},
		{[]string{"one1", "two2"}, "one1 two2", "*** ***"},
		{[]string{"one1", "two2"}, "one1two2one1", "***"},
	}
	for _, tt := range tests {
		m := newMasker(t, 0, tt.secrets...)
		if got := m.Mask(tt.in); got != tt.want {
			t.Errorf("secrets %q: Mask(%q) = %q, want %q", tt.secrets, tt.in, got, tt.want)
		}
	}
}

func TestMaskMultiByte(t *testing.T) {
	m := newMasker(t, 6, "pässwörd€", "äöüäö", "äöüäöü")
	tests := []struct{ in, want string }{
		{"le mot de passe: pässwörd€!", "le mot de passe: ***!"},
		{"äöüäö", "äöüäö"}, // 5 characters (10 bytes) is below the minimum of 6
		{"»äöüäöü«", "»***«"},
	}
	for _, tt := range tests {
		got := m.Mask(tt.in)
		if got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Mask(%q) produced invalid UTF-8 %q", tt.in, got)
		}
	}
}

func TestMinLength(t *testing.T) {
	if got := New(Options{MinLength: 100}).MinLength(); got != MaxMinLength {
		t.Errorf("MinLength 100 clamped to %d, want %d", got, MaxMinLength)
	}
	if got := New(Options{MinLength: -1}).MinLength(); got != 0 {
		t.Errorf("MinLength -1 became %d, want 0", got)
	}
	m := newMasker(t, 4, "abc", "wxyz")
	if got := m.Mask("abc wxyz"); got != "abc ***" {
		t.Errorf("got %q", got)
	}
	// Each derived form is judged on its own length: the quoted value is
	// long enough, its unquoted form is not.
	q := newMasker(t, 6, `"abcd"`)
	if got := q.Mask(`say "abcd" abcd`); got != "say *** abcd" {
		t.Errorf("got %q", got)
	}
	// With the default every non-empty secret is masked, even one character.
	one := newMasker(t, 0, "7")
	if got := one.Mask("1776"); got != "1***6" {
		t.Errorf("got %q", got)
	}
}

func TestAddRegex(t *testing.T) {
	m := New(Options{})
	if err := m.AddRegex(`tok-[0-9a-f]{8}`); err != nil {
		t.Fatal(err)
	}
	if err := m.AddRegex(`ab|bcd`); err != nil {
		t.Fatal(err)
	}
	if err := m.AddRegex(`Q*`); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"token tok-0badc0de here", "token *** here"},
		{"tok-0badc0d", "tok-0badc0d"},
		// After "ab" matches, the search resumes one character later and
		// finds "bcd", so no part of it survives.
		{"xabcdx", "x***x"},
		{"no match, and zero-length matches mask nothing", "no match, and zero-length matches mask nothing"},
	}
	for _, tt := range tests {
		if got := m.Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAddRegexUnsupported(t *testing.T) {
	m := New(Options{})
	for _, p := range []string{`SUPERSECRET(?<=x)y`, `SUPERSECRET(a)\1`, `SUPERSECRET(?>atomic)`, `SUPERSECRET(`} {
		err := m.AddRegex(p)
		if !errors.Is(err, ErrUnsupportedRegex) {
			t.Errorf("AddRegex(%q) = %v, want ErrUnsupportedRegex", p, err)
			continue
		}
		if strings.Contains(err.Error(), "SUPERSECRET") {
			t.Errorf("error for %q quotes the pattern: %v", p, err)
		}
	}
	if n := len(m.snap.Load().regexes); n != 0 {
		t.Errorf("%d unsupported regexes registered", n)
	}
}

func TestMaskURLCredentials(t *testing.T) {
	m := New(Options{})
	tests := []struct{ in, want string }{
		{"git clone https://build:hunter2@dev.azure.com/org/_git/repo", "git clone https://build:***@dev.azure.com/org/_git/repo"},
		{"http://u:p%40ss%AZP2541@h", "http://u:***@h"},
		{"ftp://a:b:c@h", "ftp://a:***@h"},
		{"https://host:8080/path@x", "https://host:8080/path@x"},
		{"https://host:8080@x", "https://host:***@x"}, // indistinguishable from a password, as in the official rule
		{"see //a//b:pw@c", "see //a//b:***@c"},
		{"https://üser:pässwörd@h", "https://üser:***@h"},
		{"two: https://a:one@h and https://b:two@i", "two: https://a:***@h and https://b:***@i"},
		{"line https://a:\nb@h", "line https://a:\nb@h"},
		{"no credentials https://dev.azure.com/org", "no credentials https://dev.azure.com/org"},
	}
	for _, tt := range tests {
		if got := m.Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Registration while other goroutines mask: once AddValue has returned, the
// value is masked everywhere (run with -race).
func TestConcurrentAddAndMask(t *testing.T) {
	m := New(Options{})
	const n = 40
	secrets := make([]string, n)
	for i := range secrets {
		secrets[i] = fmt.Sprintf("secret-%02d-%x", i, i*7919)
	}
	var registered atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; ; round++ {
				done := int(registered.Load())
				for i := 0; i < done; i++ {
					line := "value " + secrets[i] + " end"
					if got := m.Mask(line); got != "value *** end" {
						select {
						case errs <- fmt.Sprintf("secret %d registered but Mask gave %q", i, got):
						default:
						}
						return
					}
				}
				if done == n {
					return
				}
			}
		}()
	}
	for i, s := range secrets {
		m.AddValue(s)
		registered.Store(int32(i + 1))
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

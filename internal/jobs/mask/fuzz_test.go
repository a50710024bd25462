package mask

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceMask is the obvious quadratic algorithm: mark every byte covered
// by any occurrence of any registered pattern or regex hit, then replace
// each run of marked bytes by one token.
func referenceMask(m *Masker, s string) string {
	sn := m.snap.Load()
	covered := make([]bool, len(s)+1)
	mark := func(start, end int) {
		for i := start; i < end; i++ {
			covered[i] = true
		}
	}
	for _, p := range sn.patterns {
		for from := 0; from < len(s); {
			i := strings.Index(s[from:], p)
			if i < 0 {
				break
			}
			mark(from+i, from+i+len(p))
			from += i + 1
		}
	}
	// The URL rule over the whole text at once, each hint retried one byte
	// after each match start, as the official RegexSecret does.
	for _, m := range urlCredentials.FindAllStringSubmatchIndex(s, -1) {
		mark(m[2], m[3])
	}
	for _, re := range sn.regexes {
		for from := 0; from < len(s); {
			loc := re.FindStringIndex(s[from:])
			if loc == nil {
				break
			}
			mark(from+loc[0], from+loc[1])
			from += loc[0] + 1
		}
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if !covered[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		b.WriteString(Token)
		for i < len(s) && covered[i] {
			i++
		}
	}
	// Adjacent runs cannot exist: covered bytes form maximal runs.
	return b.String()
}

// checkMask asserts the properties FuzzMask promises for one input.
func checkMask(t *testing.T, m *Masker, secrets []string, text string, chunkSeed uint64) {
	t.Helper()
	got := m.Mask(text)
	if want := referenceMask(m, text); got != want {
		t.Fatalf("Mask(%q) = %q, reference gives %q (secrets %q)", text, got, want, secrets)
	}
	for _, s := range secrets {
		if strings.TrimSpace(s) == "" || utf8.RuneCountInString(s) < m.MinLength() || strings.Contains(s, "*") {
			continue // not registered, or could be spelled by the tokens themselves
		}
		if strings.Contains(got, s) {
			t.Fatalf("secret %q survives in Mask(%q) = %q", s, text, got)
		}
	}
	// The Writer, fed in random chunks, produces the same bytes.
	r := rand.New(rand.NewPCG(chunkSeed, 0x5eed))
	var out bytes.Buffer
	w := m.NewWriter(&out)
	for rest := text; len(rest) > 0; {
		n := 1 + r.IntN(min(len(rest), 1+r.IntN(16)))
		if _, err := w.Write([]byte(rest[:n])); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if out.String() != got {
		t.Fatalf("Writer(%q) in chunks (seed %d) = %q, Mask gives %q (secrets %q)", text, chunkSeed, out.String(), got, secrets)
	}
}

func TestMaskAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "c", "/", ":", "@", "\n", "é", "%", "=", "A", "Q"}
	word := func(n int) string {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for iter := 0; iter < 400; iter++ {
		minLen := r.IntN(4)
		secrets := []string{word(1 + r.IntN(6)), word(1 + r.IntN(6)), word(1 + r.IntN(12))}
		m := newMasker(t, minLen, secrets...)
		if iter%3 == 0 {
			// Hints that cannot match a line break, so the Writer (which
			// applies them per line) must agree with Mask exactly.
			for _, h := range []string{`a[bc]+`, `(ab|bca)`, `Q=?A`} {
				if err := m.AddRegex(h); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Texts built from the secrets' pieces, so matches, overlaps and
		// near-misses are frequent.
		var b strings.Builder
		for b.Len() < 80 {
			switch r.IntN(4) {
			case 0:
				b.WriteString(secrets[r.IntN(len(secrets))])
			case 1:
				s := secrets[r.IntN(len(secrets))]
				b.WriteString(s[:r.IntN(len(s)+1)])
			case 2:
				b.WriteString("https://u:" + word(3) + "@h ")
			default:
				b.WriteString(word(1 + r.IntN(4)))
			}
		}
		checkMask(t, m, secrets, b.String(), uint64(iter))
	}
}

func FuzzMask(f *testing.F) {
	f.Add("the password is hunter2, hunter2!", "hunter2", "unter", uint8(0), uint64(1))
	f.Add("abcabcdef", "abc", "cde", uint8(0), uint64(2))
	f.Add("https://user:p4ss@host/x\nnext", "p4ss", "", uint8(3), uint64(3))
	f.Add("aGVsbG8gd29ybGQ=", "hello world", "", uint8(0), uint64(4))
	f.Add("x=\"q%AZP25u%0Ao\"", "q%u\no", "\"quoted\"", uint8(2), uint64(5))
	f.Add("é€é€é€", "€é", "é", uint8(1), uint64(6))
	f.Add("aaaaaaa", "aa", "aaa", uint8(0), uint64(7))
	f.Add("x s3cr3tq7v9w2k4m6p8r1t3 czNjcjN0cTd2OXcyazRtNnA4cjF0Mw== y", "s3cr3tq7v9w2k4m6p8r1t3", "r1t3 czNjcj", uint8(0), uint64(8))
	f.Fuzz(func(t *testing.T, text, s1, s2 string, minLen uint8, seed uint64) {
		if len(text) > 4096 || len(s1) > 256 || len(s2) > 256 {
			return
		}
		secrets := []string{s1, s2}
		m := newMasker(t, int(minLen%8), secrets...)
		checkMask(t, m, secrets, text, seed)
		// Secrets embedded in the text must not survive either.
		checkMask(t, m, secrets, text+s1+text+s2+s1, seed+1)
	})
}

// benchLines imitates a build log: timestamps, compiler and test output,
// URLs, hashes, with a secret in one line out of a thousand.
func benchLines(secrets []string) []string {
	r := rand.New(rand.NewPCG(42, 42))
	const hexdigits = "0123456789abcdef"
	hash := func() string {
		var b [40]byte
		for i := range b {
			b[i] = hexdigits[r.IntN(16)]
		}
		return string(b[:])
	}
	templates := []func(i int) string{
		func(i int) string {
			return fmt.Sprintf("2025-03-14T09:26:%02d.%07dZ [INFO] Compiling src/module_%d/file_%d.go (%d of 5000)", i%60, i*7919%10000000, i%97, i%31, i)
		},
		func(i int) string {
			return fmt.Sprintf("2025-03-14T09:26:%02d.%07dZ --- PASS: TestHandler/case_%d (0.%02ds)", i%60, i*104729%10000000, i, i%100)
		},
		func(i int) string {
			return fmt.Sprintf("remote: Counting objects: %d%% (%d/%d), done. https://dev.azure.com/contoso/_git/repo", i%100, i, i+100)
		},
		func(i int) string { return "commit " + hash() + " Merge pull request #" + fmt.Sprint(i) },
		func(i int) string {
			return fmt.Sprintf(`{"level":"debug","ts":%d.%03d,"msg":"request completed","status":200,"bytes":%d}`, 1710000000+i, i%1000, i*13)
		},
		func(i int) string {
			return fmt.Sprintf("npm WARN deprecated package-%d@1.%d.%d: this version is no longer supported", i%500, i%10, i%7)
		},
	}
	lines := make([]string, 4000)
	for i := range lines {
		line := templates[i%len(templates)](i)
		if i%1000 == 999 {
			line += " token=" + secrets[i%len(secrets)]
		}
		lines[i] = line
	}
	return lines
}

func benchSecrets() []string {
	r := rand.New(rand.NewPCG(7, 7))
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	secrets := make([]string, 50)
	for i := range secrets {
		b := make([]byte, 20+r.IntN(33)) // 20..52 characters, like PATs and client secrets
		for j := range b {
			b[j] = chars[r.IntN(len(chars))]
		}
		secrets[i] = string(b)
	}
	return secrets
}

// BenchmarkMask masks realistic log lines with 50 secrets registered (about
// 260 literal patterns once derived forms are counted; see the "patterns"
// metric).
func BenchmarkMask(b *testing.B) {
	secrets := benchSecrets()
	m := newMasker(b, 0, secrets...)
	lines := benchLines(secrets)
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.SetBytes(int64(total))
	for b.Loop() {
		for _, l := range lines {
			_ = m.Mask(l)
		}
	}
	b.ReportMetric(float64(len(m.snap.Load().patterns)), "patterns")
}

// BenchmarkWriter streams the same log through a Writer in 32 KiB writes.
func BenchmarkWriter(b *testing.B) {
	secrets := benchSecrets()
	m := newMasker(b, 0, secrets...)
	log := []byte(strings.Join(benchLines(secrets), "\n") + "\n")
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		w := m.NewWriter(discard{})
		for rest := log; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			w.Write(rest[:n])
			rest = rest[n:]
		}
		w.Close()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkMaskLineWithHint masks one line without a secret, as the bench's
// log producer prints them, with the 50 secrets and a job token's mask hint
// registered: the per-line cost the common "no match" path pays.
func BenchmarkMaskLineWithHint(b *testing.B) {
	m := newMasker(b, 0, benchSecrets()...)
	if err := m.AddRegex("eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJuYW1laWQiOiJiZW5jaCJ9.c2lnbmF0dXJl"); err != nil {
		b.Fatal(err)
	}
	line := "0001234 " + strings.Repeat("x", 88)
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_ = m.Mask(line)
	}
}

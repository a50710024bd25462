package mask

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The sampled scan must find exactly what probing every position finds: the
// longest pattern at each start in [from, to), in order, for any range.
func TestSampledScanMatchesEveryPosition(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := "abcab/=x"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	strides := map[int]bool{}
	for iter := 0; iter < 500; iter++ {
		var pats []string
		minLen := 4 + r.IntN(14)
		for range 1 + r.IntN(12) {
			pats = append(pats, word(minLen+r.IntN(20)))
		}
		// A prefix of another pattern: two patterns start at the same place.
		if p := pats[0]; len(p) > minLen {
			pats = append(pats, p[:minLen+r.IntN(len(p)-minLen)])
		}
		slices.Sort(pats)
		pats = slices.Compact(pats)
		ls := newLiteralSet(pats)
		if ls.stride == 0 && minLen >= 5 {
			t.Fatalf("patterns of %d bytes or more: no sampled scan", minLen)
		}
		strides[ls.stride] = true
		every := *ls
		every.stride = 0
		var b strings.Builder
		for b.Len() < 200 {
			switch p := pats[r.IntN(len(pats))]; r.IntN(3) {
			case 0:
				b.WriteString(p)
			case 1:
				b.WriteString(p[r.IntN(len(p)):]) // a suffix: overlaps and near misses
			default:
				b.WriteString(word(1 + r.IntN(6)))
			}
		}
		text := b.String()
		for range 8 {
			from := r.IntN(len(text) + 1)
			to := from + r.IntN(len(text)+10-from)
			want := findLiterals(&every, text, from, to, nil)
			got := findLiterals(ls, text, from, to, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("stride %d, patterns %q, text %q [%d,%d): sampled %v, every position %v", ls.stride, pats, text, from, to, got, want)
			}
			if gotB := findLiterals(ls, []byte(text), from, to, nil); !slices.Equal(gotB, want) {
				t.Fatalf("bytes: %v, want %v", gotB, want)
			}
		}
	}
	if len(strides) < 5 {
		t.Errorf("only strides %v exercised", strides)
	}
}

// Masking with long secrets (the sampled scan) agrees with the reference, for
// Mask and for the Writer in random chunks.
func TestMaskLongSecretsAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"a", "b", "/", ":", "@", "\n", "é", "%", "=", "Q"}
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for iter := 0; iter < 300; iter++ {
		// Q at both ends: the secrets are registered untrimmed.
		secrets := []string{"Q" + word(5+r.IntN(10)) + "Q", "Q" + word(8+r.IntN(30)) + "Q", "Q" + word(20+r.IntN(20)) + "Q"}
		m := newMasker(t, 0, secrets...)
		if ls := m.snap.Load().literals(); ls.stride < 2 {
			t.Fatalf("secrets %q: stride %d, want the sampled scan", secrets, ls.stride)
		}
		var b strings.Builder
		for b.Len() < 300 {
			s := secrets[r.IntN(len(secrets))]
			switch r.IntN(3) {
			case 0:
				b.WriteString(s)
			case 1:
				b.WriteString(s[r.IntN(len(s)):])
			default:
				b.WriteString(word(1 + r.IntN(5)))
			}
		}
		checkMask(t, m, secrets, b.String(), uint64(iter))
	}
}

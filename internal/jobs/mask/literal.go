package mask

import (
	"cmp"
	"slices"
)

// literalSet finds, at every position of a text, the longest registered
// pattern that starts there.
//
// Patterns of 4 bytes or more are indexed by 4-byte grams. A bitmap of
// hashed grams (16 KiB, a few % of its bits set with hundreds of patterns)
// rejects almost every gram of ordinary text with one load, and only the
// rare hits look up the candidates and compare them. That keeps the cost per
// byte constant whatever the number of patterns, with a small footprint that
// is cheap to rebuild whenever a secret is added; an Aho–Corasick automaton
// over 1000 secrets of 40 bytes would need a transition table of several
// megabytes per rebuild for no gain in this workload, where matches are rare.
//
// When every pattern is at least m bytes long, the text need not be looked
// at in every position: indexing the grams at offsets 0..k-1 of each pattern
// (k ≤ m-3) and testing only every k-th gram of the text still meets every
// occurrence once, at the one sampled gram among the occurrence's first k.
// With secrets of 20 characters or more that is several times fewer probes
// than testing every position. Patterns of 1 to 3 bytes (only possible with
// a minimum length below 4) are looked up by first byte at every position,
// and then every position is probed for the longer ones too.
type literalSet struct {
	bloom    [bloomWords]uint64
	long     map[uint32][]string // by first 4 bytes, longest first
	short    [256][]string       // 1..3 bytes, by first byte, longest first
	hasShort bool

	// stride is k above; 0 when the sampled scan is not used (short
	// patterns, or patterns too short for a stride above 1).
	stride  int
	sbloom  [bloomWords]uint64
	sampled map[uint32][]gramRef // by gram, in scan order (see newLiteralSet)
}

// gramRef is a pattern whose gram at offset off is the map key.
type gramRef struct {
	p   string
	off int
}

const (
	bloomBits  = 17
	bloomWords = 1 << bloomBits / 64
	window     = 4
	// maxStride bounds k: beyond it the grams of a few hundred patterns start
	// to fill the bitmap, and false hits cost more than the probes saved.
	maxStride = 16
	// sampledGramBudget keeps the bitmap sparse with many patterns: k is
	// lowered so that patterns × k stays under it (two bits each: about 6%
	// of the bits set, a chance pass of 1 in 280).
	sampledGramBudget = 4096
)

func bloomHash(w uint32) uint32 { return (w * 0x9E3779B1) >> (32 - bloomBits) }

// bloomHash2 is a second, independent hash: the sampled grams set two bits
// each, so that a gram of ordinary text (a run of spaces, of '=', of '0')
// passes only if both its bits are set, and the filter stays selective with
// k times as many grams in it.
func bloomHash2(w uint32) uint32 { return (w * 0x85EBCA77) >> (32 - bloomBits) }

func gram[T text](s T, i int) uint32 {
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}

func newLiteralSet(patterns []string) *literalSet {
	ls := &literalSet{long: make(map[uint32][]string)}
	minLong := 0
	nlong := 0
	for _, p := range patterns {
		if len(p) < window {
			ls.short[p[0]] = append(ls.short[p[0]], p)
			ls.hasShort = true
			continue
		}
		if nlong == 0 || len(p) < minLong {
			minLong = len(p)
		}
		nlong++
		w := gram(p, 0)
		ls.long[w] = append(ls.long[w], p)
		h := bloomHash(w)
		ls.bloom[h/64] |= 1 << (h % 64)
	}
	longestFirst := func(a, b string) int {
		if c := cmp.Compare(len(b), len(a)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	}
	for _, c := range ls.long {
		slices.SortFunc(c, longestFirst)
	}
	for _, c := range ls.short {
		slices.SortFunc(c, longestFirst)
	}
	if ls.hasShort || nlong == 0 {
		return ls
	}
	k := min(minLong-window+1, maxStride, max(sampledGramBudget/nlong, 1))
	if k < 2 {
		return ls
	}
	ls.stride = k
	ls.sampled = make(map[uint32][]gramRef)
	for _, c := range ls.long {
		for _, p := range c {
			for off := range k {
				w := gram(p, off)
				ls.sampled[w] = append(ls.sampled[w], gramRef{p: p, off: off})
				h, h2 := bloomHash(w), bloomHash2(w)
				ls.sbloom[h/64] |= 1 << (h % 64)
				ls.sbloom[h2/64] |= 1 << (h2 % 64)
			}
		}
	}
	// At a sampled position j a candidate starts at j-off: larger offsets
	// first gives increasing starts, and longest first among equal starts
	// makes the first match at a start the longest.
	for _, c := range ls.sampled {
		slices.SortFunc(c, func(a, b gramRef) int {
			if c := cmp.Compare(b.off, a.off); c != 0 {
				return c
			}
			return longestFirst(a.p, b.p)
		})
	}
	return ls
}

// text is what the scanners accept: log lines as strings, stream buffers as
// bytes.
type text interface{ ~string | ~[]byte }

// findLiterals appends to dst a span for the longest pattern starting at each
// position in [from, to) that fits entirely in s, in increasing order of
// start, and returns dst.
func findLiterals[T text](ls *literalSet, s T, from, to int, dst []span) []span {
	if ls.stride > 0 {
		return findSampled(ls, s, from, to, dst)
	}
	n := len(s)
	to = min(to, n)
	i := from
	if n-from >= window {
		// Positions where a 4-byte window fits.
		last := min(to, n-window+1)
		if i < last {
			w := gram(s, i)
			for {
				h := bloomHash(w)
				matched := false
				if ls.bloom[h/64]&(1<<(h%64)) != 0 {
					for _, p := range ls.long[w] {
						if len(p) <= n-i && string(s[i:i+len(p)]) == p {
							dst = append(dst, span{i, i + len(p)})
							matched = true
							break
						}
					}
				}
				if !matched && ls.hasShort {
					dst = appendShort(ls, s, i, dst)
				}
				i++
				if i >= last {
					break
				}
				w = w>>8 | uint32(s[i+window-1])<<24
			}
		}
	}
	// The last few positions can only start short patterns.
	if ls.hasShort {
		for ; i < to; i++ {
			dst = appendShort(ls, s, i, dst)
		}
	}
	return dst
}

// findSampled is findLiterals probing every stride-th gram. An occurrence
// starting at i in [from, to) has grams at i..i+k-1 inside it, and exactly
// one of them is at a sampled position j (j ≡ from mod k); the candidates of
// j start in (j-k, j], after those of the previous sample, so spans come out
// in order of start.
func findSampled[T text](ls *literalSet, s T, from, to int, dst []span) []span {
	n := len(s)
	to = min(to, n)
	k := ls.stride
	end := min(to+k-1, n-window+1) // sampled grams start before this
	last := -1                     // start of the last span appended
	for j := from; j < end; j += k {
		w := gram(s, j)
		h, h2 := bloomHash(w), bloomHash2(w)
		if ls.sbloom[h/64]&(1<<(h%64)) == 0 || ls.sbloom[h2/64]&(1<<(h2%64)) == 0 {
			continue
		}
		for _, c := range ls.sampled[w] {
			i := j - c.off
			if i <= last || i < from || i >= to || len(c.p) > n-i {
				continue
			}
			if string(s[i:i+len(c.p)]) == c.p {
				dst = append(dst, span{i, i + len(c.p)})
				last = i
			}
		}
	}
	return dst
}

func appendShort[T text](ls *literalSet, s T, i int, dst []span) []span {
	for _, p := range ls.short[s[i]] {
		if len(p) <= len(s)-i && string(s[i:i+len(p)]) == p {
			return append(dst, span{i, i + len(p)})
		}
	}
	return dst
}

package mask

import (
	"cmp"
	"slices"
)

// literalSet finds, at every position of a text, the longest registered
// pattern that starts there.
//
// Patterns of 4 bytes or more are indexed by their first 4 bytes. The scan
// slides a 4-byte window over the text; a 16 KiB bitmap of hashed windows
// (under 1% of its bits set with 1000 patterns) rejects almost every position
// with one load, and only the rare hits look up the candidates and compare
// them. That keeps the cost per byte constant whatever the number of
// patterns, with a small footprint that is cheap to rebuild whenever a
// secret is added; an Aho–Corasick automaton over 1000 secrets of 40 bytes
// would need a transition table of several megabytes per rebuild for no gain
// in this workload, where matches are rare. Patterns of 1 to 3 bytes (only
// possible with a minimum length below 4) are looked up by first byte.
type literalSet struct {
	bloom    [bloomWords]uint64
	long     map[uint32][]string // by first 4 bytes, longest first
	short    [256][]string       // 1..3 bytes, by first byte, longest first
	hasShort bool
	maxLen   int
}

const (
	bloomBits  = 17
	bloomWords = 1 << bloomBits / 64
	window     = 4
)

func bloomHash(w uint32) uint32 { return (w * 0x9E3779B1) >> (32 - bloomBits) }

func newLiteralSet(patterns []string) *literalSet {
	ls := &literalSet{long: make(map[uint32][]string)}
	for _, p := range patterns {
		ls.maxLen = max(ls.maxLen, len(p))
		if len(p) < window {
			ls.short[p[0]] = append(ls.short[p[0]], p)
			ls.hasShort = true
			continue
		}
		w := uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
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
	return ls
}

// text is what the scanners accept: log lines as strings, stream buffers as
// bytes.
type text interface{ ~string | ~[]byte }

// findLiterals appends to dst a span for the longest pattern starting at each
// position in [from, to) that fits entirely in s, in increasing order of
// start, and returns dst.
func findLiterals[T text](ls *literalSet, s T, from, to int, dst []span) []span {
	n := len(s)
	to = min(to, n)
	i := from
	if n-from >= window {
		// Positions where a 4-byte window fits.
		last := min(to, n-window+1)
		if i < last {
			w := uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
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

func appendShort[T text](ls *literalSet, s T, i int, dst []span) []span {
	for _, p := range ls.short[s[i]] {
		if len(p) <= len(s)-i && string(s[i:i+len(p)]) == p {
			return append(dst, span{i, i + len(p)})
		}
	}
	return dst
}

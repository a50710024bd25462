package mask

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"sync"
	"unicode/utf8"
)

// maxLineHold bounds how much of an unterminated line a Writer keeps back for
// the regex rules. A line longer than this is treated as if it ended there;
// a URL credential or hint match straddling that point is not guaranteed to
// be masked.
const maxLineHold = 64 << 10

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("mask: write to closed Writer")

// Writer masks a byte stream on its way to dst. Secrets split across Write
// calls are masked as if the stream had arrived in one piece: the output is
// exactly what Mask would return for everything written, provided no hint
// regex match spans a line break (regex rules apply per line, as the
// official agent masks line by line).
//
// To stay prompt, a Writer keeps back only what may still turn out to be
// part of a secret:
//   - for registered values, the last (longest pattern − 1) bytes, derived
//     forms included (a URI-escaped or base64 form is longer than the value),
//     plus bytes already replaced by a token that an overlapping match may
//     still extend;
//   - for the URL credential rule, an unterminated line from its first "//";
//   - when hint regexes are registered, the whole unterminated line.
//
// Lines are kept back at most maxLineHold bytes. Everything else is written
// to dst before Write returns. Flush writes the tail; a secret that straddles
// a Flush is not recognised. A Writer is safe for concurrent use; values
// registered on the Masker apply from the next Write on.
type Writer struct {
	m   *Masker
	dst io.Writer

	mu  sync.Mutex
	buf []byte // the live window is buf[off:]
	off int

	// Positions below are relative to the live window.
	emitted int    // output has been produced for every byte before this
	maskEnd int    // end of the last masked run; -1 when none reaches the window
	litFrom int    // literal matches starting before this are in pending
	scanned int    // regex rules have been applied to every byte before this
	nlFrom  int    // '\n' was looked for in [scanned, nlFrom)
	pending []span // matches collected but not yet written

	snap   *snapshot
	out    []byte
	err    error
	closed bool
}

// NewWriter returns a Writer that masks what is written to it with m's
// secrets and forwards the result to dst. Close flushes but does not close
// dst, which stays the caller's.
func (m *Masker) NewWriter(dst io.Writer) *Writer {
	return &Writer{m: m, dst: dst, maskEnd: -1}
}

// Write masks p and writes everything that can no longer be part of a secret
// to dst. It reports len(p) unless the Writer is closed; an error from dst
// is returned and kept for later calls.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	w.process(false)
	return len(p), w.err
}

// Flush masks and writes everything held back.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.closed {
		return w.err
	}
	w.process(true)
	return w.err
}

// Close flushes and makes further writes fail. It does not close dst.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	if w.err == nil {
		w.process(true)
	}
	w.closed = true
	return w.err
}

// process collects matches in the live window, writes the output for every
// byte before the cut point, and drops what is no longer needed. With final
// set the cut point is the end of the window.
func (w *Writer) process(final bool) {
	sn := w.m.snap.Load()
	if sn != w.snap {
		// New values: look for them again in what has not been written.
		w.litFrom = max(min(w.litFrom, w.emitted), 0)
		w.snap = sn
	}
	live := w.buf[w.off:]
	end := len(live)

	w.scanRegex(sn, live, final)

	litCut := end
	if !final && sn.maxLen > 0 {
		litCut = end - (sn.maxLen - 1)
	}
	if lits := sn.literals(); lits != nil && litCut > w.litFrom {
		w.pending = findLiterals(lits, live, w.litFrom, litCut, w.pending)
	}
	w.litFrom = max(w.litFrom, litCut)

	cut := litCut
	if !final {
		cut = min(cut, w.scanned)
		// Keep UTF-8 sequences whole within one write to dst.
		for k := 0; k < utf8.UTFMax-1 && cut > w.emitted && cut < end && !utf8.RuneStart(live[cut]); k++ {
			cut--
		}
	}
	cut = max(cut, 0)

	slices.SortStableFunc(w.pending, func(a, b span) int { return a.start - b.start })
	out := w.out[:0]
	i := 0
	for ; i < len(w.pending); i++ {
		sp := w.pending[i]
		if sp.start <= w.maskEnd { // overlaps or touches the current run
			w.maskEnd = max(w.maskEnd, sp.end)
			w.emitted = max(w.emitted, w.maskEnd)
			continue
		}
		if sp.start >= cut {
			break
		}
		if sp.start > w.emitted {
			out = append(out, live[w.emitted:sp.start]...)
		}
		out = append(out, Token...)
		w.maskEnd = sp.end
		w.emitted = max(w.emitted, sp.end)
	}
	w.pending = append(w.pending[:0], w.pending[i:]...)
	if cut > w.emitted {
		out = append(out, live[w.emitted:cut]...)
		w.emitted = cut
	}
	if len(out) > 0 {
		if _, err := w.dst.Write(out); err != nil {
			w.err = err
		}
	}
	w.out = out[:0]

	w.drop(min(w.litFrom, w.scanned, w.emitted))
}

// scanRegex applies the regex rules to the complete lines not yet scanned
// and decides how much of the unterminated line must wait.
func (w *Writer) scanRegex(sn *snapshot, live []byte, final bool) {
	end := len(live)
	if w.scanned >= end {
		return
	}
	r := w.scanned
	if final {
		r = end
	} else {
		from := max(w.nlFrom, w.scanned)
		if i := bytes.LastIndexByte(live[from:], '\n'); i >= 0 {
			r = from + i + 1
		}
		w.nlFrom = end
		if end-r > maxLineHold {
			r = end
		}
	}
	if r > w.scanned {
		region := live[w.scanned:r]
		n := len(w.pending)
		w.pending = appendRegexHits(sn, region, w.pending)
		for j := n; j < len(w.pending); j++ {
			w.pending[j].start += w.scanned
			w.pending[j].end += w.scanned
		}
		w.scanned = r
	}
	if final || len(sn.regexes) > 0 || w.scanned >= end {
		return
	}
	// Only the URL rule is active. Its matches begin with "//", so nothing
	// before the first "//" of the unterminated line can be masked by it; a
	// trailing '/' may become "//" with the next write.
	rest := live[w.scanned:]
	if i := bytes.Index(rest, []byte("//")); i >= 0 {
		w.scanned += i
	} else if rest[len(rest)-1] == '/' {
		w.scanned = end - 1
	} else {
		w.scanned = end
	}
}

// drop forgets the first k bytes of the live window.
func (w *Writer) drop(k int) {
	if k <= 0 {
		return
	}
	w.off += k
	w.emitted -= k
	w.maskEnd = max(w.maskEnd-k, -1)
	w.litFrom -= k
	w.scanned -= k
	w.nlFrom = max(w.nlFrom-k, 0)
	for i := range w.pending {
		w.pending[i].start -= k
		w.pending[i].end -= k
	}
	// Compact once the dead prefix dominates, so the buffer stays bounded and
	// copying stays amortised O(1) per byte.
	if w.off >= len(w.buf)/2 {
		n := copy(w.buf, w.buf[w.off:])
		w.buf = w.buf[:n]
		w.off = 0
	}
}

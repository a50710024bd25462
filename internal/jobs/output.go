package jobs

import (
	"bytes"
	"strings"
	"sync"
)

// maxLineBytes bounds one console line in memory. Longer output without a
// newline is cut into several lines, so a process printing gigabytes on one
// line cannot exhaust memory. (The live feed cuts lines at 1024 characters
// anyway; the log keeps them whole up to this size.)
const maxLineBytes = 1 << 20

// lineWriter splits a process's byte stream into lines and hands each to
// emit. stdout and stderr of one step share a mutex so that lines are
// processed one at a time, in the order they complete.
type lineWriter struct {
	mu     *sync.Mutex
	buf    []byte
	emit   func(line string)
	wrote  bool // anything was written (failOnStderr uses the stderr one)
	closed bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) > 0 {
		w.wrote = true
	}
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLineBytes - len(w.buf)
			if len(p) < room {
				w.buf = append(w.buf, p...)
				break
			}
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			w.flushLocked()
			continue
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.flushLocked()
	}
	return n, nil
}

func (w *lineWriter) flushLocked() {
	line := strings.TrimSuffix(string(w.buf), "\r")
	w.buf = w.buf[:0]
	if cap(w.buf) > 64<<10 {
		w.buf = nil // don't keep a huge buffer after one long line
	}
	w.emit(line)
}

// Close emits a final unterminated line.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed && len(w.buf) > 0 {
		w.flushLocked()
	}
	w.closed = true
	return nil
}

// Wrote reports whether anything was written.
func (w *lineWriter) Wrote() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wrote
}

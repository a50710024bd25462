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

// lineWriter splits a process's byte stream into lines and hands them to
// emit, all the lines completed by one Write in one call. stdout and stderr
// of one step share a mutex so that lines are processed one batch at a time,
// in the order they complete.
type lineWriter struct {
	mu     *sync.Mutex
	buf    []byte   // the unterminated line
	lines  []string // scratch for one Write's lines
	emit   func(lines []string)
	wrote  bool // anything was written (failOnStderr uses the stderr one)
	closed bool
}

// maxScratchLines bounds the line slice kept between writes.
const maxScratchLines = 4096

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(p) > 0 {
		w.wrote = true
	}
	n := len(p)
	lines := w.lines[:0]
	for len(p) > 0 {
		if len(w.buf) == 0 {
			if last := bytes.LastIndexByte(p, '\n'); last >= 0 {
				// Every complete line at once, in one string: a pipe read
				// holds hundreds of short lines.
				lines = appendLines(lines, string(p[:last]))
				p = p[last+1:]
				continue
			}
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLineBytes - len(w.buf)
			if len(p) < room {
				w.buf = append(w.buf, p...)
				break
			}
			w.buf = append(w.buf, p[:room]...)
			p = p[room:]
			lines = w.takeLine(lines)
			continue
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		lines = w.takeLine(lines)
	}
	w.emitLocked(lines)
	return n, nil
}

// appendLines appends the lines of text (split at '\n', each without a
// trailing '\r'); they share text's memory.
func appendLines(dst []string, text string) []string {
	for {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			return append(dst, strings.TrimSuffix(text, "\r"))
		}
		dst = append(dst, strings.TrimSuffix(text[:i], "\r"))
		text = text[i+1:]
	}
}

// takeLine appends the buffered line to lines and empties the buffer.
func (w *lineWriter) takeLine(lines []string) []string {
	line := strings.TrimSuffix(string(w.buf), "\r")
	w.buf = w.buf[:0]
	if cap(w.buf) > 64<<10 {
		w.buf = nil // don't keep a huge buffer after one long line
	}
	return append(lines, line)
}

func (w *lineWriter) emitLocked(lines []string) {
	if len(lines) > 0 {
		w.emit(lines)
	}
	clear(lines) // the scratch must not keep the lines' memory alive
	if cap(lines) > maxScratchLines {
		lines = nil
	}
	w.lines = lines[:0]
}

// Close emits a final unterminated line.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed && len(w.buf) > 0 {
		w.emitLocked(w.takeLine(w.lines[:0]))
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

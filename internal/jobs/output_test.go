package jobs

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// collect is a lineWriter whose batches are recorded.
func collect() (*lineWriter, *[][]string) {
	var batches [][]string
	w := &lineWriter{mu: &sync.Mutex{}, emit: func(lines []string) {
		batches = append(batches, slices.Clone(lines))
	}}
	return w, &batches
}

// However a stream is cut into writes, the same lines come out, in order,
// without their '\r', each write's lines in one batch.
func TestLineWriterSplitsAnyChunking(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var stream strings.Builder
	var want []string
	for range 2000 {
		var l string
		switch r.IntN(6) {
		case 0:
			l = ""
		case 1:
			l = strings.Repeat("w", r.IntN(3000))
		case 2:
			l = "crlf " + strings.Repeat("c", r.IntN(10)) + "\r"
		default:
			l = "line " + strings.Repeat("x", r.IntN(100))
		}
		stream.WriteString(l + "\n")
		want = append(want, strings.TrimSuffix(l, "\r"))
	}
	stream.WriteString("tail without newline\r")
	want = append(want, "tail without newline")
	data := []byte(stream.String())
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		w, batches := collect()
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN([]int{16, 4096, 70000}[seed%3]))
			before := len(*batches)
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			if len(*batches) > before+1 {
				t.Fatalf("one write emitted %d batches", len(*batches)-before)
			}
			rest = rest[n:]
		}
		w.Close()
		var got []string
		for _, b := range *batches {
			if len(b) == 0 {
				t.Fatal("empty batch")
			}
			got = append(got, b...)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: %d lines, want %d", seed, len(got), len(want))
		}
		if !w.Wrote() {
			t.Error("Wrote is false")
		}
	}
}

// A line without a newline is cut at maxLineBytes, so memory stays bounded.
func TestLineWriterCutsEndlessLine(t *testing.T) {
	w, batches := collect()
	chunk := []byte(strings.Repeat("a", 64<<10))
	for range 40 { // 2.5 MiB
		w.Write(chunk)
	}
	w.Write([]byte("\n"))
	var lens []int
	for _, b := range *batches {
		for _, l := range b {
			lens = append(lens, len(l))
		}
	}
	if want := []int{maxLineBytes, maxLineBytes, 40*64<<10 - 2*maxLineBytes}; !slices.Equal(lens, want) {
		t.Errorf("line lengths %v, want %v", lens, want)
	}
	if cap(w.buf) > 64<<10 {
		t.Errorf("a %d byte buffer kept after the long line", cap(w.buf))
	}
}

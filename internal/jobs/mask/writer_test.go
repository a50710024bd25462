package mask

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func writeChunks(t testing.TB, m *Masker, chunks ...string) string {
	t.Helper()
	var out bytes.Buffer
	w := m.NewWriter(&out)
	for _, c := range chunks {
		if n, err := w.Write([]byte(c)); err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// Splitting the input into two and three writes at every offset gives
// exactly what Mask gives for the whole input.
func TestWriterSplitAtEveryOffset(t *testing.T) {
	m := newMasker(t, 0, "hunter2hunter2", "ter2hun", "xyzzy", "é€é€")
	if err := m.AddRegex(`tok-[0-9]{4}`); err != nil {
		t.Fatal(err)
	}
	inputs := []string{
		"start hunter2hunter2 middle xyzzyxyzzy end\n",
		"adjacent:hunter2hunter2xyzzy|overlap:hunter2hunhunter2hunter2\n",
		"clone https://user:pa55word@example.com/repo.git done\nnext xyzzy\n",
		"multi-byte é€é€é€ and tok-1234 then tok-12345\nsecond line tok-0000",
		"xyzzy",
		"no secret at all\n",
	}
	for _, in := range inputs {
		want := m.Mask(in)
		for i := 0; i <= len(in); i++ {
			if got := writeChunks(t, m, in[:i], in[i:]); got != want {
				t.Fatalf("split at %d of %q:\n got %q\nwant %q", i, in, got, want)
			}
			for j := i; j <= len(in); j += 3 {
				if got := writeChunks(t, m, in[:i], in[i:j], in[j:]); got != want {
					t.Fatalf("split at %d,%d of %q:\n got %q\nwant %q", i, j, in, got, want)
				}
			}
		}
		bytewise := make([]string, len(in))
		for i := 0; i < len(in); i++ {
			bytewise[i] = in[i : i+1]
		}
		if got := writeChunks(t, m, bytewise...); got != want {
			t.Fatalf("byte by byte %q:\n got %q\nwant %q", in, got, want)
		}
	}
}

// The Writer holds back only what may still become part of a secret: for
// values, the longest registered pattern (derived forms included) minus one
// byte; for the URL rule, an unterminated line from its first "//".
func TestWriterPromptness(t *testing.T) {
	m := newMasker(t, 0, "0123456789")
	hold := m.snap.Load().maxLen - 1
	if hold != len("MDEyMzQ1Njc4OQ%3D%3D")-1 { // the URI-escaped padded base64 form is the longest
		t.Fatalf("hold = %d", hold)
	}
	var out bytes.Buffer
	w := m.NewWriter(&out)
	write := func(in, want string) {
		t.Helper()
		if _, err := w.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		if out.String() != want {
			t.Fatalf("after writing %q: dst has %q, want %q", in, out.String(), want)
		}
	}
	filler := strings.Repeat("abcdefghij", 5)
	write(filler, filler[:len(filler)-hold])
	pad := strings.Repeat("z", hold)
	// Once a match starts more than hold bytes before the end, no longer
	// match can start before it: its token is written.
	write("0123456789"+pad, filler+"***")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := filler + "***" + pad; out.String() != want {
		t.Fatalf("after Flush: %q, want %q", out.String(), want)
	}

	// With no values registered only the URL rule holds anything back.
	out.Reset()
	w = New(Options{}).NewWriter(&out)
	write("plain text, no newline", "plain text, no newline")
	write(" clone https://user:pa", "plain text, no newline clone https:")
	write("ss@host/x\n", "plain text, no newline clone https://user:***@host/x\n")
	write("a path/", "plain text, no newline clone https://user:***@host/x\na path")
	write("x", "plain text, no newline clone https://user:***@host/x\na path/x")
}

func TestWriterHintsHoldTheLine(t *testing.T) {
	m := New(Options{})
	if err := m.AddRegex(`id=[a-z]+`); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := m.NewWriter(&out)
	w.Write([]byte("done\nuser id=ab"))
	if out.String() != "done\n" {
		t.Fatalf("dst = %q, want the complete line only", out.String())
	}
	w.Write([]byte("cdef ok\n"))
	if out.String() != "done\nuser *** ok\n" {
		t.Fatalf("dst = %q", out.String())
	}
}

func TestWriterLongLineIsBounded(t *testing.T) {
	m := New(Options{})
	var out bytes.Buffer
	w := m.NewWriter(&out)
	line := "see https://example.com " + strings.Repeat("x", maxLineHold+10)
	w.Write([]byte(line))
	if out.Len() != len(line) {
		t.Fatalf("an unterminated line longer than %d bytes was held back: %d of %d written", maxLineHold, out.Len(), len(line))
	}
	if len(w.buf)-w.off != 0 {
		t.Errorf("%d bytes still buffered", len(w.buf)-w.off)
	}
}

func TestWriterValueAddedMidStream(t *testing.T) {
	m := New(Options{})
	var out bytes.Buffer
	w := m.NewWriter(&out)
	w.Write([]byte("before s3cret-value "))
	m.AddValue("s3cret-value")
	w.Write([]byte("after s3cret-value\n"))
	w.Close()
	if want := "before s3cret-value after ***\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestWriterErrors(t *testing.T) {
	m := New(Options{})
	fw := &failWriter{}
	w := m.NewWriter(fw)
	if _, err := w.Write([]byte("hello\n")); err == nil || err.Error() != "disk full" {
		t.Fatalf("Write error = %v, want disk full", err)
	}
	if _, err := w.Write([]byte("again\n")); err == nil {
		t.Fatal("second Write after a dst error succeeded")
	}
	if fw.n != 1 {
		t.Errorf("dst written %d times after failing", fw.n)
	}

	w2 := m.NewWriter(io.Discard)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
}

func TestWriterKeepsUTF8Whole(t *testing.T) {
	m := newMasker(t, 0, "0123456789")
	var chunks [][]byte
	w := m.NewWriter(writerFunc(func(p []byte) (int, error) {
		chunks = append(chunks, bytes.Clone(p))
		return len(p), nil
	}))
	in := strings.Repeat("€uro ", 20)
	for i := 0; i < len(in); i += 7 {
		w.Write([]byte(in[i:min(i+7, len(in))]))
	}
	w.Close()
	var all []byte
	for _, c := range chunks {
		if len(c) > 0 && (c[0]&0xC0 == 0x80) {
			t.Fatalf("write to dst starts inside a UTF-8 sequence: %q", c)
		}
		all = append(all, c...)
	}
	if string(all) != in {
		t.Fatalf("got %q", all)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

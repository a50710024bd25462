package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name                      string
		in                        []float64
		min, median, p95, max, mn float64
	}{
		{"one", []float64{5}, 5, 5, 5, 5, 5},
		{"even count takes the mean of the middle two", []float64{4, 1, 3, 2}, 1, 2.5, 4, 4, 2.5},
		{"odd count", []float64{9, 1, 5}, 1, 5, 9, 9, 5},
		{"p95 of 20 is the 19th", seq(20), 1, 10.5, 19, 20, 10.5},
		{"p95 of 21 is the 20th", seq(21), 1, 11, 20, 21, 11},
		{"p95 of 100 is the 95th", seq(100), 1, 50.5, 95, 100, 50.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			s := summarize(in)
			if s.N != len(in) || s.Min != tt.min || s.Median != tt.median || s.P95 != tt.p95 || s.Max != tt.max || s.Mean != tt.mn {
				t.Errorf("summarize(%v) = n %d min %v median %v p95 %v max %v mean %v; want min %v median %v p95 %v max %v mean %v",
					tt.in, s.N, s.Min, s.Median, s.P95, s.Max, s.Mean, tt.min, tt.median, tt.p95, tt.max, tt.mn)
			}
			for i := range in {
				if in[i] != tt.in[i] {
					t.Fatalf("summarize reordered its input: %v", in)
				}
			}
		})
	}
	if s := summarize(nil); s.N != 0 {
		t.Errorf("summarize(nil).N = %d", s.N)
	}
}

// seq is 1..n in reverse, so that sorting matters.
func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(n - i)
	}
	return out
}

func TestFormatting(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{fmtMS(0.123), "0.12 ms"},
		{fmtMS(12.34), "12.3 ms"},
		{fmtMS(123.4), "123 ms"},
		{fmtMS(1234), "1.23 s"},
		{fmtMS(12345), "12.3 s"},
		{fmtMiB(20 << 20), "20.0 MiB"},
		{thousands(1000000), "1,000,000"},
		{thousands(999), "999"},
		{thousands(1000), "1,000"},
		{ratio(3, 2), "1.50×"},
		{ratio(3, 0), "—"},
		{summarize([]float64{1, 2, 3}).medianRange(fmtMS), "2.00 ms (1.00 ms–3.00 ms, n=3)"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseProcStatus(t *testing.T) {
	good := "Name:\tgoagent\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t7\n"
	st, err := parseProcStatus([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if st.VmRSS != 10<<20 || st.VmHWM != 20<<20 {
		t.Errorf("parsed %+v, want VmRSS 10 MiB and VmHWM 20 MiB", st)
	}
	for name, bad := range map[string]string{
		"no lines":   "Name:\tkthreadd\nThreads:\t1\n",
		"only one":   "VmRSS:\t 1 kB\n",
		"wrong unit": "VmHWM:\t 1 MB\nVmRSS:\t 1 kB\n",
		"not number": "VmHWM:\t x kB\nVmRSS:\t 1 kB\n",
	} {
		if _, err := parseProcStatus([]byte(bad)); err == nil {
			t.Errorf("%s: parsed %q without an error", name, bad)
		}
	}
	self, err := readProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.VmRSS <= 0 || self.VmHWM < self.VmRSS {
		t.Errorf("own status %+v: want 0 < VmRSS ≤ VmHWM", self)
	}
}

func TestParseStamp(t *testing.T) {
	got, ok := parseStamp("2025-01-01T00:00:00.0000000Z BENCH_T0 1700000000.123456\n")
	if want := time.Unix(1700000000, 123456000); !ok || !got.Equal(want) {
		t.Errorf("parseStamp = %v, %v; want %v", got, ok, want)
	}
	if got, ok := parseStamp("BENCH_T0 1700000000,000001"); !ok || got.Nanosecond() != 1000 {
		t.Errorf("a comma decimal separator: %v, %v", got, ok)
	}
	// The step's log also shows the script itself; that is no timestamp.
	if _, ok := parseStamp(`echo "BENCH_T0 $EPOCHREALTIME"`); ok {
		t.Error("the script's own text parsed as a timestamp")
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, []row{
		{Metric: "start → listening", Goagent: "p50 80 ms", Limit: "50 ms", Ratio: "1.60×", Goal: "p95 ≤ 250 ms", Met: metYes},
		{Metric: "log", Goagent: "2 s", Limit: "150 ms", Ratio: "13×", Goal: "≤ 1.5×", Met: metNo},
	})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header, separator and 2 rows, got:\n%s", b.String())
	}
	if !strings.HasPrefix(lines[0], "| metric ") || !strings.HasPrefix(lines[1], "| ---") {
		t.Errorf("header or separator missing:\n%s", b.String())
	}
	for _, l := range lines {
		if utf8.RuneCountInString(l) != utf8.RuneCountInString(lines[0]) || strings.Count(l, "|") != 7 {
			t.Errorf("misaligned line %q in:\n%s", l, b.String())
		}
	}
}

func TestMarkdownNamesMissedGoals(t *testing.T) {
	r := &report{
		Command: "make bench",
		Machine: machine{CPU: "Test CPU", Cores: 2, MemoryBytes: 8 << 30, Kernel: "Linux 6", Date: time.Date(2025, 1, 2, 3, 4, 0, 0, time.UTC), LoadStart: "0.1 0.2 0.3", LoadEnd: "0.4 0.5 0.6"},
		Sections: []section{
			{Name: "Fine", Rows: []row{{Metric: "fast thing", Goagent: "1 ms", Goal: "≤ 2 ms", Met: metYes}}, Method: "measured carefully"},
			{Name: "Slow", Rows: []row{{Metric: "slow thing", Goagent: "9 ms", Ratio: "4.50×", Goal: "≤ 2 ms", Met: metNo}}},
			failed("Broken", "broken thing", "≤ 1", os.ErrNotExist),
		},
	}
	var b bytes.Buffer
	r.writeMarkdown(&b)
	md := b.String()
	for _, want := range []string{"make bench", "Test CPU, 2 logical cores", "8.0 GiB", "2025-01-02 03:04 UTC", "0.1 0.2 0.3 at the start", "measured carefully",
		"- slow thing: 9 ms, 4.50× (goal ≤ 2 ms)", "- broken thing: could not measure", os.ErrNotExist.Error()} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "- fast thing:") {
		t.Errorf("a met goal is listed as missed:\n%s", md)
	}
}

func TestCheckLog(t *testing.T) {
	secrets := map[string]string{"a": "s3cr3tAAAA", "b": "s3cr3tBBBB"}
	line := func(n int, tail string) string {
		return "2025-01-01T00:00:00.0000000Z " + strings.Repeat("0", 7) + " " + strings.Repeat("x", 88) + tail + "\n"
	}
	var ok strings.Builder
	for i := 1; i <= 2000; i++ {
		tail := ""
		if i%1000 == 0 {
			tail = " ***"
		}
		ok.WriteString(line(i, tail))
	}
	if err := checkLog(logsOf(ok.String()), secrets, 2000); err != nil {
		t.Errorf("a complete masked log: %v", err)
	}
	// Pages: the lines spread over several logs still count.
	half := len(ok.String()) / 2
	cut := strings.LastIndex(ok.String()[:half], "\n") + 1
	if err := checkLog(logsOf(ok.String()[:cut], ok.String()[cut:]), secrets, 2000); err != nil {
		t.Errorf("a log in two pages: %v", err)
	}
	if err := checkLog(logsOf(ok.String()[:cut]), secrets, 2000); err == nil || !strings.Contains(err.Error(), "lines") {
		t.Errorf("half the lines: err = %v", err)
	}
	leak := strings.Replace(ok.String(), "***", "s3cr3tBBBB", 1)
	if err := checkLog(logsOf(leak), secrets, 2000); err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("a leaked secret: err = %v (must be reported, and not quoted)", err)
	}
	unmasked := strings.ReplaceAll(ok.String(), " ***", "")
	if err := checkLog(logsOf(unmasked), secrets, 2000); err == nil {
		t.Error("a log without masks passed")
	}
}

type fakeLogs map[int]string

func (f fakeLogs) Logs() map[int]string { return f }

func logsOf(pages ...string) fakeLogs {
	f := fakeLogs{}
	for i, p := range pages {
		f[i+1] = p
	}
	return f
}

func TestGenerateRepo(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (make deps installs it): %v", err)
	}
	ctx := context.Background()
	shape := repoShape{Files: 120, Commits: 7, Seed: 3}
	a, err := generateRepo(ctx, t.TempDir(), shape)
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", a.GitDir}, args...)...).Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	if n := git("rev-list", "--count", "refs/heads/main"); n != "7" {
		t.Errorf("%s commits, want 7", n)
	}
	if files := strings.Split(git("ls-tree", "-r", "--name-only", "HEAD"), "\n"); len(files) != 120 || a.Files != 120 {
		t.Errorf("%d files in HEAD (reported %d), want 120", len(files), a.Files)
	}
	if git("rev-parse", "HEAD") != a.Head {
		t.Errorf("HEAD is not the reported head %s", a.Head)
	}
	if git("fsck", "--strict") != "" {
		t.Error("git fsck complains")
	}
	// Deterministic: the same seed gives the same repository, another seed another.
	b, err := generateRepo(ctx, t.TempDir(), shape)
	if err != nil {
		t.Fatal(err)
	}
	shape.Seed++
	c, err := generateRepo(ctx, t.TempDir(), shape)
	if err != nil {
		t.Fatal(err)
	}
	if a.Head != b.Head || a.Head == c.Head {
		t.Errorf("heads %s, %s (same seed), %s (other seed)", a.Head, b.Head, c.Head)
	}
	// Checked out, it has every file.
	dst := filepath.Join(t.TempDir(), "wt")
	if out, err := exec.Command("git", "clone", "--quiet", a.GitDir, dst).CombinedOutput(); err != nil {
		t.Fatalf("clone: %v: %s", err, out)
	}
	if n, err := countFiles(dst); err != nil || n != 120 {
		t.Errorf("countFiles = %d, %v; want 120", n, err)
	}
}

func TestPathWithout(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("git is required (make deps installs it): %v", err)
	}
	dir, err := pathWithout(filepath.Join(t.TempDir(), "bin"), "git")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "git")); err == nil {
		t.Errorf("git (%s) is still reachable through %s", gitPath, dir)
	}
	for _, name := range []string{"bash", "awk", "cat"} {
		want, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		got, err := filepath.EvalSymlinks(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s missing from the PATH without git: %v", name, err)
			continue
		}
		if wantReal, _ := filepath.EvalSymlinks(want); got != wantReal {
			t.Errorf("%s resolves to %s, want %s", name, got, wantReal)
		}
	}
}

func TestProducersPrintWhatTheyPromise(t *testing.T) {
	secrets := map[string]string{"benchSecret01": "s3cr3tone", "benchSecret02": "s3cr3ttwo"}
	refs := []string{"$(benchSecret01)", "$(benchSecret02)"}
	for _, p := range []logProducer{awkProducer, bashProducer} {
		t.Run(p.what, func(t *testing.T) {
			script := p.script(3000, refs)
			for k, v := range secrets {
				script = strings.ReplaceAll(script, "$("+k+")", v)
			}
			out, err := exec.Command("bash", "--noprofile", "--norc", "-c", script).Output()
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if len(lines) != 3000 {
				t.Fatalf("%d lines, want 3000", len(lines))
			}
			withSecret := 0
			for i, l := range lines {
				n := i + 1
				hasSecret := strings.Contains(l, "s3cr3t")
				if hasSecret {
					withSecret++
				}
				if hasSecret != (n%1000 == 0) {
					t.Errorf("line %d %q: secret present %v", n, l, hasSecret)
				}
				if !hasSecret && len(l) != 96 {
					t.Errorf("line %d has %d characters, want 96", n, len(l))
				}
			}
			if withSecret != 3 {
				t.Errorf("%d lines with a secret, want 3", withSecret)
			}
		})
	}
}

func TestNotesOnlyForMissedGoals(t *testing.T) {
	rows := []row{
		{Metric: "checkout, go-git, fetchDepth 1", Met: metNo},
		{Metric: "checkout, go-git, full history", Met: metNo},
		{Metric: "log throughput: 1,000,000 lines (97 MB), 50 secrets, fast producer (awk)", Met: metYes},
		{Metric: "something else", Met: metNo},
	}
	notes := strings.Join(notesFor(rows), "\n")
	if strings.Count(notes, "- **checkout, go-git") != 1 {
		t.Errorf("want one note for the go-git rows:\n%s", notes)
	}
	if strings.Contains(notes, "fast producer") || strings.Contains(notes, "something else") {
		t.Errorf("a note for a met goal or an unknown metric:\n%s", notes)
	}
	if !strings.HasPrefix(notes, "Profiled on") {
		t.Errorf("notes must say when and how they were obtained:\n%s", notes)
	}
	if got := notesFor([]row{{Metric: "checkout, go-git, full history", Met: metYes}}); len(got) != 0 {
		t.Errorf("notes for met goals: %v", got)
	}
}

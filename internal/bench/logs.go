package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/jobs/mask"
)

const (
	logRatioGoal = 1.5
	logRSSGoal   = 60 << 20
)

// logProducer is a script printing lines, each 96 characters and a newline;
// every 1000th line ends with one of the secrets.
type logProducer struct {
	name   string
	what   string
	script func(lines int, secretRefs []string) string
}

// awkProducer prints as fast as a process can (hundreds of MB/s): the agent
// is the bottleneck, so this is the demanding case.
var awkProducer = logProducer{
	name: "fast producer (awk)",
	what: "awk",
	script: func(lines int, refs []string) string {
		return fmt.Sprintf(`awk 'BEGIN {
  n = split("%s", sec, " ")
  pad = sprintf("%%88s", ""); gsub(/ /, "x", pad)
  for (i = 1; i <= %d; i++) {
    if (i %% 1000 == 0) printf "%%07d %%s %%s\n", i, pad, sec[(i / 1000) %% n + 1]
    else printf "%%07d %%s\n", i, pad
  }
}'
`, strings.Join(refs, " "), lines)
	},
}

// bashProducer prints with bash builtins (a few MB/s): the producer is the
// bottleneck, as with most build tools.
var bashProducer = logProducer{
	name: "slow producer (bash loop)",
	what: "a bash printf loop",
	script: func(lines int, refs []string) string {
		return fmt.Sprintf(`sec=(%s)
pad=$(printf '%%088d' 0)
for ((i = 1; i <= %d; i++)); do
  if (( i %% 1000 == 0 )); then printf '%%07d %%s %%s\n' "$i" "$pad" "${sec[(i / 1000) %% ${#sec[@]}]}"; else printf '%%07d %%s\n' "$i" "$pad"; fi
done
`, strings.Join(refs, " "), lines)
	},
}

// logThroughput: a step printing many lines with secrets registered, masked,
// streamed and uploaded, against bash printing the same to /dev/null; and
// the agent's peak RSS meanwhile.
func (b *bencher) logThroughput(ctx context.Context) []section {
	name := "Log throughput and memory"
	lines := b.cfg.LogLines
	metric := func(p logProducer) string {
		return fmt.Sprintf("log throughput: %s lines, %d secrets, %s", thousands(lines), b.cfg.Secrets, p.name)
	}
	rssMetric := "agent peak RSS during the log run"
	goal := "≤ 1.5× bash"
	secrets := map[string]string{}
	var refs []string
	for i := range b.cfg.Secrets {
		n := fmt.Sprintf("benchSecret%02d", i+1)
		secrets[n] = "s3cr3t" + strings.ToLower(rand.Text())[:20]
		refs = append(refs, "$("+n+")")
	}
	producers := []logProducer{awkProducer}
	if b.cfg.SlowLines > 0 {
		producers = append(producers, bashProducer)
	}
	var sections []section
	var rss []float64
	var rssErr error
	for _, prod := range producers {
		reps := b.cfg.Reps
		n := lines
		if prod.name == bashProducer.name {
			reps = max(2, reps/2) // seconds a run on both sides
			n = b.cfg.SlowLines
		}
		s, peaks, err := b.logRuns(ctx, prod, n, reps, secrets, refs)
		if err != nil {
			sections = append(sections, failed(name+": "+prod.name, metric(prod), goal, err))
			rssErr = err
			continue
		}
		rss = append(rss, peaks...)
		sections = append(sections, s)
	}
	if len(rss) == 0 {
		if rssErr == nil {
			rssErr = fmt.Errorf("no log run")
		}
		sections = append(sections, failed("Peak RSS during the log runs", rssMetric, "≤ 60 MB", rssErr))
		return sections
	}
	r := summarize(rss)
	sections = append(sections, section{
		Name: "Peak RSS during the log runs",
		Rows: []row{{
			Metric:  rssMetric,
			Goagent: fmt.Sprintf("max %s (median %s, n=%d)", fmtMiB(r.Max), fmtMiB(r.Median), r.N),
			Limit:   metNA,
			Ratio:   metNA,
			Goal:    "≤ 60 MB",
			Met:     verdict(r.Max <= logRSSGoal),
		}},
		Method: "VmHWM of the agent process (its peak resident set since it started; step processes are not counted) from " +
			"/proc/PID/status, read after each log job above completed. Each run uses a fresh agent, so the figure is the " +
			"peak of one registration, one session and one job printing the whole log. MB here is MiB.",
		Details: []string{"peak RSS per run: " + list(rss, fmtMiB)},
	})
	return sections
}

// logRuns measures one producer: reps runs through goagent and reps runs of
// bash alone, interleaved. It returns the section and the agent's peak RSS
// of each run.
func (b *bencher) logRuns(ctx context.Context, prod logProducer, lines, reps int, secrets map[string]string, refs []string) (section, []float64, error) {
	dir := filepath.Join(b.dir, "logs-"+strings.Fields(prod.what)[0])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return section{}, nil, err
	}
	script := prod.script(lines, refs)
	// bash alone runs the script as the agent writes it: macros expanded.
	expanded := script
	for k, v := range secrets {
		expanded = strings.ReplaceAll(expanded, "$("+k+")", v)
	}
	file := filepath.Join(dir, "produce.sh")
	if err := os.WriteFile(file, []byte(expanded), 0o644); err != nil {
		return section{}, nil, err
	}
	var yaml strings.Builder
	yaml.WriteString("steps:\n- checkout: none\n- script: |\n")
	for _, l := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		yaml.WriteString("    " + l + "\n")
	}
	// The output's size, from bash itself.
	size, err := outputSize(ctx, file)
	if err != nil {
		return section{}, nil, err
	}

	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return section{}, nil, err
	}
	defer devnull.Close()
	var agentT, stepT, bashT, pipeT, peaks, cpu, emuCPU []float64
	for rep := range reps {
		// The same through a pipe to a reader that does nothing: what any
		// reader of the step's output costs the producer.
		pt, err := wholeCommand(ctx, 1, func() *exec.Cmd {
			c := exec.Command("bash", "-c", `bash --noprofile --norc "$1" | cat`, "bash", file)
			c.Stdout = devnull
			return c
		})
		if err != nil {
			return section{}, nil, err
		}
		pipeT = append(pipeT, ms(pt)...)

		bt, err := wholeCommand(ctx, 1, func() *exec.Cmd {
			c := exec.Command("bash", "--noprofile", "--norc", file)
			c.Stdout = devnull
			return c
		})
		if err != nil {
			return section{}, nil, err
		}
		bashT = append(bashT, ms(bt)...)

		r, err := b.logRun(ctx, dir, rep, yaml.String(), secrets, lines)
		if err != nil {
			return section{}, nil, err
		}
		agentT = append(agentT, r.total)
		stepT = append(stepT, r.step)
		peaks = append(peaks, float64(r.peak))
		cpu = append(cpu, r.cpu)
		emuCPU = append(emuCPU, r.emuCPU)
	}
	a, st, bs, pb := summarize(agentT), summarize(stepT), summarize(bashT), summarize(pipeT)
	var maskNote string
	if prod.name == awkProducer.name {
		d, err := maskAlone(lines, secrets)
		if err != nil {
			return section{}, nil, err
		}
		maskNote = fmt.Sprintf("masking alone, in-process on one goroutine (the same %d secrets and a token regex hint, no I/O): %s — already %s bash's whole run",
			len(secrets), fmtMS(float64(d)/float64(time.Millisecond)), ratio(float64(d)/float64(time.Millisecond), bs.Median))
	}
	mb := float64(size) / 1e6
	rate := func(msv float64) string { return fmt.Sprintf("%.0f MB/s", mb/(msv/1000)) }
	metric := fmt.Sprintf("log throughput: %s lines (%.0f MB), %d secrets, %s", thousands(lines), mb, len(secrets), prod.name)
	sec := section{
		Name: "Log throughput: " + prod.name,
		Rows: []row{{
			Metric:  metric,
			Goagent: a.medianRange(fmtMS) + ", " + rate(a.Median),
			Limit:   fmt.Sprintf("%s, %s (bash > /dev/null); %s (bash piped to cat)", bs.medianRange(fmtMS), rate(bs.Median), fmtMS(pb.Median)),
			Ratio:   fmt.Sprintf("%s (%s of piped)", ratio(a.Median, bs.Median), ratio(a.Median, pb.Median)),
			Goal:    "≤ 1.5× bash",
			Met:     verdict(a.Median <= logRatioGoal*bs.Median),
		}},
		Method: fmt.Sprintf("A script step printing %s lines of 96 characters with %s, every 1000th line ending in one of %d "+
			"secret variables (referenced as macros, so the script itself holds them too). The agent masks every line "+
			"(%d secrets and their derived forms, plus the job token's mask hint), streams them to the live console feed and "+
			"uploads the log pages to the emulator. goagent's time runs from the step's start on its timeline record to the "+
			"emulator's `jobCompleted` event, so it includes uploading everything. The bench checks that the uploaded log has "+
			"every line and no secret. The limit is `bash --noprofile --norc FILE > /dev/null` on the same script (the goal is "+
			"judged against it); beside it, the same piped into `cat > /dev/null`, the cost of any reader of a pipe to the "+
			"producer. Runs of the three are interleaved. Each goagent run uses a fresh agent and a fresh emulator (which keeps every log in memory).",
			thousands(lines), prod.what, len(secrets), len(secrets)),
		Details: []string{
			"goagent, step start → job completed (log uploaded): " + a.distribution(fmtMS),
			"goagent, the step's own record (start → finish): " + st.distribution(fmtMS),
			"bash > /dev/null, whole command: " + bs.distribution(fmtMS),
			"bash piped to `cat > /dev/null` (a reader that does nothing), whole command: " + pb.distribution(fmtMS),
			"agent CPU time (user+system) per run: " + list(cpu, func(v float64) string { return fmt.Sprintf("%.2f s", v) }),
			"emulator CPU time (the bench process, receiving the logs on the same cores) per run: " + list(emuCPU, func(v float64) string { return fmt.Sprintf("%.2f s", v) }),
			fmt.Sprintf("output: %d bytes, %s lines", size, thousands(lines)),
		},
	}
	if maskNote != "" {
		sec.Details = append(sec.Details, maskNote)
	}
	return sec, peaks, nil
}

type logResult struct {
	total, step float64 // ms
	peak        int64   // bytes
	cpu, emuCPU float64 // s
}

func (b *bencher) logRun(ctx context.Context, dir string, rep int, yaml string, secrets map[string]string, lines int) (logResult, error) {
	em, err := startEmulator(ctx, filepath.Join(dir, strconv.Itoa(rep)), 50*time.Second, "logs")
	if err != nil {
		return logResult{}, err
	}
	defer em.close()
	ev := watchEvents(em.srv)
	defer ev.stop()
	p, err := em.startAgent(b.binary, dir, fmt.Sprintf("logs-%d", rep), "logs", agentOptions{})
	if err != nil {
		return logResult{}, err
	}
	defer os.RemoveAll(p.home) // a few hundred MB of log pages and work files
	defer p.stop()
	if _, err := em.waitSession(ctx, p); err != nil {
		return logResult{}, err
	}
	cpu0, emu0, err := cpuSeconds(p.cmd.Process.Pid)
	if err != nil {
		return logResult{}, err
	}
	j, err := em.queue(runSpec{Pool: "logs", YAML: yaml, Secrets: secrets})
	if err != nil {
		return logResult{}, err
	}
	if err := wait(ctx, j, p); err != nil {
		return logResult{}, err
	}
	st, err := p.status()
	if err != nil {
		return logResult{}, err
	}
	cpu1, emu1, err := cpuSeconds(p.cmd.Process.Pid)
	if err != nil {
		return logResult{}, err
	}
	done, err := ev.jobTime(j.ID(), devserver.EventJobCompleted)
	if err != nil {
		return logResult{}, err
	}
	starts, finishes, err := stepTimes(j)
	if err != nil {
		return logResult{}, err
	}
	if err := checkLog(j, secrets, lines); err != nil {
		return logResult{}, err
	}
	last := len(starts) - 1
	return logResult{
		total:  float64(done.Sub(starts[last])) / float64(time.Millisecond),
		step:   float64(finishes[last].Sub(starts[last])) / float64(time.Millisecond),
		peak:   st.VmHWM,
		cpu:    cpu1 - cpu0,
		emuCPU: emu1 - emu0,
	}, nil
}

// checkLog verifies what the emulator received: every line, no secret.
// The agent uploads a step's output in pages of a few MB, each a log of its
// own, and the job's log repeats the steps' lines; so every printed line must
// be found at least once over all the logs.
func checkLog(j interface{ Logs() map[int]string }, secrets map[string]string, lines int) error {
	got, masked := 0, 0
	for _, l := range j.Logs() {
		for _, v := range secrets {
			if strings.Contains(l, v) {
				return fmt.Errorf("a secret reached the uploaded log unmasked")
			}
		}
		got += strings.Count(l, " xxxxxxxxxxxxxxxx") + strings.Count(l, " 0000000000000000")
		masked += strings.Count(l, "***")
	}
	if got < lines {
		return fmt.Errorf("the uploaded logs have %d of the %d lines printed", got, lines)
	}
	if masked < lines/1000 {
		return fmt.Errorf("the uploaded logs have %d masked secrets, want at least %d", masked, lines/1000)
	}
	return nil
}

// outputSize runs the script once and counts its output.
func outputSize(ctx context.Context, file string) (int64, error) {
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", file)
	var c countWriter
	cmd.Stdout = &c
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("run the log producer: %w", err)
	}
	return int64(c), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// cpuSeconds is the CPU time (user+system) of the agent and of the bench
// itself, where the emulator runs.
func cpuSeconds(agentPID int) (agent, bench float64, err error) {
	_, a, err := procCPU(agentPID)
	if err != nil {
		return 0, 0, err
	}
	_, b, err := procCPU(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	return float64(a) / 100, float64(b) / 100, nil
}

// thousands renders 1000000 as "1,000,000".
func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// maskAlone times the masker by itself on the awk producer's lines, with
// the same registrations as the job (the secrets, and a job-token-like mask
// hint): the part of the agent's work that grows with the secrets, on one
// goroutine.
func maskAlone(lines int, secrets map[string]string) (time.Duration, error) {
	m := mask.New(mask.Options{})
	var sec []string
	for _, v := range secrets {
		m.AddValue(v)
		sec = append(sec, v)
	}
	slices.Sort(sec)
	// A job access token is a JWT; the service sends it as a regex hint.
	if err := m.AddRegex("eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJuYW1laWQiOiJiZW5jaCJ9.c2lnbmF0dXJlc2lnbmF0dXJl"); err != nil {
		return 0, err
	}
	pad := strings.Repeat("x", 88)
	text := make([]string, lines)
	for i := range text {
		n := i + 1
		if n%1000 == 0 {
			text[i] = fmt.Sprintf("%07d %s %s", n, pad, sec[(n/1000)%len(sec)])
		} else {
			text[i] = fmt.Sprintf("%07d %s", n, pad)
		}
	}
	t := time.Now()
	masked := 0
	for _, l := range text {
		if m.Mask(l) != l {
			masked++
		}
	}
	d := time.Since(t)
	if masked != lines/1000 {
		return 0, fmt.Errorf("masking alone: %d lines masked, want %d", masked, lines/1000)
	}
	return d, nil
}

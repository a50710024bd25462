package bench

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

const startGoal = 250 * time.Millisecond

// startToListening: process start to session created, with a fresh state
// directory each run (so registration and RSA key generation included).
func (b *bencher) startToListening(ctx context.Context) section {
	const name, metric = "Start → listening", "start → listening (session created)"
	goal := "p95 ≤ 250 ms"
	dir := filepath.Join(b.dir, "start")
	em, err := startEmulator(ctx, dir, 50*time.Second, "start")
	if err != nil {
		return failed(name, metric, goal, err)
	}
	defer em.close()
	ev := watchEvents(em.srv)
	defer ev.stop()

	var toSession, toPoll []time.Duration
	for i := 0; i < b.cfg.StartRuns; i++ {
		p, err := em.startAgent(b.binary, dir, fmt.Sprintf("start-%02d", i), "start", agentOptions{})
		if err != nil {
			return failed(name, metric, goal, err)
		}
		created, err := ev.sessionAfter(ctx, em, p, p.started)
		if err != nil {
			p.stop()
			return failed(name, metric, goal, err)
		}
		s, err := em.waitSession(ctx, p)
		if err != nil {
			p.stop()
			return failed(name, metric, goal, err)
		}
		if err := p.stop(); err != nil {
			return failed(name, metric, goal, err)
		}
		toSession = append(toSession, created.Sub(p.started))
		toPoll = append(toPoll, s.LastPoll.Sub(p.started))
	}
	st := summarize(ms(toSession))
	poll := summarize(ms(toPoll))

	// The floor: starting the same binary at all, and generating the key.
	execT, err := wholeCommand(ctx, 20, func() *exec.Cmd { return exec.Command(b.binary, "version") })
	if err != nil {
		return failed(name, metric, goal, err)
	}
	var keygen []time.Duration
	for range 20 {
		t := time.Now()
		if _, err := rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return failed(name, metric, goal, err)
		}
		keygen = append(keygen, time.Since(t))
	}
	ex, kg := summarize(ms(execT)), summarize(ms(keygen))
	limit := ex.Median + kg.Median

	return section{
		Name: name,
		Rows: []row{{
			Metric:  metric,
			Goagent: st.percentiles(fmtMS),
			Limit:   fmt.Sprintf("%s (exec %s + RSA-2048 keygen %s)", fmtMS(limit), fmtMS(ex.Median), fmtMS(kg.Median)),
			Ratio:   ratio(st.Median, limit),
			Goal:    goal,
			Met:     verdict(st.P95 <= float64(startGoal/time.Millisecond)),
		}},
		Method: "`goagent run` is started with a fresh home (state directory, work directory) each run, so every run registers " +
			"a new agent and generates its RSA-2048 key, then opens a session with the emulator (HTTPS on 127.0.0.1, TLS " +
			"handshake included). The time runs from just before the process is created to the emulator's `sessionChanged` " +
			"event for the new session; the agent is then stopped with SIGTERM before the next run. The limit is the same " +
			"binary's `goagent version` (process start and exit) plus Go's RSA-2048 key generation, both medians of 20 runs.",
		Details: []string{
			"start → session created: " + st.distribution(fmtMS),
			"start → first long poll received by the emulator: " + poll.distribution(fmtMS),
			"`goagent version` whole command: " + ex.distribution(fmtMS),
			"RSA-2048 key generation (in-process, crypto/rsa): " + kg.distribution(fmtMS) + " — prime search is random, hence the spread",
			"all runs (ms): " + list(st.values, func(v float64) string { return fmt.Sprintf("%.0f", v) }),
		},
	}
}

// wholeCommand runs a command n times and returns each run's wall time.
func wholeCommand(ctx context.Context, n int, mk func() *exec.Cmd) ([]time.Duration, error) {
	var times []time.Duration
	for range n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c := mk()
		out := &tailBuffer{max: 4096}
		if c.Stdout == nil {
			c.Stdout = out
		}
		if c.Stderr == nil {
			c.Stderr = out
		}
		t := time.Now()
		if err := c.Run(); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", c.String(), err, out.String())
		}
		times = append(times, time.Since(t))
	}
	return times, nil
}

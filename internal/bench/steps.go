package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const perStepGoal = 5 * time.Millisecond

// perStep: a job of N trivial steps against the same N scripts run by bash
// directly.
func (b *bencher) perStep(ctx context.Context) section {
	const name = "Per-step overhead"
	n := b.cfg.Steps
	metric := fmt.Sprintf("per-step time, %d × `true`", n)
	goal := "overhead ≤ 5 ms a step"
	dir := filepath.Join(b.dir, "steps")
	em, err := startEmulator(ctx, dir, 50*time.Second, "steps")
	if err != nil {
		return failed(name, metric, goal, err)
	}
	defer em.close()
	p, err := em.startAgent(b.binary, dir, "steps", "steps", agentOptions{})
	if err != nil {
		return failed(name, metric, goal, err)
	}
	defer p.stop()
	if _, err := em.waitSession(ctx, p); err != nil {
		return failed(name, metric, goal, err)
	}
	var y strings.Builder
	y.WriteString("steps:\n- checkout: none\n")
	for range n {
		y.WriteString("- script: 'true'\n")
	}

	// bash on the same scripts, the way the CmdLine step runs them.
	scripts := filepath.Join(dir, "scripts")
	if err := os.MkdirAll(scripts, 0o755); err != nil {
		return failed(name, metric, goal, err)
	}
	files := make([]string, n)
	for i := range files {
		files[i] = filepath.Join(scripts, fmt.Sprintf("step%03d.sh", i))
		if err := os.WriteFile(files[i], []byte("true"), 0o644); err != nil {
			return failed(name, metric, goal, err)
		}
	}

	var agentPer, bashPer, jobWall []float64
	for range b.cfg.Reps {
		// Interleaved, so that a disturbance hits both sides alike.
		t := time.Now()
		for _, f := range files {
			if err := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", f).Run(); err != nil {
				return failed(name, metric, goal, fmt.Errorf("bash %s: %w", f, err))
			}
		}
		bashPer = append(bashPer, float64(time.Since(t))/float64(time.Millisecond)/float64(n))

		j, err := em.queue(runSpec{Pool: "steps", YAML: y.String()})
		if err != nil {
			return failed(name, metric, goal, err)
		}
		if err := wait(ctx, j, p); err != nil {
			return failed(name, metric, goal, err)
		}
		starts, finishes, err := stepTimes(j)
		if err != nil {
			return failed(name, metric, goal, err)
		}
		if len(starts) != n {
			return failed(name, metric, goal, fmt.Errorf("the job has %d steps, want %d", len(starts), n))
		}
		span := finishes[n-1].Sub(starts[0])
		agentPer = append(agentPer, float64(span)/float64(time.Millisecond)/float64(n))
		req := j.Request()
		if req.ReceiveTime != nil && req.FinishTime != nil {
			jobWall = append(jobWall, float64(req.FinishTime.Time.Sub(req.ReceiveTime.Time))/float64(time.Millisecond))
		}
	}
	a, bs := summarize(agentPer), summarize(bashPer)
	overhead := a.Median - bs.Median
	details := []string{
		"goagent, first step's start to last step's end ÷ steps: " + a.distribution(fmtMS),
		"bash --noprofile --norc FILE, whole command, sequentially ÷ scripts: " + bs.distribution(fmtMS),
	}
	if len(jobWall) > 0 {
		details = append(details, "whole job, message received → job completed: "+summarize(jobWall).distribution(fmtMS))
	}
	return section{
		Name: name,
		Rows: []row{{
			Metric:  metric,
			Goagent: a.medianRange(fmtMS) + fmt.Sprintf("; overhead %s", fmtMS(overhead)),
			Limit:   bs.medianRange(fmtMS) + " (bash on the same script)",
			Ratio:   ratio(a.Median, bs.Median),
			Goal:    goal,
			Met:     verdict(overhead <= float64(perStepGoal/time.Millisecond)),
		}},
		Method: fmt.Sprintf("A job of %d script steps, each `true` (`checkout: none`), run by one listening agent, %d times. goagent's "+
			"time a step is the span from the first step's start to the last step's end, as the agent reported them on the "+
			"timeline, divided by the number of steps: each step's record updates, script file, process, output handling "+
			"and the gap to the next step. The peer is `bash --noprofile --norc FILE` (what the CmdLine step runs) on %d "+
			"files holding `true`, run one after the other, whole-command time; the overhead is the difference of the medians.", n, b.cfg.Reps, n),
		Details: details,
	}
}

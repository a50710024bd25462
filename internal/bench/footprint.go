package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const (
	idleRSSGoal    = 20 << 20
	binarySizeGoal = 25 << 20
)

// idleAgent is an agent listening, with nothing to do, on its own emulator
// with the service's ~50 s long-poll hold.
type idleAgent struct {
	em        *emulator
	p         *agentProc
	listening time.Time
	err       error
	sampled   chan struct{} // nil if the agent never listened; closed once st (or err) is read
	st        procStatus
	at        time.Duration // how long it had listened when sampled
}

func (b *bencher) startIdle(ctx context.Context) *idleAgent {
	ia := &idleAgent{}
	dir := filepath.Join(b.dir, "idle")
	ia.em, ia.err = startEmulator(ctx, dir, 50*time.Second, "idle")
	if ia.err != nil {
		return ia
	}
	ia.p, ia.err = ia.em.startAgent(b.binary, dir, "idle", "idle", agentOptions{})
	if ia.err != nil {
		return ia
	}
	if _, ia.err = ia.em.waitSession(ctx, ia.p); ia.err != nil {
		return ia
	}
	ia.listening = time.Now()
	ia.sampled = make(chan struct{})
	b.progress("footprint: an idle agent listens; its RSS is read after %s", b.cfg.Idle)
	// Read at the minute, not whenever the other benchmarks are done.
	go func() {
		defer close(ia.sampled)
		select {
		case <-ctx.Done():
			ia.err = ctx.Err()
			return
		case <-time.After(b.cfg.Idle):
		}
		if ia.p.exited() {
			ia.err = ia.p.exitError()
			return
		}
		ia.st, ia.err = ia.p.status()
		ia.at = time.Since(ia.listening)
	}()
	return ia
}

func (ia *idleAgent) close() {
	if ia.p != nil {
		ia.p.stop()
	}
	if ia.em != nil {
		ia.em.close()
	}
}

// footprint: the idle agent's RSS once it has listened for cfg.Idle, and the
// binary's size.
func (b *bencher) footprint(ctx context.Context, ia *idleAgent) section {
	defer ia.close()
	const name = "Footprint"
	rows := []row{}
	var details []string
	var err error
	if ia.sampled != nil { // it listens; the sampler owns ia.err and ia.st until it is done
		if wait := time.Until(ia.listening.Add(b.cfg.Idle)); wait > 0 {
			b.progress("footprint: waiting %s more for the idle agent", wait.Round(time.Second))
		}
		<-ia.sampled
	}
	st := ia.st
	idleMetric := fmt.Sprintf("idle RSS after %g s listening", b.cfg.Idle.Seconds())
	if ia.err != nil {
		err = ia.err
		rows = append(rows, failed(name, idleMetric, "≤ 20 MB", ia.err).Rows...)
	} else {
		rows = append(rows, row{
			Metric: idleMetric, Goagent: fmtMiB(float64(st.VmRSS)), Limit: metNA, Ratio: metNA,
			Goal: "≤ 20 MB", Met: verdict(st.VmRSS <= idleRSSGoal),
		})
		details = append(details, fmt.Sprintf("idle agent: VmRSS %s, VmHWM (peak since start, registration included) %s, after %s listening",
			fmtMiB(float64(st.VmRSS)), fmtMiB(float64(st.VmHWM)), ia.at.Round(100*time.Millisecond)))
	}
	fi, serr := os.Stat(b.binary)
	if serr != nil {
		err = serr
		rows = append(rows, failed(name, "binary size", "≤ 25 MB", serr).Rows...)
	} else {
		rows = append(rows, row{
			Metric: "binary size", Goagent: fmtMiB(float64(fi.Size())), Limit: metNA, Ratio: metNA,
			Goal: "≤ 25 MB", Met: verdict(fi.Size() <= binarySizeGoal),
		})
		details = append(details, fmt.Sprintf("binary: %d bytes (%s, as built by the Makefile: static, -trimpath, -s -w)", fi.Size(), b.cfg.Binary))
	}
	return section{
		Name: name,
		Rows: rows,
		Err:  err,
		Method: fmt.Sprintf("An agent is started at the beginning of the bench against its own emulator holding long polls 50 s, "+
			"as the service does, in a pool that never gets a job; once it has listened for %s (while the other benchmarks run "+
			"beside it: the agent is idle, so they do not disturb it) its VmRSS is read from /proc/PID/status. The binary size is that of the binary under test. MB here is MiB.", b.cfg.Idle),
		Details: details,
	}
}

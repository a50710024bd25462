package listener

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/pause"
	"github.com/goagent-dev/goagent/internal/wire"
)

// runningJob is the job being run.
type runningJob struct {
	msg       *wire.JobRequestMessage
	cancel    context.CancelCauseFunc
	hard      chan struct{}
	hardOnce  sync.Once
	feed      chan time.Duration
	done      chan struct{}
	abandoned bool
}

func (a *Agent) busy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == nil {
		return false
	}
	select {
	case <-a.running.done:
		return false
	default:
		return true
	}
}

// tookJob reports whether a job was ever dispatched (for --once).
func (a *Agent) tookJob() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running != nil
}

// jobDone is closed when the dispatched job has ended (nil channel if none).
func (a *Agent) jobDone() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.running == nil {
		return nil
	}
	return a.running.done
}

// ensureDispatchFinished makes way for a new job request
// (JobDispatcher.EnsureDispatchFinished). The service assigns the next job as
// soon as the previous one reported JobCompleted, while the agent may still be
// finishing up (last uploads, the request's finish call): wait for that; a
// job still running after the zombie grace of 45 s is cancelled and killed.
func (a *Agent) ensureDispatchFinished(ctx context.Context) {
	r := a.current()
	if r == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	a.log.Info("a new job request arrived while the previous job is finishing; waiting for it", "previousJobId", r.msg.JobID)
	t := time.NewTimer(a.cfg.ZombieGrace)
	defer t.Stop()
	select {
	case <-r.done:
		return
	case <-ctx.Done():
	case <-t.C:
		a.log.Warn("the previous job did not finish within the grace period; cancelling it", "previousJobId", r.msg.JobID, "grace", a.cfg.ZombieGrace)
	}
	r.cancel(context.Canceled)
	r.hardOnce.Do(func() { close(r.hard) })
	<-r.done
}

// WaitIdle waits until no job is running or winding down (reports sent,
// request finished), or ctx ends. A caller about to stop the agent after a
// job calls it so the stop is not taken for a shutdown mid-job.
func (a *Agent) WaitIdle(ctx context.Context) { a.waitJob(ctx) }

// waitJob waits for the running job (if any) to end.
func (a *Agent) waitJob(ctx context.Context) {
	r := a.current()
	if r == nil {
		return
	}
	select {
	case <-r.done:
	case <-ctx.Done():
	}
}

func (a *Agent) setFeedInterval(jobID string, d time.Duration) {
	r := a.current()
	if r == nil || !equalFold(r.msg.JobID, jobID) {
		return
	}
	select {
	case r.feed <- d:
	default:
	}
}

// cancelJob cancels the running job if it has jobID, and kills it outright
// when it has not ended within the timeout (floored at 60 s, as
// WorkerDispatcher.Cancel does).
func (a *Agent) cancelJob(jobID string, timeout time.Duration) bool {
	r := a.current()
	if r == nil || !equalFold(r.msg.JobID, jobID) {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
	}
	timeout = max(timeout, a.cfg.CancelFloor)
	a.log.Info("job cancellation requested", "jobId", jobID, "timeout", timeout)
	r.cancel(context.Canceled)
	go func() {
		select {
		case <-r.done:
		case <-time.After(timeout):
			a.log.Warn("the job did not stop within the cancel timeout; killing its processes", "jobId", jobID)
			a.killHard(r)
		}
	}()
	return true
}

// dispatch starts a job (JobDispatcher.RunAsync): the first lock renewal
// must succeed before anything runs; then the job runs while the lock is
// renewed every minute, and the request is finished per its plan version.
func (a *Agent) dispatch(ctx context.Context, s Settings, msg *wire.JobRequestMessage) {
	// The job's context is not the agent's: agent shutdown cancels it with
	// ErrShutdown as the cause, so the job is reported canceled first.
	jobCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	r := &runningJob{msg: msg, cancel: cancel, hard: make(chan struct{}), feed: make(chan time.Duration, 1), done: make(chan struct{})}
	a.mu.Lock()
	a.running = r
	a.mu.Unlock()
	a.log.Info("job received", "job", msg.JobDisplayName, "jobId", msg.JobID, "requestId", msg.RequestID, "plan", msg.Plan.PlanID)

	go func() {
		select {
		case <-ctx.Done():
			a.log.Warn("the agent is stopping: cancelling the running job (a second signal kills its processes at once)", "jobId", msg.JobID, "cause", context.Cause(ctx))
			cancel(ErrShutdown)
		case <-r.done:
		}
	}()
	go func() {
		defer close(r.done)
		defer cancel(nil)
		a.runJob(jobCtx, s, r)
	}()
}

func (a *Agent) runJob(ctx context.Context, s Settings, r *runningJob) {
	msg := r.msg
	_, ts, err := a.agentCredential()
	if err != nil {
		a.log.Error("load the agent credential", "error", err)
		return
	}
	// Renewals and finishing use their own connection with at most 60 s per
	// request (AgentServer's JobRequest connection).
	jc, err := azdo.New(s.ServerURL, ts, azdo.Options{
		HTTPClient: a.cfg.HTTPClient, UserAgent: UserAgent(a.cfg.AgentVersion, a.cfg.GoagentVersion),
		Locations: a.cfg.Locations, Logger: a.log, Timeout: 60 * time.Second,
	})
	if err != nil {
		a.log.Error("job request connection", "error", err)
		return
	}
	lockedUntil, err := a.firstRenew(ctx, jc, s, msg.RequestID)
	if err != nil {
		a.log.Error("could not renew the job request's lock; the job is not run", "requestId", msg.RequestID, "error", err)
		return
	}

	renewCtx, stopRenew := context.WithCancel(ctx)
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		if lost := a.renewLoop(renewCtx, jc, s, msg.RequestID, lockedUntil); lost != nil {
			a.log.Error("lost the job request's lock; abandoning the job", "requestId", msg.RequestID, "error", lost)
			a.mu.Lock()
			r.abandoned = true
			a.mu.Unlock()
			r.cancel(fmt.Errorf("job lock lost: %w", lost))
		}
	}()

	result, runErr := a.execute(ctx, s, r)
	stopRenew()
	<-renewDone
	a.mu.Lock()
	if r.abandoned {
		result = "abandoned"
	}
	a.mu.Unlock()
	if runErr != nil {
		a.log.Error("the job ended with an error", "jobId", msg.JobID, "error", runErr)
	}
	a.log.Info("job finished", "job", msg.JobDisplayName, "result", result)

	if msg.Plan.Version < 8 {
		a.finishRequest(context.WithoutCancel(ctx), jc, s, msg.RequestID, result)
	}
}

func (a *Agent) execute(ctx context.Context, s Settings, r *runningJob) (string, error) {
	base, err := jobServerURL(r.msg, s.ServerURL)
	if err != nil {
		return "failed", err
	}
	sc := r.msg.SystemConnection()
	token := sc.Authorization.Parameters["AccessToken"]
	jc, err := a.client(base, azdo.StaticToken{Scheme: "Bearer", Value: token})
	if err != nil {
		return "failed", err
	}
	if a.cfg.Runner == nil {
		return "failed", errors.New("no job runner configured")
	}
	return a.cfg.Runner.RunJob(ctx, &Job{Message: r.msg, Client: jc, Hard: r.hard, FeedInterval: r.feed, RunOnce: a.cfg.Once})
}

// firstRenew renews before the job starts: 6 attempts, 1–10 s apart.
func (a *Agent) firstRenew(ctx context.Context, c *azdo.Client, s Settings, requestID int64) (time.Time, error) {
	var err error
	for attempt := 0; attempt < 6; attempt++ {
		if attempt > 0 {
			if serr := pause.Sleep(ctx, azdo.RandomBetween(time.Second, 10*time.Second)); serr != nil {
				return time.Time{}, serr
			}
		}
		var req *taskagent.TaskAgentJobRequest
		req, err = c.RenewJobRequest(ctx, s.PoolID, requestID, 30*time.Second)
		if err == nil {
			return lockedUntil(req), nil
		}
		if errors.Is(err, azdo.ErrJobNotFound) || errors.Is(err, azdo.ErrJobTokenExpired) || errors.Is(err, identity.ErrAgentCredentialRejected) {
			return time.Time{}, err
		}
		a.log.Warn("first job lock renewal failed", "attempt", attempt+1, "error", err)
	}
	return time.Time{}, err
}

func lockedUntil(r *taskagent.TaskAgentJobRequest) time.Time {
	if r == nil || r.LockedUntil == nil {
		return time.Now().Add(5 * time.Minute)
	}
	return r.LockedUntil.Time
}

// renewLoop renews every RenewPeriod until ctx ends. It returns an error
// when the lock is lost: the job is no longer valid, or renewals kept
// failing until lockedUntil + 5 min.
func (a *Agent) renewLoop(ctx context.Context, c *azdo.Client, s Settings, requestID int64, until time.Time) error {
	t := time.NewTimer(a.cfg.RenewPeriod)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		req, err := c.RenewJobRequest(ctx, s.PoolID, requestID, 30*time.Second)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			failures = 0
			until = lockedUntil(req)
			t.Reset(a.cfg.RenewPeriod)
			continue
		}
		if errors.Is(err, azdo.ErrJobNotFound) || errors.Is(err, azdo.ErrJobTokenExpired) || errors.Is(err, identity.ErrAgentCredentialRejected) {
			return err
		}
		failures++
		if time.Now().After(until.Add(5 * time.Minute)) {
			return fmt.Errorf("renewals failed since the lock expired at %s: %w", until.Format(time.RFC3339), err)
		}
		d := azdo.RandomBetween(5*time.Second, 15*time.Second)
		if failures > 5 {
			d = azdo.RandomBetween(15*time.Second, 30*time.Second)
		}
		a.log.Warn("job lock renewal failed; retrying", "attempt", failures, "wait", d.Round(time.Second), "error", err)
		t.Reset(d)
	}
}

// finishRequest completes the request for plans older than version 8:
// 5 attempts, 5 s apart; a job the server no longer knows counts as done.
func (a *Agent) finishRequest(ctx context.Context, c *azdo.Client, s Settings, requestID int64, result string) {
	for attempt := 1; attempt <= 5; attempt++ {
		err := c.FinishJobRequest(ctx, s.PoolID, requestID, time.Now(), taskagent.TaskResult(result))
		if err == nil || errors.Is(err, azdo.ErrJobNotFound) || errors.Is(err, azdo.ErrJobTokenExpired) {
			return
		}
		a.log.Warn("finishing the job request failed", "attempt", attempt, "error", err)
		if attempt < 5 && pause.Sleep(ctx, 5*time.Second) != nil {
			return
		}
	}
}

// Kill ends the running job's processes at once (a second signal).
func (a *Agent) Kill() {
	r := a.current()
	if r != nil {
		a.killHard(r)
	}
}

// killHard tells the runner to kill the job's processes now: the hard
// channel reaches every running step process (steps.Exec.Hard), even one
// already inside its graceful SIGINT/SIGTERM escalation.
func (a *Agent) killHard(r *runningJob) {
	r.hardOnce.Do(func() { close(r.hard) })
}

// current is the job running or winding down, nil when there is none.
func (a *Agent) current() *runningJob {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running
}

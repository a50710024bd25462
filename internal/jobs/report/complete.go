package report

import (
	"context"
	"errors"
	"fmt"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/pause"
	"github.com/goagent-dev/goagent/internal/wire"
)

// raiseCompleted posts the JobCompleted plan event (JobRunner.CompleteJobAsync):
// five attempts five seconds apart; a plan that no longer exists or that
// this token may not touch ends the attempts at once.
func (r *Reporter) raiseCompleted(ctx context.Context, result string, shuttingDown bool) error {
	ev := wire.JobEvent{
		Name: "JobCompleted", JobID: r.jobID, RequestID: r.o.RequestID,
		Result: result, AgentShuttingDown: shuttingDown,
	}
	var errs []error
	attempts := 0
	for attempt := range completionAttempts {
		if attempt > 0 && pause.Sleep(ctx, r.o.CompletionRetryDelay) != nil {
			errs = append(errs, ctx.Err())
			break
		}
		attempts++
		err := r.plan.RaiseEvent(ctx, ev)
		if err == nil {
			r.log.Info("job completed event raised", "result", result)
			return nil
		}
		r.log.Warn("raise JobCompleted failed", "attempt", attempt+1, "error", err)
		if tokenRejected(err) {
			return fmt.Errorf("%w: the service no longer accepts events for plan %s (deleted, or the job token lost access); nothing to retry: %w",
				ErrNotCompleted, r.plan.PlanID, err)
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("%w after %d attempts (check the agent's network path to the service): %w",
		ErrNotCompleted, attempts, errors.Join(errs...))
}

// tokenRejected reports an answer no retry can change: the job's token was
// rejected or expired (a lost lock ends it), or the plan is gone or closed to
// it. The official agent gives up on these at once.
func tokenRejected(err error) bool {
	for _, k := range []error{azdo.ErrPlanNotFound, azdo.ErrPlanSecurity, azdo.ErrUnauthorized, azdo.ErrJobTokenExpired, azdo.ErrAccessDenied} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

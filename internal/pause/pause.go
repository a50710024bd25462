// Package pause is the wait every retry loop of the agent needs: a sleep
// that ends as soon as its context does, so cancellation is never held up by
// a back-off.
package pause

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends and then returns its cause
// (context.Cause: ctx.Err() unless the canceller gave one).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// eventLog keeps the first time of each job event kind, read from the
// emulator's event stream as it happens (the emulator stamps events when it
// handles the request that causes them).
type eventLog struct {
	sub  *devserver.Subscription
	mu   sync.Mutex
	jobs map[string]map[devserver.EventKind]time.Time
	sess []devserver.Event // sessionChanged, in order
	cond chan struct{}     // closed and replaced on every event
	done chan struct{}
}

func watchEvents(srv *devserver.Server) *eventLog {
	l := &eventLog{
		sub:  srv.Subscribe(1 << 16),
		jobs: map[string]map[devserver.EventKind]time.Time{},
		cond: make(chan struct{}),
		done: make(chan struct{}),
	}
	go func() {
		defer close(l.done)
		for ev := range l.sub.C {
			l.mu.Lock()
			switch ev.Kind {
			case devserver.EventSessionChange:
				l.sess = append(l.sess, ev)
			case devserver.EventJobQueued, devserver.EventJobAssigned, devserver.EventJobStarted, devserver.EventJobCompleted:
				m := l.jobs[ev.JobID]
				if m == nil {
					m = map[devserver.EventKind]time.Time{}
					l.jobs[ev.JobID] = m
				}
				if _, seen := m[ev.Kind]; !seen {
					m[ev.Kind] = ev.Time
				}
			}
			close(l.cond)
			l.cond = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *eventLog) stop() {
	l.sub.Cancel()
	<-l.done
}

// jobTime is when a job event first happened.
func (l *eventLog) jobTime(jobID string, kind devserver.EventKind) (time.Time, error) {
	if n := l.sub.Dropped(); n > 0 {
		return time.Time{}, fmt.Errorf("the bench lost %d emulator events (too slow a reader)", n)
	}
	// The job's completion and its event are published under the same lock,
	// but the event reaches this reader a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		t, ok := l.jobs[jobID][kind]
		ch := l.cond
		l.mu.Unlock()
		if ok {
			return t, nil
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			return time.Time{}, fmt.Errorf("no %s event for job %s", kind, jobID)
		}
	}
}

// sessionAfter waits for the first sessionChanged event after t that a
// session of the agent named name caused.
func (l *eventLog) sessionAfter(ctx context.Context, e *emulator, p *agentProc, t time.Time) (time.Time, error) {
	deadline := time.Now().Add(hangGuard)
	for {
		l.mu.Lock()
		evs := append([]devserver.Event(nil), l.sess...)
		ch := l.cond
		l.mu.Unlock()
		if s, ok := e.sessionOf(p.name); ok {
			for _, ev := range evs {
				if ev.AgentID == s.AgentID && !ev.Time.Before(t) {
					return ev.Time, nil
				}
			}
		}
		if p.exited() {
			return time.Time{}, p.exitError()
		}
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("agent %s opened no session within %s. Output:\n%s", p.name, hangGuard, p.out.String())
		}
	}
}

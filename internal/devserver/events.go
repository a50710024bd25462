package devserver

import (
	"sync/atomic"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// EventKind names what happened.
type EventKind string

// Event kinds, in the order a job produces them.
const (
	EventJobQueued     EventKind = "jobQueued"
	EventJobAssigned   EventKind = "jobAssigned"
	EventJobStarted    EventKind = "jobStarted" // first lock renewal
	EventRecordUpdated EventKind = "recordUpdated"
	// A record of a step's detail timeline (##vso[task.logdetail]); the
	// step's record names the timeline in its details.
	EventDetailRecordUpdated EventKind = "detailRecordUpdated"
	EventFeedLines           EventKind = "feedLines"
	EventLogAppended         EventKind = "logAppended"
	EventJobCompleted        EventKind = "jobCompleted"
	EventAgentChanged        EventKind = "agentChanged"
	EventSessionChange       EventKind = "sessionChanged"
)

// Event is one observable change, for live views such as a web UI.
type Event struct {
	Time       time.Time
	Kind       EventKind
	JobID      string
	RequestID  int64
	AgentID    int
	State      JobState                  // job events
	Result     string                    // jobCompleted
	Record     *taskagent.TimelineRecord // recordUpdated, detailRecordUpdated: the merged record
	TimelineID string                    // recordUpdated, detailRecordUpdated: the record's timeline
	StepID     string                    // feedLines
	Lines      []string                  // feedLines
	StartLine  int64                     // feedLines
	LogID      int                       // logAppended
	Bytes      int                       // logAppended
}

type subscription struct {
	ch      chan Event
	dropped atomic.Int64
}

// Subscription is a live feed of events.
type Subscription struct {
	C   <-chan Event // closed by Cancel or when the server closes
	sub *subscription
	s   *Server
}

// Dropped counts events lost because the subscriber was too slow.
func (u *Subscription) Dropped() int64 { return u.sub.dropped.Load() }

// Cancel ends the subscription and closes C.
func (u *Subscription) Cancel() {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if _, ok := u.s.subs[u.sub]; ok {
		delete(u.s.subs, u.sub)
		close(u.sub.ch)
	}
}

// Subscribe returns a feed of events with a buffer of buf (default 256).
// Delivery never blocks the emulator: when the buffer is full the event is
// dropped and counted.
func (s *Server) Subscribe(buf int) *Subscription {
	if buf <= 0 {
		buf = 256
	}
	sub := &subscription{ch: make(chan Event, buf)}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		close(sub.ch)
	default:
		s.subs[sub] = struct{}{}
	}
	return &Subscription{C: sub.ch, sub: sub, s: s}
}

// emit delivers an event; s.mu must be held.
func (s *Server) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	for sub := range s.subs {
		select {
		case sub.ch <- e:
		default:
			sub.dropped.Add(1)
		}
	}
}

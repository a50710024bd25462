package devserver

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault makes matching requests fail or slow down.
type Fault struct {
	Method   string // HTTP method, "" for any
	Resource string // Exchange.Resource: "messages", "sessions", "records", "token", …; "" for any
	// Nth is the first matching call affected, counted from when the fault was
	// added (1 = the next one; 0 means 1). Times is how many consecutive
	// matching calls are affected (0 means 1, negative means every one).
	Nth, Times int
	Status     int           // answer with this status (VSS error body; plain for 401)
	Drop       bool          // close the connection without an answer
	Delay      time.Duration // wait this long first; alone, the call then proceeds

	panics bool // simulate an emulator defect (tests of the recovery path)
}

func (f Fault) String() string {
	var parts []string
	if f.Delay > 0 {
		parts = append(parts, "delay "+f.Delay.String())
	}
	if f.Drop {
		parts = append(parts, "drop")
	}
	if f.Status != 0 {
		parts = append(parts, fmt.Sprintf("status %d", f.Status))
	}
	return strings.Join(parts, ", ")
}

// Faults holds the active faults. Matching calls are counted per fault.
type Faults struct {
	mu   sync.Mutex
	list []*FaultHandle
}

// FaultHandle reports how often a fault fired.
type FaultHandle struct {
	f    Fault
	seen int
	hits int
	mu   *sync.Mutex
}

// Hits is how many calls the fault affected so far.
func (h *FaultHandle) Hits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits
}

// Faults returns the fault table.
func (s *Server) Faults() *Faults { return s.faults }

// Add activates a fault.
func (fs *Faults) Add(f Fault) *FaultHandle {
	if f.Nth <= 0 {
		f.Nth = 1
	}
	if f.Times == 0 {
		f.Times = 1
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	h := &FaultHandle{f: f, mu: &fs.mu}
	fs.list = append(fs.list, h)
	return h
}

// Clear removes every fault.
func (fs *Faults) Clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.list = nil
}

// pick counts the call against every matching fault and returns the first
// fault that fires for it.
func (fs *Faults) pick(method, resource string) (Fault, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var fired Fault
	found := false
	for _, h := range fs.list {
		if h.f.Method != "" && !strings.EqualFold(h.f.Method, method) {
			continue
		}
		if h.f.Resource != "" && !strings.EqualFold(h.f.Resource, resource) {
			continue
		}
		h.seen++
		if h.seen < h.f.Nth || (h.f.Times > 0 && h.seen >= h.f.Nth+h.f.Times) {
			continue
		}
		h.hits++
		if !found {
			fired, found = h.f, true
		}
	}
	return fired, found
}

// applyFault applies a firing fault; it reports whether the request was
// answered (or dropped) by it.
func (s *Server) applyFault(q *request) bool {
	f, ok := s.faults.pick(q.r.Method, q.ex.Resource)
	if !ok {
		return false
	}
	q.ex.Fault = f.String()
	s.log.Debug("injecting fault", "method", q.r.Method, "resource", q.ex.Resource, "fault", q.ex.Fault)
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-q.ctx.Done():
			t.Stop()
			return true
		case <-s.closing:
			t.Stop()
		}
	}
	switch {
	case f.panics:
		panic("injected emulator defect")
	case f.Drop:
		q.ex.Dropped = true
		conn, _, err := http.NewResponseController(q.w).Hijack()
		q.record()
		if err != nil {
			// Not hijackable: abort the handler, which also resets the stream.
			panic(http.ErrAbortHandler)
		}
		conn.Close()
		return true
	case f.Status == http.StatusUnauthorized:
		s.writeAuthFailure(q.w, q.r, &authFailure{status: http.StatusUnauthorized, reason: "injected fault"})
		return true
	case f.Status != 0:
		writeVSSError(q.w, f.Status, exService, fmt.Sprintf("Injected fault: %d %s.", f.Status, http.StatusText(f.Status)))
		return true
	}
	return false
}

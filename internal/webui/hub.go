package webui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// hub keeps the page's own model of the emulator's runs, fed by its event
// stream, and fans changes out to subscribers. It owns its model rather than
// querying the emulator per client so that console line numbers stay stable
// for resuming, snapshots are consistent with the updates that follow them,
// and the page keeps working after the emulator closed.
type hub struct {
	srv      *devserver.Server
	log      *slog.Logger
	opts     Options
	serverID string

	mu       sync.Mutex // guards everything below and every subscriber's fields
	runs     map[string]*runState
	runOrder []*runState
	jobs     map[string]*jobState
	consoles map[string]*console // by step record id
	subs     map[*subscriber]struct{}
	stats    hubStats
}

// hubStats are counters for diagnostics and tests.
type hubStats struct {
	events    int64 // events applied
	recovered int   // times the model was re-read after the event stream dropped events
	rebuilt   int   // consoles replaced by a re-read that did not extend them
	overflows int   // queues dropped because a subscriber fell behind
	resyncs   int   // resync messages handed to writers
	maxQueue  int   // the longest any subscriber's queue has been
}

type runState struct {
	id, name, pipeline string
	jobs               []*jobState
	summary            Run
}

type jobState struct {
	run     *runState
	h       *devserver.Job
	info    Job
	records map[string]*Record
}

// console is a step's live console: lines numbered by position from 1. gen
// changes when the lines are replaced rather than extended.
type console struct {
	run   string
	lines []string
	gen   int
}

// subscriber is one connection's view. Its fields are guarded by hub.mu.
type subscriber struct {
	notify chan struct{} // capacity 1: "there is something to send"

	queue  [][]byte // encoded messages, at most opts.QueueLimit
	behind bool     // the queue overflowed: send resync and snapshots next
	reason string

	run, step string
	cursor    int // console lines of step already handed to the writer
	gen       int // console generation cursor counts in; -1 forces a reset
}

func newHub(srv *devserver.Server, opts Options) *hub {
	var id [8]byte
	rand.Read(id[:])
	return &hub{
		srv: srv, log: opts.Logger, opts: opts, serverID: hex.EncodeToString(id[:]),
		runs: map[string]*runState{}, jobs: map[string]*jobState{},
		consoles: map[string]*console{}, subs: map[*subscriber]struct{}{},
	}
}

// start subscribes to the emulator, loads what it already has and follows
// its events until ctx ends or the emulator closes. The model outlives both.
func (h *hub) start(ctx context.Context) <-chan struct{} {
	sub := h.srv.Subscribe(h.opts.EventBuffer)
	h.recover(sub, false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer sub.Cancel()
		h.follow(ctx, sub)
	}()
	return done
}

func (h *hub) follow(ctx context.Context, sub *devserver.Subscription) {
	var seen int64
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C:
			if !ok {
				h.log.Debug("web UI: the emulator closed; the page keeps its last state")
				return
			}
			h.apply(e)
			if d := sub.Dropped(); d > seen {
				h.log.Warn("web UI: fell behind the emulator's events; re-reading its state", "dropped", d-seen)
				seen = d
				h.recover(sub, true)
			}
		}
	}
}

// recover rebuilds the model from the emulator's query API: at start, and
// after the subscription dropped events. The events still buffered are
// discarded first, since the re-read covers them; records and job states are
// idempotent to apply, and consoles are extended when the emulator's lines
// continue them, else replaced under a new generation. Events emitted while
// the re-read ran may or may not be in it: settle sorts them out.
func (h *hub) recover(sub *devserver.Subscription, resync bool) {
drain:
	for {
		select {
		case _, ok := <-sub.C:
			if !ok {
				break drain
			}
		default:
			break drain
		}
	}
	loaded := map[string]int{} // step → console length right after the re-read
	for _, jh := range h.srv.Jobs() {
		tl := jh.Timeline()
		feeds := make(map[string][]string, len(tl))
		for _, r := range tl {
			if r.Id != nil {
				if lines := jh.Feed(r.Id.String()); lines != nil {
					feeds[r.Id.String()] = lines
				}
			}
		}
		h.mu.Lock()
		if j := h.jobFor(jh.ID()); j != nil {
			h.refreshJob(j)
			for i := range tl {
				h.putRecord(j, recordOf(&tl[i]))
			}
			for step, lines := range feeds {
				h.reconcile(j.run.id, step, lines)
				loaded[step] = len(h.consoles[step].lines)
			}
		}
		h.mu.Unlock()
	}
	// Every event emitted before the re-read ended is in the buffer now.
	var pending []devserver.Event
	for n := len(sub.C); n > 0; n-- {
		e, ok := <-sub.C
		if !ok {
			break
		}
		pending = append(pending, e)
	}
	for _, e := range h.settle(pending, loaded) {
		h.apply(e)
	}
	if resync {
		h.mu.Lock()
		h.stats.recovered++
		for s := range h.subs {
			h.overflow(s, "the server re-read the emulator after missing some of its events")
		}
		h.mu.Unlock()
	}
}

// settle drops the feed events a re-read already covered. For each step, the
// events emitted before the emulator was read form a prefix of that step's
// pending events (the buffer keeps emission order), and their lines are the
// tail of what was read (loaded[step] lines). The longest prefix whose lines
// match that tail is dropped; everything else is kept in order. Records and
// job states need no such care: applying them again is harmless.
func (h *hub) settle(pending []devserver.Event, loaded map[string]int) []devserver.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	byStep := map[string][]int{} // step → indexes of its feed events in pending
	for i, e := range pending {
		if e.Kind == devserver.EventFeedLines {
			byStep[e.StepID] = append(byStep[e.StepID], i)
		}
	}
	skip := map[int]bool{}
	for step, idx := range byStep {
		c, end := h.consoles[step], loaded[step]
		if c == nil || end == 0 {
			continue
		}
		lines := c.lines[:end]
		covered, total := 0, 0
		for k, i := range idx {
			total += len(pending[i].Lines)
			if total > end {
				break
			}
			// Is the concatenation of events 0..k the last total lines read?
			at, ok := end-total, true
			for _, j := range idx[:k+1] {
				if !slices.Equal(lines[at:at+len(pending[j].Lines)], pending[j].Lines) {
					ok = false
					break
				}
				at += len(pending[j].Lines)
			}
			if ok {
				covered = k + 1
			}
		}
		for _, i := range idx[:covered] {
			skip[i] = true
		}
	}
	out := pending[:0:0]
	for i, e := range pending {
		if !skip[i] {
			out = append(out, e)
		}
	}
	return out
}

func (h *hub) apply(e devserver.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stats.events++
	switch e.Kind {
	case devserver.EventJobQueued, devserver.EventJobAssigned, devserver.EventJobStarted, devserver.EventJobCompleted:
		if j := h.jobFor(e.JobID); j != nil {
			h.refreshJob(j)
		}
	case devserver.EventRecordUpdated:
		if j := h.jobFor(e.JobID); j != nil && e.Record != nil {
			h.putRecord(j, recordOf(e.Record))
		}
	case devserver.EventFeedLines:
		if j := h.jobFor(e.JobID); j != nil && e.StepID != "" && len(e.Lines) > 0 {
			h.appendLines(j.run.id, e.StepID, e.Lines)
		}
	}
}

// jobFor returns the model of a job, creating it (and its run) on first
// sight. h.mu is held; the emulator never calls back into the hub, so
// querying it here cannot deadlock.
func (h *hub) jobFor(id string) *jobState {
	id = strings.ToLower(id)
	if j := h.jobs[id]; j != nil {
		return j
	}
	jh := h.srv.Job(id)
	if jh == nil {
		return nil
	}
	msg := jh.Message()
	r := h.runs[jh.PlanID()]
	if r == nil {
		r = &runState{id: jh.PlanID(), name: variable(msg.Variables, "build.buildNumber"), pipeline: variable(msg.Variables, "build.definitionName")}
		if r.name == "" {
			r.name = msg.JobDisplayName
		}
		h.runs[r.id] = r
		h.runOrder = append(h.runOrder, r)
	}
	j := &jobState{run: r, h: jh, info: jobOf(jh, msg.JobDisplayName), records: map[string]*Record{}}
	h.jobs[id] = j
	r.jobs = append(r.jobs, j)
	h.updateRun(r)
	if len(r.jobs) == 1 {
		// Watchers that named the run before it existed get it now.
		h.toWatchers(r.id, h.snapshot(r.id))
	} else {
		h.toWatchers(r.id, encode(jobMsg{Type: "job", Run: r.id, Job: j.info}))
	}
	return j
}

func (h *hub) refreshJob(j *jobState) {
	info := jobOf(j.h, j.info.Name)
	if sameJob(info, j.info) {
		return
	}
	j.info = info
	h.toWatchers(j.run.id, encode(jobMsg{Type: "job", Run: j.run.id, Job: info}))
	h.updateRun(j.run)
}

func (h *hub) putRecord(j *jobState, rec Record) {
	if rec.ID == "" {
		return
	}
	if old := j.records[rec.ID]; old != nil && old.change > rec.change {
		return // a re-read already gave a newer version
	}
	j.records[rec.ID] = &rec
	h.toWatchers(j.run.id, encode(recordMsg{Type: "record", Run: j.run.id, Job: j.info.ID, Record: rec}))
	h.updateRun(j.run)
}

func (h *hub) appendLines(run, step string, lines []string) {
	c := h.consoles[step]
	if c == nil {
		c = &console{run: run}
		h.consoles[step] = c
	}
	c.lines = append(c.lines, lines...)
	h.wakeStep(step)
}

// reconcile makes a console equal to the emulator's lines for the step.
func (h *hub) reconcile(run, step string, lines []string) {
	c := h.consoles[step]
	if c == nil {
		h.appendLines(run, step, slices.Clone(lines))
		return
	}
	if len(lines) >= len(c.lines) && slices.Equal(lines[:len(c.lines)], c.lines) {
		if len(lines) > len(c.lines) {
			c.lines = append(c.lines, lines[len(c.lines):]...)
			h.wakeStep(step)
		}
		return
	}
	c.lines = slices.Clone(lines)
	c.gen++
	h.stats.rebuilt++
	h.wakeStep(step)
}

func (h *hub) wakeStep(step string) {
	for s := range h.subs {
		if s.step == step {
			wake(s.notify)
		}
	}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// updateRun recomputes a run's summary and tells everyone when it changed.
func (h *hub) updateRun(r *runState) {
	s := Run{ID: r.id, Name: r.name, Pipeline: r.pipeline, Jobs: len(r.jobs)}
	worst, started := -1, false
	for _, j := range r.jobs {
		s.Queued = earliest(s.Queued, j.info.Queued)
		start, finish := j.info.Started, j.info.Finished
		agentStarted := false // the agent marked the job record started
		if jr := j.records[j.info.ID]; jr != nil {
			if jr.Start != nil {
				start, agentStarted = jr.Start, true
			}
			if finish == nil {
				finish = jr.Finish
			}
		}
		if agentStarted || j.info.State == string(devserver.JobRunning) || terminal(j.info.State) {
			started = true
			s.Started = earliest(s.Started, start)
		}
		if terminal(j.info.State) {
			s.Done++
			if rank := resultRank(j.info.Result); rank > worst {
				worst, s.Result = rank, j.info.Result
			}
			if finish != nil && (s.Finished == nil || finish.After(*s.Finished)) {
				s.Finished = finish
			}
		}
		for _, rec := range j.records {
			s.Errors += rec.Errors
			s.Warnings += rec.Warnings
		}
	}
	switch {
	case s.Jobs > 0 && s.Done == s.Jobs:
		s.State = "completed"
	case started || s.Done > 0:
		s.State, s.Result, s.Finished = "running", "", nil
	default:
		s.State, s.Result, s.Finished = "queued", "", nil
	}
	if sameRun(s, r.summary) {
		return
	}
	r.summary = s
	msg := encode(runMsg{Type: "run", Run: s})
	for sub := range h.subs {
		h.push(sub, msg)
	}
}

func earliest(a, b *time.Time) *time.Time {
	if b == nil || (a != nil && !b.Before(*a)) {
		return a
	}
	return b
}

func sameRun(a, b Run) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.ID == b.ID && a.Name == b.Name && a.State == b.State && a.Result == b.Result &&
		a.Jobs == b.Jobs && a.Done == b.Done && a.Errors == b.Errors && a.Warnings == b.Warnings &&
		eq(a.Queued, b.Queued) && eq(a.Started, b.Started) && eq(a.Finished, b.Finished)
}

func (h *hub) toWatchers(run string, msg []byte) {
	for s := range h.subs {
		if s.run == run {
			h.push(s, msg)
		}
	}
}

// push queues a message for a subscriber without ever waiting. A full queue
// is dropped whole: the subscriber is told to resync and gets snapshots,
// which stand for everything it missed.
func (h *hub) push(s *subscriber, msg []byte) {
	if s.behind {
		return
	}
	if len(s.queue) >= h.opts.QueueLimit {
		h.overflow(s, "the client fell behind: "+strconv.Itoa(len(s.queue))+" updates were waiting")
		return
	}
	s.queue = append(s.queue, msg)
	h.stats.maxQueue = max(h.stats.maxQueue, len(s.queue))
	wake(s.notify)
}

func (h *hub) overflow(s *subscriber, reason string) {
	h.stats.overflows++
	clear(s.queue)
	s.queue, s.behind, s.reason = s.queue[:0], true, reason
	wake(s.notify)
}

func (h *hub) runsList() []byte {
	runs := make([]Run, 0, len(h.runOrder))
	for _, r := range h.runOrder {
		runs = append(runs, r.summary)
	}
	return encode(runsMsg{Type: "runs", Runs: runs})
}

func (h *hub) snapshot(id string) []byte {
	m := snapshotMsg{Type: "snapshot", ID: id, Jobs: []Job{}}
	if r := h.runs[id]; r != nil {
		sum := r.summary
		m.Run = &sum
		for _, j := range r.jobs {
			job := j.info
			for _, rec := range j.records {
				job.Records = append(job.Records, *rec)
			}
			sortRecords(job.Records, j.info.ID)
			m.Jobs = append(m.Jobs, job)
		}
	}
	return encode(m)
}

// sortRecords puts the job's own record first, then steps by order.
func sortRecords(recs []Record, jobID string) {
	slices.SortStableFunc(recs, func(a, b Record) int {
		if (a.ID == jobID) != (b.ID == jobID) {
			if a.ID == jobID {
				return -1
			}
			return 1
		}
		if a.Order != b.Order {
			return a.Order - b.Order
		}
		return strings.Compare(a.ID, b.ID)
	})
}

func (h *hub) gen(g int) string { return h.serverID + "." + strconv.Itoa(g) }

// attach registers a new connection; it gets hello and the runs list.
func (h *hub) attach() *subscriber {
	s := &subscriber{notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	s.queue = append(s.queue,
		encode(helloMsg{Type: "hello", Protocol: protocolVersion, Server: h.serverID}),
		h.runsList())
	wake(s.notify)
	return s
}

func (h *hub) detach(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// watch applies a client's watch: what was queued for the old one is
// dropped, and the runs list and the run's snapshot come first.
func (h *hub) watch(s *subscriber, w watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(s.queue)
	s.queue, s.behind = s.queue[:0], false
	s.run, s.step = w.Run, w.Step
	s.queue = append(s.queue, h.runsList())
	if w.Run != "" {
		s.queue = append(s.queue, h.snapshot(w.Run))
	}
	s.cursor, s.gen = w.After, 0
	if w.Step != "" {
		c := h.consoles[w.Step]
		switch {
		case c == nil && w.After > 0:
			s.cursor, s.gen = 0, -1 // lines this server never had
		case c == nil:
		case w.Gen != "" && w.Gen != h.gen(c.gen), w.After > len(c.lines):
			s.cursor, s.gen = 0, -1
		default:
			s.gen = c.gen
		}
	}
	wake(s.notify)
}

// fail queues an error message for a frame the server could not use.
func (h *hub) fail(s *subscriber, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.push(s, encode(errorMsg{Type: "error", Error: err.Error()}))
}

// batch is what a connection's writer sends next.
type batch struct {
	msgs  [][]byte
	lines *linesMsg
	more  bool // call take again: the console has more lines
}

// take hands the writer everything pending: the queued messages (or, after
// an overflow, resync and fresh snapshots) and the next console lines after
// the subscriber's cursor, at most opts.MaxLines of them.
func (h *hub) take(s *subscriber) batch {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b batch
	if s.behind {
		h.stats.resyncs++
		s.behind = false
		b.msgs = append(b.msgs, encode(resyncMsg{Type: "resync", Reason: s.reason}), h.runsList())
		if s.run != "" {
			b.msgs = append(b.msgs, h.snapshot(s.run))
		}
	} else {
		b.msgs = slices.Clone(s.queue)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	if s.step == "" {
		return b
	}
	c := h.consoles[s.step]
	if c == nil {
		return b
	}
	reset := c.gen != s.gen
	if reset {
		s.cursor, s.gen = 0, c.gen
	}
	if s.cursor >= len(c.lines) && !reset {
		return b
	}
	end := min(len(c.lines), s.cursor+h.opts.MaxLines)
	// The slice shares c's backing array: lines below len are never
	// written again (appends go past them, replacements make a new array).
	b.lines = &linesMsg{Type: "lines", Run: c.run, Step: s.step, Gen: h.gen(c.gen), First: s.cursor + 1, Lines: c.lines[s.cursor:end:end], Reset: reset}
	if b.lines.Lines == nil {
		b.lines.Lines = []string{}
	}
	s.cursor = end
	b.more = end < len(c.lines)
	return b
}

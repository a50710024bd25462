package report

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/pause"
)

const (
	maxRecordsPerPatch = 25 // JobServerQueue takes ~25 updates per timeline per tick
	maxPatchesPerTick  = 8
	finalFlushAttempts = 5
)

// timeline coalesces record updates: records are full snapshots, so the
// latest state of a record replaces the queued one (JobServerQueue merges
// queued updates the same way before each PATCH). Only log references are
// kept one by one: each log page is its own log, and every one of them is
// sent in a PATCH of its own, in order, so that the service sees every page
// the record had.
type timeline struct {
	mu    sync.Mutex
	recs  map[string]*recState
	order []string // ids with something unsent, in the order they became so
}

type recState struct {
	rec    jobs.Record
	hasRec bool
	// states are earlier snapshots, not yet sent, whose state differs from
	// the next one: a record created pending and completed within one tick is
	// still sent pending, inProgress and completed, in order, so the service
	// sees every transition (fast native steps finish well within a tick).
	states   []jobs.Record
	version  int // bumped by every UpdateRecord
	sent     int // version last delivered
	logs     []logRef
	lastLog  *logRef
	variable bool // the latest state carries output variables
	sentOnce bool // some state of the record reached the service
}

type logRef struct {
	id       int
	location string
}

func (t *timeline) init() { t.recs = map[string]*recState{} }

func (st *recState) pending() bool {
	return st.version != st.sent || len(st.logs) > 0 || len(st.states) > 0
}

func (t *timeline) state(id string) *recState {
	st := t.recs[id]
	if st == nil {
		st = &recState{}
		t.recs[id] = st
	}
	return st
}

func (t *timeline) markPending(id string, st *recState) {
	if st.pending() && !slices.Contains(t.order, id) {
		t.order = append(t.order, id)
	}
}

func (t *timeline) update(rec jobs.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(rec.ID)
	if st.hasRec && st.version != st.sent && st.rec.State != rec.State {
		st.states = append(st.states, st.rec)
	}
	st.rec, st.hasRec = rec, true
	st.version++
	st.variable = len(rec.Variables) > 0
	t.markPending(rec.ID, st)
}

// linkLog queues "this record's log is now ref" (JobServerQueue.UploadFile
// queues a record update with only Log set).
func (t *timeline) linkLog(id string, ref logRef) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.state(id)
	st.logs = append(st.logs, ref)
	t.markPending(id, st)
}

// sentItem is what a PATCH carried for one record.
type sentItem struct {
	id      string
	version int
	log     bool // carried the first queued log reference
	state   bool // carried the first queued earlier state
}

// batch builds the next PATCH: up to maxRecordsPerPatch records in the order
// they became pending.
func (t *timeline) batch() ([]taskagent.TimelineRecord, []sentItem) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var recs []taskagent.TimelineRecord
	var items []sentItem
	for _, id := range t.order {
		if len(recs) == maxRecordsPerPatch {
			break
		}
		st := t.recs[id]
		if len(st.states) > 0 {
			recs = append(recs, toWire(id, &st.states[0], st.lastLog))
			items = append(items, sentItem{id: id, version: st.sent, state: true})
			continue
		}
		var ref *logRef
		item := sentItem{id: id, version: st.version}
		if len(st.logs) > 0 {
			ref, item.log = &st.logs[0], true
		} else {
			ref = st.lastLog
		}
		var rec *jobs.Record
		if st.hasRec {
			rec = &st.rec
		}
		recs = append(recs, toWire(id, rec, ref))
		items = append(items, item)
	}
	return recs, items
}

func (t *timeline) delivered(items []sentItem) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range items {
		st := t.recs[it.id]
		st.sentOnce = true
		if it.state {
			st.states = st.states[1:]
			continue
		}
		st.sent = max(st.sent, it.version)
		if it.log {
			ref := st.logs[0]
			st.lastLog = &ref
			st.logs = st.logs[1:]
		}
	}
	t.order = slices.DeleteFunc(t.order, func(id string) bool { return !t.recs[id].pending() })
}

// onService reports whether some state of the record was delivered.
func (t *timeline) onService(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.recs[id]
	return st != nil && st.sentOnce
}

// undelivered lists records with unsent state and whether any of them
// carries output variables.
func (t *timeline) undelivered() (ids []string, variables bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range t.order {
		ids = append(ids, id)
		if st := t.recs[id]; st.variable && st.version != st.sent {
			variables = true
		}
	}
	return ids, variables
}

// flush sends pending records, at most maxPatches PATCHes, stopping at the
// first failure so that order is kept. One flush runs at a time: the
// timeline loop and the uploads (attachments wait for their record) share it.
func (r *Reporter) flushTimeline(maxPatches int) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	// Detail timelines first: the step records about to be sent name them.
	// A failed create holds back only that timeline's records.
	createErr := r.createDetailTimelines()
	for range maxPatches {
		recs, items := r.tl.batch()
		if len(recs) == 0 {
			break
		}
		if _, err := r.plan.UpdateRecords(r.ctx, recs); err != nil {
			return errors.Join(createErr, fmt.Errorf("update %d timeline records: %w", len(recs), err))
		}
		r.tl.delivered(items)
	}
	return errors.Join(createErr, r.flushDetails(maxPatches))
}

func (r *Reporter) timelineLoop() {
	defer close(r.tlDone)
	tick := time.NewTicker(r.o.TimelineInterval)
	defer tick.Stop()
	failures := 0
	var next time.Time
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.stopTL:
			return
		case <-tick.C:
		}
		if time.Now().Before(next) {
			continue
		}
		if err := r.flushTimeline(maxPatchesPerTick); err != nil {
			failures++
			next = time.Now().Add(backoff(r.o.RetryDelay, failures))
			r.log.Warn("timeline records not updated; will retry", "error", err, "failures", failures)
			continue
		}
		failures, next = 0, time.Time{}
	}
}

// finalTimelineFlush sends what is left, retrying with back-off. Records that
// carry output variables and could not be sent fail the job.
func (r *Reporter) finalTimelineFlush() error {
	var lastErr error
	for attempt := range finalFlushAttempts {
		if attempt > 0 && pause.Sleep(r.ctx, backoff(r.o.RetryDelay, attempt)) != nil {
			break
		}
		lastErr = r.flushTimeline(1 << 20)
		if lastErr == nil || r.ctx.Err() != nil || tokenRejected(lastErr) {
			break
		}
		r.log.Warn("final timeline update failed", "attempt", attempt+1, "error", lastErr)
	}
	if left := r.details.undelivered(); len(left) > 0 {
		r.log.Warn("detail timeline records not updated at the end of the job", "records", left, "error", lastErr)
	}
	ids, variables := r.tl.undelivered()
	if len(ids) == 0 {
		return nil
	}
	if lastErr == nil {
		lastErr = r.ctx.Err()
	}
	if lastErr == nil {
		lastErr = errors.New("not sent")
	}
	if variables {
		return errors.Join(ErrOutputVariables, fmt.Errorf("timeline records %v not updated: %w", ids, lastErr))
	}
	r.log.Warn("timeline records not updated at the end of the job", "records", ids, "error", lastErr)
	return nil
}

// toWire converts a record to the service's model (worker.md §7.2). Times are
// UTC; the Job record has no order; variables are {name: {value, isSecret}}.
func toWire(id string, rec *jobs.Record, log *logRef) taskagent.TimelineRecord {
	rid := uuid.MustParse(id) // ids are checked on the way in
	out := taskagent.TimelineRecord{Id: &rid}
	if log != nil {
		lid, loc := log.id, log.location
		out.Log = &taskagent.TaskLogReference{Id: &lid}
		if loc != "" {
			out.Log.Location = &loc
		}
	}
	if rec == nil {
		return out
	}
	setWireBasics(&out, rec.ParentID, rec.Type, rec.Name, rec.State, rec.Result)
	out.RefName = strPtr(rec.RefName)
	if rec.Type != "Job" {
		order := rec.Order
		out.Order = &order
	}
	out.ResultCode = strPtr(rec.ResultCode)
	out.StartTime = timePtr(rec.StartTime)
	out.FinishTime = timePtr(rec.FinishTime)
	pct, errs, warns := rec.PercentComplete, rec.ErrorCount, rec.WarningCount
	out.PercentComplete, out.ErrorCount, out.WarningCount = &pct, &errs, &warns
	out.CurrentOperation = strPtr(rec.CurrentOperation)
	out.WorkerName = strPtr(rec.WorkerName)
	if rec.Details != "" {
		if d, err := uuid.Parse(rec.Details); err == nil {
			out.Details = &taskagent.TimelineReference{Id: &d}
		}
	}
	if rec.Attempt > 0 {
		a := rec.Attempt
		out.Attempt = &a
	}
	issues := make([]taskagent.Issue, 0, len(rec.Issues))
	for _, is := range rec.Issues {
		typ := taskagent.IssueType(is.Type)
		w := taskagent.Issue{Type: &typ, Category: strPtr(is.Category), Message: strPtr(is.Message)}
		if len(is.Data) > 0 {
			d := maps.Clone(is.Data)
			w.Data = &d
		}
		issues = append(issues, w)
	}
	out.Issues = &issues
	vars := make(map[string]any, len(rec.Variables))
	for k, v := range rec.Variables {
		val, secret := v.Value, v.IsSecret
		vars[k] = taskagent.VariableValue{Value: &val, IsSecret: &secret}
	}
	out.Variables = &vars
	return out
}

func cloneRecord(rec jobs.Record) jobs.Record {
	rec.Issues = slices.Clone(rec.Issues)
	for i := range rec.Issues {
		rec.Issues[i].Data = maps.Clone(rec.Issues[i].Data)
	}
	rec.Variables = maps.Clone(rec.Variables)
	return rec
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timePtr(t time.Time) *azuredevops.Time {
	if t.IsZero() {
		return nil
	}
	return &azuredevops.Time{Time: t.UTC()}
}

// setWireBasics sets the fields main and detail records carry alike; empty
// values are left out.
func setWireBasics(out *taskagent.TimelineRecord, parentID, typ, name, state, result string) {
	if parentID != "" {
		if p, err := uuid.Parse(parentID); err == nil {
			out.ParentId = &p
		}
	}
	out.Type = strPtr(typ)
	out.Name = strPtr(name)
	if state != "" {
		s := taskagent.TimelineRecordState(state)
		out.State = &s
	}
	if result != "" {
		res := taskagent.TaskResult(result)
		out.Result = &res
	}
}

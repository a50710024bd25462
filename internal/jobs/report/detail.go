package report

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/jobs"
)

// detailTimelines are the steps' detail timelines (##vso[task.logdetail]).
// As in JobServerQueue, a timeline the service has not seen is created
// (POST …/timelines) in the flush that first sends the step record naming
// it, before that record; its records are sent only once it exists, after
// the job timeline's records of the same flush. Queued updates of a record
// coalesce to its latest state: the runner sends merged snapshots, and the
// official queue merges what is queued field by field before each PATCH.
type detailTimelines struct {
	mu    sync.Mutex
	byID  map[string]*detailTimeline
	order []string // timeline ids in the order they were first named
}

type detailTimeline struct {
	id      string
	created bool
	recs    map[string]*detailState
	pending []string // record ids with unsent state, in the order they became so
}

type detailState struct {
	rec     jobs.DetailRecord
	version int
	sent    int
}

// timeline returns the detail timeline id, registering it; mu is held.
func (d *detailTimelines) timeline(id string) *detailTimeline {
	if d.byID == nil {
		d.byID = map[string]*detailTimeline{}
	}
	tl := d.byID[id]
	if tl == nil {
		tl = &detailTimeline{id: id, recs: map[string]*detailState{}}
		d.byID[id] = tl
		d.order = append(d.order, id)
	}
	return tl
}

// named registers a timeline a step record names in its details.
func (d *detailTimelines) named(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timeline(id)
}

func (d *detailTimelines) update(timelineID string, rec jobs.DetailRecord) {
	d.mu.Lock()
	defer d.mu.Unlock()
	tl := d.timeline(timelineID)
	st := tl.recs[rec.ID]
	if st == nil {
		st = &detailState{}
		tl.recs[rec.ID] = st
	}
	st.rec = rec
	st.version++
	if !slices.Contains(tl.pending, rec.ID) {
		tl.pending = append(tl.pending, rec.ID)
	}
}

// toCreate lists the timelines the service does not have yet.
func (d *detailTimelines) toCreate() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, id := range d.order {
		if !d.byID[id].created {
			out = append(out, id)
		}
	}
	return out
}

func (d *detailTimelines) markCreated(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byID[id].created = true
}

type detailItem struct {
	id      string
	version int
}

// batch builds the next PATCH of the first created timeline with pending
// records.
func (d *detailTimelines) batch() (string, []taskagent.TimelineRecord, []detailItem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, tid := range d.order {
		tl := d.byID[tid]
		if !tl.created || len(tl.pending) == 0 {
			continue
		}
		var recs []taskagent.TimelineRecord
		var items []detailItem
		for _, id := range tl.pending {
			if len(recs) == maxRecordsPerPatch {
				break
			}
			st := tl.recs[id]
			recs = append(recs, detailToWire(&st.rec))
			items = append(items, detailItem{id: id, version: st.version})
		}
		return tid, recs, items
	}
	return "", nil, nil
}

func (d *detailTimelines) delivered(timelineID string, items []detailItem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	tl := d.byID[timelineID]
	for _, it := range items {
		st := tl.recs[it.id]
		st.sent = max(st.sent, it.version)
	}
	tl.pending = slices.DeleteFunc(tl.pending, func(id string) bool {
		st := tl.recs[id]
		return st.sent == st.version
	})
}

// undelivered counts records with unsent state, per timeline.
func (d *detailTimelines) undelivered() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for _, id := range d.order {
		if n := len(d.byID[id].pending); n > 0 {
			out[id] = n
		}
	}
	return out
}

// UpdateDetailRecord queues the state of a record of a step's detail
// timeline.
func (r *Reporter) UpdateDetailRecord(timelineID string, rec jobs.DetailRecord) {
	if r.finished.Load() {
		r.log.Warn("detail timeline record update after Finish dropped", "timeline", timelineID, "record", rec.ID)
		return
	}
	if _, err := uuid.Parse(timelineID); err != nil {
		r.log.Warn("detail timeline with a non-GUID id dropped", "timeline", timelineID)
		return
	}
	if _, err := uuid.Parse(rec.ID); err != nil {
		r.log.Warn("detail timeline record with a non-GUID id dropped", "timeline", timelineID, "record", rec.ID)
		return
	}
	r.details.update(timelineID, rec)
}

// createDetailTimelines creates the timelines the service lacks. A failure
// is returned (the next flush retries) but does not stop the others.
func (r *Reporter) createDetailTimelines() error {
	var errs []error
	for _, id := range r.details.toCreate() {
		err := r.plan.CreateTimeline(r.ctx, id)
		if err != nil && !errors.Is(err, azdo.ErrTimelineExists) {
			errs = append(errs, fmt.Errorf("create detail timeline %s: %w", id, err))
			continue
		}
		r.details.markCreated(id)
	}
	return errors.Join(errs...)
}

// flushDetails sends the pending records of created detail timelines, at
// most maxPatches PATCHes, stopping at the first failure.
func (r *Reporter) flushDetails(maxPatches int) error {
	for range maxPatches {
		tid, recs, items := r.details.batch()
		if len(recs) == 0 {
			return nil
		}
		if _, err := r.plan.UpdateTimelineRecords(r.ctx, tid, recs); err != nil {
			return fmt.Errorf("update %d records of detail timeline %s: %w", len(recs), tid, err)
		}
		r.details.delivered(tid, items)
	}
	return nil
}

// detailToWire converts a detail record, leaving out what was never set.
func detailToWire(rec *jobs.DetailRecord) taskagent.TimelineRecord {
	id := uuid.MustParse(rec.ID) // ids are checked on the way in
	out := taskagent.TimelineRecord{Id: &id}
	setWireBasics(&out, rec.ParentID, rec.Type, rec.Name, rec.State, rec.Result)
	if rec.Order != nil {
		o := *rec.Order
		out.Order = &o
	}
	out.StartTime = timePtr(rec.StartTime)
	out.FinishTime = timePtr(rec.FinishTime)
	if rec.PercentComplete != nil {
		p := *rec.PercentComplete
		out.PercentComplete = &p
	}
	out.CurrentOperation = strPtr(rec.CurrentOperation)
	return out
}

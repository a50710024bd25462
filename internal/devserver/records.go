package devserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// recordFields maps lower-cased TimelineRecord JSON names to their canonical
// camelCase form, so that a record sent with other casing (the service binds
// case-insensitively) merges into the same field.
var recordFields = func() map[string]string {
	m := map[string]string{}
	t := reflect.TypeFor[taskagent.TimelineRecord]()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[strings.ToLower(name)] = name
		}
	}
	return m
}()

type timelineState struct {
	id string
	// detail: created by the agent (POST …/timelines) for a step's
	// ##vso[task.logdetail] records. Its records are whatever the scripts
	// say — states may go back, a record may complete without a result, a
	// parent may live in another step's detail timeline — and the official
	// agent sends them as they are, so none of that is a violation there.
	detail   bool
	changeID int
	order    []string
	records  map[string]*recordState
}

type recordState struct {
	fields map[string]json.RawMessage
}

func newTimeline(id string) *timelineState {
	return &timelineState{id: id, records: map[string]*recordState{}}
}

func (r *recordState) str(name string) string {
	var s string
	if v, ok := r.fields[name]; ok {
		json.Unmarshal(v, &s)
	}
	return s
}

func (r *recordState) decode() taskagent.TimelineRecord {
	b, _ := json.Marshal(r.fields)
	var out taskagent.TimelineRecord
	json.Unmarshal(b, &out)
	return out
}

func (r *recordState) name() string {
	if n := r.str("name"); n != "" {
		return fmt.Sprintf("%q (%s)", n, r.str("id"))
	}
	return r.str("id")
}

func rawString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// addJobRecord creates the pending Job record of a newly queued job, as the
// service does before the agent sees the job (worker.md §1.1: jobId is the
// Job record's id).
func (tl *timelineState) addJobRecord(j *jobState, now time.Time) {
	tl.changeID++
	rec := &recordState{fields: map[string]json.RawMessage{
		"id":              rawString(j.id),
		"type":            rawString("Job"),
		"name":            rawString(j.msg.JobDisplayName),
		"refName":         rawString(j.msg.JobName),
		"identifier":      rawString(j.msg.JobName),
		"state":           rawString(string(taskagent.TimelineRecordStateValues.Pending)),
		"attempt":         json.RawMessage("1"),
		"errorCount":      json.RawMessage("0"),
		"warningCount":    json.RawMessage("0"),
		"percentComplete": json.RawMessage("0"),
		"changeId":        json.RawMessage(fmt.Sprint(tl.changeID)),
		"lastModified":    rawString(now.UTC().Format(time.RFC3339Nano)),
	}}
	if _, ok := tl.records[j.id]; !ok {
		tl.order = append(tl.order, j.id)
	}
	tl.records[j.id] = rec
}

// recordStates in their canonical spelling; the rank orders transitions.
var recordStates = map[string]int{"pending": 0, "inprogress": 1, "completed": 2}

func canonicalState(v string) (string, bool) {
	switch strings.ToLower(v) {
	case "pending":
		return "pending", true
	case "inprogress":
		return "inProgress", true
	case "completed":
		return "completed", true
	}
	return "", false
}

// mergeResult is what one PATCH of records did.
type mergeResult struct {
	records    []*recordState
	violations []string
}

// mergeRecords applies a PATCH batch the way the service does: records are
// matched by id, fields present (and not null) replace the stored ones, the
// rest stay. Malformed input is an error (400); state regressions, a record
// completed without a result, and references to unknown parents or logs are
// violations, recorded rather than refused.
func (tl *timelineState) mergeRecords(batch []json.RawMessage, logExists func(int) bool, now time.Time) (*mergeResult, error) {
	type item struct {
		id     string
		fields map[string]json.RawMessage
	}
	var items []item
	for i, raw := range batch {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("record %d is not a JSON object", i)
		}
		var check taskagent.TimelineRecord
		if err := json.Unmarshal(raw, &check); err != nil {
			return nil, fmt.Errorf("record %d: %s", i, jsonErr(err))
		}
		fields := map[string]json.RawMessage{}
		for k, v := range obj {
			name, ok := recordFields[strings.ToLower(k)]
			if !ok {
				name = k
			}
			if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
				continue
			}
			fields[name] = v
		}
		var id string
		if v, ok := fields["id"]; !ok || json.Unmarshal(v, &id) != nil {
			return nil, fmt.Errorf("record %d has no id", i)
		}
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, fmt.Errorf("record %d: id %q is not a GUID", i, id)
		}
		id = u.String()
		fields["id"] = rawString(id)
		for _, name := range []string{"state", "result"} {
			v, ok := fields[name]
			if !ok {
				continue
			}
			var s string
			if json.Unmarshal(v, &s) != nil {
				return nil, fmt.Errorf("record %s: %s must be a string", id, name)
			}
			var canon string
			var valid bool
			if name == "state" {
				canon, valid = canonicalState(s)
			} else {
				canon, valid = taskResult(s)
			}
			if !valid {
				return nil, fmt.Errorf("record %s: %q is not a valid %s", id, s, name)
			}
			fields[name] = rawString(canon)
		}
		items = append(items, item{id: id, fields: fields})
	}
	res := &mergeResult{}
	tl.changeID++
	for _, it := range items {
		rec, existed := tl.records[it.id]
		if !existed {
			rec = &recordState{fields: map[string]json.RawMessage{}}
			tl.records[it.id] = rec
			tl.order = append(tl.order, it.id)
		}
		oldState := strings.ToLower(rec.str("state"))
		oldResult := rec.str("result")
		for k, v := range it.fields {
			rec.fields[k] = v
		}
		newState := strings.ToLower(rec.str("state"))
		if !tl.detail { // see timelineState.detail
			if existed && oldState != "" && newState != "" && recordStates[newState] < recordStates[oldState] {
				res.violations = append(res.violations, fmt.Sprintf("timeline record %s went from %s back to %s", rec.name(), stateName(oldState), rec.str("state")))
			}
			if existed && oldState == "completed" && oldResult != "" && rec.str("result") != oldResult {
				res.violations = append(res.violations, fmt.Sprintf("timeline record %s changed its result from %s to %s after it completed", rec.name(), oldResult, rec.str("result")))
			}
			if newState == "completed" && rec.str("result") == "" {
				res.violations = append(res.violations, fmt.Sprintf("timeline record %s was completed without a result", rec.name()))
			}
		}
		if v, ok := it.fields["log"]; ok {
			var ref struct {
				ID *int `json:"id"`
			}
			if json.Unmarshal(v, &ref) == nil && ref.ID != nil && !logExists(*ref.ID) {
				res.violations = append(res.violations, fmt.Sprintf("timeline record %s links log %d, which was never created", rec.name(), *ref.ID))
			}
		}
		rec.fields["changeId"] = json.RawMessage(fmt.Sprint(tl.changeID))
		rec.fields["lastModified"] = rawString(now.UTC().Format(time.RFC3339Nano))
		res.records = append(res.records, rec)
	}
	for _, rec := range res.records {
		if p := rec.str("parentId"); p != "" && !tl.detail {
			if u, err := uuid.Parse(p); err != nil || tl.records[u.String()] == nil {
				res.violations = append(res.violations, fmt.Sprintf("timeline record %s names parent %s, which is not in the timeline", rec.name(), p))
			}
		}
	}
	return res, nil
}

func stateName(lower string) string {
	s, _ := canonicalState(lower)
	return s
}

// subtree returns the records of one job: its Job record first, then the
// records below it, in creation order.
func (tl *timelineState) subtree(jobID string) []*recordState {
	in := map[string]bool{jobID: true}
	var out []*recordState
	if r := tl.records[jobID]; r != nil {
		out = append(out, r)
	}
	for changed := true; changed; {
		changed = false
		for _, id := range tl.order {
			if in[id] {
				continue
			}
			if p, err := uuid.Parse(tl.records[id].str("parentId")); err == nil && in[p.String()] {
				in[id] = true
				changed = true
			}
		}
	}
	for _, id := range tl.order {
		if id != jobID && in[id] {
			out = append(out, tl.records[id])
		}
	}
	return out
}

package jobs

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/jobs/logcmd"
)

// Official messages (src/Misc/layoutbin/en-US/strings.json). The official
// command throws ArgumentNullException(message): .NET takes the one argument
// as the parameter name, hence "Value cannot be null. (Parameter '…')".
const (
	locMissingTimelineRecordID = "Can't update timeline record, timeline record id is not provided."
	locNameRequired            = "Name is required for this new timeline record."
	locTypeRequired            = "Type is required for this new timeline record."
	locParentNotCreated        = "Parent timeline record has not been created for this new timeline record."
	locCannotChangeParent      = "Can't change parent timeline record of an existing timeline record."
)

func argumentNull(param string) error {
	return errors.New("Value cannot be null. (Parameter '" + param + "')")
}

// detailTracker is TaskDetailCommand's _timelineRecordsTracker: the records
// ##vso[task.logdetail] created, with their parents. The official command
// extension is created once per worker process, so the tracker spans the job:
// a record created by one step counts as created in the next ones (while
// each step has its own detail timeline, ExecutionContext._detailRecords).
type detailTracker struct {
	mu      sync.Mutex
	records map[uuid.UUID]*uuid.UUID // id -> parent (nil: none given)
}

// stepDetails is a step's detail timeline (ExecutionContext._detailTimelineId
// and _detailRecords): created by the step's first logdetail command.
type stepDetails struct {
	timelineID string
	records    map[string]*DetailRecord
	order      []string // ids in creation order
}

// logDetail is ##vso[task.logdetail] (TaskDetailCommand.Execute, then
// ExecutionContext.UpdateDetailTimelineRecord). Nothing is written to the log.
func (s *stepRun) logDetail(cmd *logcmd.Command) error {
	jr := s.jr
	rec, parent, err := parseDetail(cmd, jr.now())
	if err != nil {
		return err
	}
	id := uuid.MustParse(rec.ID)
	tr := &jr.details
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.records == nil {
		tr.records = map[uuid.UUID]*uuid.UUID{}
	}
	if known, ok := tr.records[id]; ok {
		if parent != nil && (known == nil || *known != *parent) {
			return errors.New(locCannotChangeParent)
		}
		if parent == nil {
			parent = known
		}
		if rec.State == StateCompleted {
			if rec.PercentComplete == nil {
				rec.PercentComplete = ptrTo(100)
			}
			if rec.FinishTime.IsZero() {
				rec.FinishTime = jr.now()
			}
		}
	} else {
		if rec.Name == "" {
			return argumentNull(locNameRequired)
		}
		if rec.Type == "" {
			return argumentNull(locTypeRequired)
		}
		if parent != nil && *parent != uuid.Nil {
			if _, ok := tr.records[*parent]; !ok {
				return argumentNull(locParentNotCreated)
			}
		}
		if rec.StartTime.IsZero() {
			rec.StartTime = jr.now()
		}
		if rec.State == "" {
			rec.State = StateInProgress
		}
	}
	if parent != nil {
		rec.ParentID = parent.String()
	}
	// UpdateDetailTimelineRecord refuses Job records (case-sensitive).
	if rec.Type == "Job" {
		return errors.New("Specified argument was out of the range of valid values. (Parameter 'record')")
	}
	rec.Name = jr.masker.Mask(rec.Name)
	rec.CurrentOperation = jr.masker.Mask(rec.CurrentOperation)
	s.updateDetail(rec)
	tr.records[id] = parent
	return nil
}

// updateDetail is ExecutionContext.UpdateDetailTimelineRecord: the step's
// first detail record creates its detail timeline, which the step's own
// record then names; a known record takes the fields the update sets.
func (s *stepRun) updateDetail(rec DetailRecord) {
	jr := s.jr
	s.mu.Lock()
	d := &s.details
	created := false
	if d.timelineID == "" {
		d.timelineID = newID()
		d.records = map[string]*DetailRecord{}
		created = true
	}
	tl := d.timelineID
	cur := d.records[rec.ID]
	if cur == nil {
		c := rec
		cur = &c
		d.records[rec.ID] = cur
		d.order = append(d.order, rec.ID)
	} else {
		mergeDetail(cur, &rec)
	}
	snapshot := cloneDetail(*cur)
	s.mu.Unlock()
	if created {
		jr.mu.Lock()
		s.rec.Details = tl
		jr.mu.Unlock()
		jr.updateRecord(s.rec)
	}
	jr.rep.UpdateDetailRecord(tl, snapshot)
}

// completeDetails completes the step's detail records when the step ends
// (ExecutionContext.Complete): finish time, 100 % and succeeded where unset,
// state completed, every record sent again.
func (s *stepRun) completeDetails() {
	jr := s.jr
	s.mu.Lock()
	d := &s.details
	tl := d.timelineID
	var out []DetailRecord
	for _, id := range d.order {
		r := d.records[id]
		if r.FinishTime.IsZero() {
			r.FinishTime = jr.now()
		}
		if r.PercentComplete == nil {
			r.PercentComplete = ptrTo(100)
		}
		if r.Result == "" {
			r.Result = ResultSucceeded
		}
		r.State = StateCompleted
		out = append(out, cloneDetail(*r))
	}
	s.mu.Unlock()
	for _, r := range out {
		jr.rep.UpdateDetailRecord(tl, r)
	}
}

// mergeDetail sets in cur the fields upd sets (new ?? old, field by field).
func mergeDetail(cur, upd *DetailRecord) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cur.Name, upd.Name)
	set(&cur.Type, upd.Type)
	set(&cur.ParentID, upd.ParentID)
	set(&cur.CurrentOperation, upd.CurrentOperation)
	set(&cur.Result, upd.Result)
	set(&cur.State, upd.State)
	if upd.Order != nil {
		cur.Order = ptrTo(*upd.Order)
	}
	if upd.PercentComplete != nil {
		cur.PercentComplete = ptrTo(*upd.PercentComplete)
	}
	if !upd.StartTime.IsZero() {
		cur.StartTime = upd.StartTime
	}
	if !upd.FinishTime.IsZero() {
		cur.FinishTime = upd.FinishTime
	}
}

func cloneDetail(r DetailRecord) DetailRecord {
	if r.Order != nil {
		r.Order = ptrTo(*r.Order)
	}
	if r.PercentComplete != nil {
		r.PercentComplete = ptrTo(*r.PercentComplete)
	}
	return r
}

func ptrTo[T any](v T) *T { return &v }

// parseDetail reads the command's properties as TaskDetailCommand does:
// id and parentid must be GUIDs (a bad one throws FormatException);
// unparsable order, progress, times, state fall back or stay unset.
func parseDetail(cmd *logcmd.Command, now time.Time) (DetailRecord, *uuid.UUID, error) {
	var rec DetailRecord
	raw, ok := prop(cmd, "id")
	if !ok || raw == "" {
		return rec, nil, argumentNull(locMissingTimelineRecordID)
	}
	id, err := parseDotNetGUID(raw)
	if err != nil {
		return rec, nil, err
	}
	if id == uuid.Nil {
		return rec, nil, argumentNull(locMissingTimelineRecordID)
	}
	rec.ID = id.String()
	var parent *uuid.UUID
	if raw, ok := prop(cmd, "parentid"); ok {
		p, err := parseDotNetGUID(raw)
		if err != nil {
			return rec, nil, err
		}
		parent = &p
	}
	rec.Name, _ = prop(cmd, "name")
	rec.Type, _ = prop(cmd, "type")
	if v, ok := prop(cmd, "order"); ok {
		if n, err := parseInt32(v); err == nil {
			rec.Order = &n
		}
	}
	if v, ok := prop(cmd, "progress"); ok {
		if n, err := parseInt32(v); err == nil {
			rec.PercentComplete = ptrTo(min(max(n, 0), 100))
		}
	}
	rec.CurrentOperation = cmd.Data
	if v, ok := prop(cmd, "result"); ok {
		if r, ok := parseResultIgnoreCase(v); ok {
			rec.Result = r
		} else {
			rec.Result = ResultSucceeded
		}
	}
	if v, ok := prop(cmd, "starttime"); ok {
		rec.StartTime = parseDetailTime(v, now)
	}
	if v, ok := prop(cmd, "finishtime"); ok {
		rec.FinishTime = parseDetailTime(v, now)
	}
	if v, ok := prop(cmd, "state"); ok {
		rec.State = parseRecordState(v)
	}
	return rec, parent, nil
}

// parseInt32 is Int32.TryParse (integer style: surrounding white space and a
// leading sign).
func parseInt32(s string) (int, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
	return int(n), err
}

// parseResultIgnoreCase is EnumUtil.TryParse<TaskResult>: a name in any case
// or a defined value.
func parseResultIgnoreCase(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for _, name := range []string{"Succeeded", "SucceededWithIssues", "Failed", "Canceled", "Skipped", "Abandoned"} {
		if strings.EqualFold(s, name) {
			return parseResult(name)
		}
	}
	if _, err := strconv.Atoi(s); err == nil {
		return parseResult(s)
	}
	return "", false
}

// parseRecordState is Enum.TryParse<TimelineRecordState> (names are
// case-sensitive; defined numbers count), pending when it fails.
func parseRecordState(s string) string {
	switch strings.TrimSpace(s) {
	case "InProgress", "1":
		return StateInProgress
	case "Completed", "2":
		return StateCompleted
	}
	return StatePending
}

// detailTimeLayouts are the forms DateTime.TryParse reads in the invariant
// and en-US cultures that scripts use.
var detailTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.9999999",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04",
	"2006-01-02",
	"1/2/2006 3:04:05 PM",
	"1/2/2006 15:04:05",
	"1/2/2006",
	time.RFC1123,
	time.RFC1123Z,
}

// parseDetailTime is DateTime.TryParse with AdjustToUniversal: a time with
// an offset becomes UTC, one without is taken as UTC; unreadable text is now.
func parseDetailTime(s string, now time.Time) time.Time {
	s = strings.TrimSpace(s)
	for _, layout := range detailTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return now
}

// parseDotNetGUID is new Guid(string): white space trimmed, the D, N, B and
// P forms, and FormatException's messages.
func parseDotNetGUID(raw string) (uuid.UUID, error) {
	s := strings.TrimSpace(raw)
	if len(s) == 38 && s[0] == '(' && s[37] == ')' {
		s = "{" + s[1:37] + "}"
	}
	if u, err := uuid.Parse(s); err == nil && (len(s) == 32 || len(s) == 36 || len(s) == 38) {
		return u, nil
	}
	switch len(s) {
	case 36, 38:
		d := s
		if len(s) == 38 {
			d = s[1:37]
		}
		if len(s) == 38 && !(s[0] == '{' && s[37] == '}') {
			break
		}
		if d[8] != '-' || d[13] != '-' || d[18] != '-' || d[23] != '-' {
			return uuid.Nil, errors.New("Dashes are in the wrong position for GUID parsing.")
		}
		return uuid.Nil, errors.New("Guid string should only contain hexadecimal characters.")
	case 32:
		return uuid.Nil, errors.New("Guid string should only contain hexadecimal characters.")
	}
	return uuid.Nil, errors.New("Unrecognized Guid format.")
}

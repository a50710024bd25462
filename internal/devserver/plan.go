package devserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/wire"
)

type logState struct {
	id      int
	path    string
	created time.Time
	changed time.Time
	content bytes.Buffer
	lines   uint64
	partial bool // content does not end in a newline
}

type feedState struct {
	lines []string        // in arrival order
	seen  map[string]bool // batches already taken, by startLine and content
}

// Attachment is a file the agent attached to a timeline record.
type Attachment struct {
	TimelineID, RecordID, Type, Name string
	Data                             []byte
	Created                          time.Time
}

// planCtx is a plan route request after authorization.
type planCtx struct {
	q    *request
	plan *planState
	job  *jobState // the job whose token made the call
}

// handlePlan serves the plan routes (worker.md §7): only the per-job access
// token of the addressed plan is accepted.
func (s *Server) handlePlan(q *request) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, aerr := s.jobCaller(q, "plan routes", "access orchestration plans")
	if aerr != nil {
		return aerr
	}
	planID := strings.ToLower(q.vals["planId"])
	if planID != q.p.token.planID {
		s.violation(job, "the access token of job %s was used for plan %s", q.p.token.jobID, q.vals["planId"])
		return errf(http.StatusForbidden, exPlanSecurity, "The access token is not valid for orchestration plan %s.", q.vals["planId"])
	}
	plan := s.plans[planID]
	if plan == nil || !strings.EqualFold(q.vals["scopeIdentifier"], plan.scope) || !strings.EqualFold(q.vals["hubName"], plan.hub) {
		return notFound(exPlanNotFound, "Orchestration plan %s was not found in scope %s, hub %s.", q.vals["planId"], q.vals["scopeIdentifier"], q.vals["hubName"])
	}
	c := &planCtx{q: q, plan: plan, job: job}
	switch q.loc.ResourceName {
	case "events":
		return s.planEvents(c)
	case "timelines":
		return s.planTimelines(c)
	case "records":
		return s.planRecords(c)
	case "feed":
		return s.planFeed(c)
	case "logs":
		return s.planLogs(c)
	case "attachments":
		return s.planAttachments(c)
	}
	return notFound(exResourceNotFound, "No handler for %s.", q.loc.ResourceName)
}

func (c *planCtx) timeline() (*timelineState, *apiError) {
	raw := c.q.vals["timelineId"]
	u, err := uuid.Parse(raw)
	if err != nil {
		return nil, badRequest("The timeline id '%s' is not a GUID.", raw)
	}
	tl := c.plan.timelines[u.String()]
	if tl == nil {
		return nil, notFound(exTimelineNotFound, "Timeline %s was not found in plan %s.", raw, c.plan.id)
	}
	return tl, nil
}

// timelineAndRecord is the timeline and the record id of a route below
// …/timelines/{timelineId}/records/{recordId}/.
func (c *planCtx) timelineAndRecord() (*timelineState, uuid.UUID, *apiError) {
	tl, err := c.timeline()
	if err != nil {
		return nil, uuid.Nil, err
	}
	raw := c.q.vals["recordId"]
	id, perr := uuid.Parse(raw)
	if perr != nil {
		return nil, uuid.Nil, badRequest("The record id '%s' is not a GUID.", raw)
	}
	return tl, id, nil
}

func (s *Server) timelineJSON(c *planCtx, tl *timelineState, records bool) map[string]any {
	out := map[string]any{
		"id": tl.id, "changeId": tl.changeID,
		"location": s.orgURL + "/" + c.plan.scope + "/_apis/distributedtask/hubs/" + c.plan.hub + "/plans/" + c.plan.id + "/timelines/" + tl.id,
	}
	if records {
		var recs []map[string]json.RawMessage
		for _, id := range tl.order {
			recs = append(recs, tl.records[id].fields)
		}
		if recs == nil {
			recs = []map[string]json.RawMessage{}
		}
		out["records"] = recs
	}
	return out
}

// planTimelines: GET list, GET one (?includeRecords=true), POST create.
func (s *Server) planTimelines(c *planCtx) *apiError {
	q := c.q
	_, hasID := q.vals["timelineId"]
	switch {
	case q.r.Method == http.MethodGet && hasID:
		tl, err := c.timeline()
		if err != nil {
			return err
		}
		q.reply(http.StatusOK, s.timelineJSON(c, tl, strings.EqualFold(queryValue(q.r, "includeRecords"), "true")))
		return nil
	case q.r.Method == http.MethodGet:
		var list []map[string]any
		ids := make([]string, 0, len(c.plan.timelines))
		for id := range c.plan.timelines {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			list = append(list, s.timelineJSON(c, c.plan.timelines[id], false))
		}
		q.reply(http.StatusOK, collection(list))
		return nil
	case q.r.Method == http.MethodPost && !hasID:
		var in struct {
			ID *string `json:"id"`
		}
		if err := decodeJSON(q, &in); err != nil {
			return err
		}
		id := newGUID()
		if in.ID != nil && *in.ID != "" {
			u, err := uuid.Parse(*in.ID)
			if err != nil {
				return badRequest("The timeline id '%s' is not a GUID.", *in.ID)
			}
			id = u.String()
		}
		if c.plan.timelines[id] != nil {
			// JobServerQueue catches TimelineExistsException and takes the
			// timeline as created (a retried create whose answer was lost).
			return errf(http.StatusConflict, exTimelineExists, "Timeline %s already exists in plan %s.", id, c.plan.id)
		}
		tl := newTimeline(id)
		tl.detail = true
		c.plan.timelines[id] = tl
		q.reply(http.StatusOK, s.timelineJSON(c, tl, false))
		return nil
	}
	return methodNotAllowed(q.r)
}

// planRecords: PATCH merges records; GET lists them.
func (s *Server) planRecords(c *planCtx) *apiError {
	q := c.q
	tl, err := c.timeline()
	if err != nil {
		return err
	}
	switch q.r.Method {
	case http.MethodGet:
		var recs []map[string]json.RawMessage
		for _, id := range tl.order {
			recs = append(recs, tl.records[id].fields)
		}
		q.reply(http.StatusOK, collection(recs))
		return nil
	case http.MethodPatch:
	default:
		return methodNotAllowed(q.r)
	}
	var in struct {
		Count *int              `json:"count"`
		Value []json.RawMessage `json:"value"`
	}
	if err := decodeJSON(q, &in); err != nil {
		return err
	}
	if in.Value == nil {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: records")
	}
	res, merr := tl.mergeRecords(in.Value, func(id int) bool { return c.plan.logs[id] != nil }, q.now)
	if merr != nil {
		return badRequest("The timeline records could not be updated: %v.", merr)
	}
	for _, v := range res.violations {
		s.violation(c.job, "%s", v)
	}
	out := make([]map[string]json.RawMessage, 0, len(res.records))
	for _, rec := range res.records {
		out = append(out, rec.fields)
		r := rec.decode()
		kind := EventRecordUpdated
		if tl.detail {
			kind = EventDetailRecordUpdated
		}
		s.emit(Event{Kind: kind, JobID: c.job.id, RequestID: c.job.requestID, TimelineID: tl.id, Record: &r})
	}
	q.reply(http.StatusOK, collection(out))
	return nil
}

// feedBody is TimelineRecordFeedLinesWrapper.
type feedBody struct {
	Count     *int     `json:"count"`
	Value     []string `json:"value"`
	StepID    *string  `json:"stepId"`
	StartLine *int64   `json:"startLine"`
}

// planFeed stores live console lines per step, ordered by line number.
func (s *Server) planFeed(c *planCtx) *apiError {
	q := c.q
	if q.r.Method != http.MethodPost {
		return methodNotAllowed(q.r)
	}
	tl, recID, err := c.timelineAndRecord()
	if err != nil {
		return err
	}
	var in feedBody
	if err := decodeJSON(q, &in); err != nil {
		return err
	}
	if in.Value == nil {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: lines")
	}
	if tl.records[recID.String()] == nil {
		s.violation(c.job, "feed lines posted to record %s, which is not in timeline %s", recID, tl.id)
	}
	step := recID.String()
	if in.StepID == nil || *in.StepID == "" {
		s.violation(c.job, "feed lines posted without stepId (the official agent names the step record)")
	} else {
		u, err := uuid.Parse(*in.StepID)
		if err != nil {
			return badRequest("The step id '%s' is not a GUID.", *in.StepID)
		}
		step = u.String()
	}
	if in.Count != nil && *in.Count != len(in.Value) {
		s.violation(c.job, "feed batch says count %d but carries %d lines", *in.Count, len(in.Value))
	}
	f := c.plan.feeds[step]
	if f == nil {
		f = &feedState{seen: map[string]bool{}}
		c.plan.feeds[step] = f
	}
	// The feed is a live view: batches are shown in arrival order. Line
	// numbers are not unique (the agent's PagingLogger gives an
	// ##[endgroup] line and the next one the same number), so only an exact
	// retry — same startLine, same lines — is taken once.
	var start int64
	if in.StartLine != nil {
		start = *in.StartLine
	}
	key := strconv.FormatInt(start, 10) + "\x00" + strings.Join(in.Value, "\n")
	if !f.seen[key] && len(in.Value) > 0 {
		f.seen[key] = true
		pos := int64(len(f.lines)) + 1
		f.lines = append(f.lines, in.Value...)
		s.emit(Event{Kind: EventFeedLines, JobID: c.job.id, RequestID: c.job.requestID, StepID: step, StartLine: pos, Lines: in.Value})
	}
	q.noContent()
	return nil
}

func (f *feedState) ordered() []string { return append([]string(nil), f.lines...) }

func (s *Server) logJSON(c *planCtx, l *logState) taskagent.TaskLog {
	loc := s.orgURL + "/" + c.plan.scope + "/_apis/distributedtask/hubs/" + c.plan.hub + "/plans/" + c.plan.id + "/logs/" + strconv.Itoa(l.id)
	lines := l.lines
	return taskagent.TaskLog{
		Id: ptr(l.id), Location: ptr(loc), Path: ptr(l.path), LineCount: &lines,
		CreatedOn: &azuredevops.Time{Time: l.created}, LastChangedOn: &azuredevops.Time{Time: l.changed},
		IndexLocation: ptr(loc + "/index"),
	}
}

// planLogs: POST create ({"path"}), POST append (octet-stream), GET.
func (s *Server) planLogs(c *planCtx) *apiError {
	q := c.q
	raw, hasID := q.vals["logId"]
	if !hasID {
		switch q.r.Method {
		case http.MethodPost:
			var in wire.TaskLogCreate
			if err := decodeJSON(q, &in); err != nil {
				return err
			}
			if in.Path == "" {
				return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: log.Path")
			}
			l := &logState{id: c.plan.nextLogID, path: in.Path, created: q.now.UTC(), changed: q.now.UTC()}
			c.plan.nextLogID++
			c.plan.logs[l.id] = l
			q.reply(http.StatusOK, s.logJSON(c, l))
			return nil
		case http.MethodGet:
			var list []taskagent.TaskLog
			for id := 1; id < c.plan.nextLogID; id++ {
				list = append(list, s.logJSON(c, c.plan.logs[id]))
			}
			q.reply(http.StatusOK, collection(list))
			return nil
		}
		return methodNotAllowed(q.r)
	}
	id, err := strconv.Atoi(raw)
	if err != nil {
		return badRequest("The log id '%s' is not a valid integer.", raw)
	}
	l := c.plan.logs[id]
	if l == nil {
		return notFound(exLogNotFound, "Log %d was not found in plan %s.", id, c.plan.id)
	}
	switch q.r.Method {
	case http.MethodPost:
		if ct := strings.ToLower(q.r.Header.Get("Content-Type")); strings.Contains(ct, "json") {
			s.violation(c.job, "log %d content was sent as %s; the official agent uploads application/octet-stream", id, ct)
		}
		l.appendContent(q.body)
		l.changed = q.now.UTC()
		s.emit(Event{Kind: EventLogAppended, JobID: c.job.id, RequestID: c.job.requestID, LogID: id, Bytes: len(q.body)})
		q.reply(http.StatusOK, s.logJSON(c, l))
		return nil
	case http.MethodGet:
		q.reply(http.StatusOK, collection(splitLines(l.content.Bytes())))
		return nil
	}
	return methodNotAllowed(q.r)
}

func (l *logState) appendContent(b []byte) {
	if len(b) == 0 {
		return
	}
	l.content.Write(b)
	n := uint64(bytes.Count(b, []byte{'\n'}))
	if l.partial {
		// The first newline ends a line already counted.
		if n > 0 {
			n--
			l.partial = false
		}
	}
	if b[len(b)-1] != '\n' && !l.partial {
		n++
		l.partial = true
	}
	l.lines += n
}

// splitLines splits log content into lines without their terminators.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	s = strings.TrimSuffix(s, "\n")
	return strings.Split(s, "\n")
}

// planEvents: POST a plan event. JobCompleted ends the job (worker.md §7.6).
func (s *Server) planEvents(c *planCtx) *apiError {
	q := c.q
	if q.r.Method != http.MethodPost {
		return methodNotAllowed(q.r)
	}
	var ev wire.JobEvent
	if err := decodeJSON(q, &ev); err != nil {
		return err
	}
	if ev.Name == "" {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: eventData.Name")
	}
	jid, err := uuid.Parse(ev.JobID)
	if err != nil {
		return badRequest("The event's jobId '%s' is not a GUID.", ev.JobID)
	}
	var job *jobState
	for _, j := range c.plan.jobs {
		if j.id == jid.String() {
			job = j
		}
	}
	if job == nil {
		return notFound("TaskOrchestrationJobNotFoundException", "Job %s was not found in plan %s.", ev.JobID, c.plan.id)
	}
	if !strings.EqualFold(ev.Name, "JobCompleted") {
		job.events = append(job.events, ev)
		q.noContent()
		return nil
	}
	if ev.RequestID != job.requestID {
		return badRequest("The event's requestId %d does not match job %s's request %d.", ev.RequestID, job.id, job.requestID)
	}
	res, ok := taskResult(ev.Result)
	if !ok {
		return badRequest("The event's result '%s' is not a valid TaskResult.", ev.Result)
	}
	ev.Result = res
	job.events = append(job.events, ev)
	if job.state.terminal() {
		s.violation(job, "JobCompleted raised again for job %s, which already ended (%s)", job.id, job.result)
		q.noContent()
		return nil
	}
	if job.state == JobQueued || job.state == JobAssigned {
		s.violation(job, "JobCompleted raised for job %s whose request was never renewed (the listener renews before the worker starts, listener.md §5.2)", job.id)
	}
	if c.plan.version < 8 {
		s.violation(job, "JobCompleted raised for plan version %d; before version 8 the listener finishes the job request (listener.md §5.3)", c.plan.version)
	}
	s.checkCompletion(job)
	s.finishJobLocked(job, q.now, JobCompleted, res, "JobCompleted event")
	q.noContent()
	return nil
}

// checkCompletion records what the worker should have done before a job is
// reported complete: the Job record and every record below it completed.
func (s *Server) checkCompletion(j *jobState) {
	tl := j.plan.timelines[j.msg.Timeline.ID]
	if tl == nil {
		return
	}
	for _, rec := range tl.subtree(j.id) {
		if st := rec.str("state"); st != "completed" {
			what := "timeline record " + rec.name()
			if rec.str("id") == j.id {
				what = "the Job record"
			}
			s.violation(j, "job %s was reported complete while %s was %s", j.id, what, st)
		}
	}
}

// planAttachments: PUT …/attachments/{type}/{name} stores; GET lists a type.
func (s *Server) planAttachments(c *planCtx) *apiError {
	q := c.q
	tl, rec, err := c.timelineAndRecord()
	if err != nil {
		return err
	}
	typ, name := q.vals["type"], q.vals["name"]
	switch q.r.Method {
	case http.MethodPut:
		if typ == "" || name == "" {
			return methodNotAllowed(q.r)
		}
		if tl.records[rec.String()] == nil {
			s.violation(c.job, "attachment %s/%s for record %s, which is not in timeline %s", typ, name, rec, tl.id)
		}
		a := &Attachment{TimelineID: tl.id, RecordID: rec.String(), Type: typ, Name: name, Data: append([]byte(nil), q.body...), Created: q.now.UTC()}
		s.attach(c.plan, a)
		q.reply(http.StatusOK, attachmentJSON(s, c, a))
		return nil
	case http.MethodGet:
		var list []map[string]any
		for _, a := range s.attachments(c.plan) {
			if a.TimelineID == tl.id && a.RecordID == rec.String() && (typ == "" || strings.EqualFold(a.Type, typ)) && (name == "" || a.Name == name) {
				list = append(list, attachmentJSON(s, c, a))
			}
		}
		q.reply(http.StatusOK, collection(list))
		return nil
	}
	return methodNotAllowed(q.r)
}

func attachmentJSON(s *Server, c *planCtx, a *Attachment) map[string]any {
	href := fmt.Sprintf("%s/%s/_apis/distributedtask/hubs/%s/plans/%s/timelines/%s/records/%s/attachments/%s/%s",
		s.orgURL, c.plan.scope, c.plan.hub, c.plan.id, a.TimelineID, a.RecordID, a.Type, a.Name)
	return map[string]any{
		"type": a.Type, "name": a.Name, "timelineId": a.TimelineID, "recordId": a.RecordID,
		"createdOn": a.Created, "lastChangedOn": a.Created,
		"_links": map[string]any{"self": map[string]string{"href": href}},
	}
}

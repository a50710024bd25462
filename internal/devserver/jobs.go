package devserver

import (
	"context"
	"encoding/json"
	"errors"
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

// JobState is where a job request is in its life.
type JobState string

const (
	JobQueued    JobState = "queued"    // waiting for a free agent
	JobAssigned  JobState = "assigned"  // message queued to an agent, not yet renewed
	JobRunning   JobState = "running"   // the agent renewed the lock at least once
	JobCompleted JobState = "completed" // finished with a result (including canceled)
	JobAbandoned JobState = "abandoned" // the lock lapsed or the agent vanished
)

func (st JobState) terminal() bool { return st == JobCompleted || st == JobAbandoned }

// DefaultPlanVersion is the plan version given to jobs that do not set one:
// new enough (≥ 8) that the worker reports completion with the JobCompleted
// plan event (worker.md §7.6).
const DefaultPlanVersion = 14

// ErrJobAbandoned is returned by Job.Wait for a job the service gave up on.
var ErrJobAbandoned = errors.New("job abandoned")

// QueueOptions control how a job is queued.
type QueueOptions struct {
	Pool string // pool name; default the first pool
	// Timeout is the job timeout the service enforces: when it passes, a
	// JobCancellation with CancelTimeout is sent. 0 means none.
	Timeout       time.Duration
	CancelTimeout time.Duration // default 5m (cancelTimeoutInMinutes)
	// Bind, when set, makes the message from the job's binding (token and
	// request id), e.g. with the pipeline compiler's Job.Bind.
	Bind func(Binding) (*wire.JobRequestMessage, error)
}

// planState is an orchestration plan: the jobs of one run share it, its
// timelines and its logs.
type planState struct {
	id        string
	scope     string
	hub       string
	version   int
	timelines map[string]*timelineState
	mainTL    string
	logs      map[int]*logState
	nextLogID int
	feeds     map[string]*feedState // by step id
	atts      []*Attachment
	jobs      []*jobState
}

type jobState struct {
	id        string // jobId, lower case
	requestID int64
	pool      *poolState
	plan      *planState
	msg       *wire.JobRequestMessage
	token     string
	tokenRef  *issuedToken

	state       JobState
	result      string
	agent       *agentState
	session     *sessionState
	message     *queuedMessage
	queueTime   time.Time
	assignTime  time.Time
	receiveTime time.Time
	startTime   time.Time
	finishTime  time.Time
	lockedUntil time.Time
	firstRenew  time.Time // deadline for the first renewal
	renewals    int

	timeoutAt      time.Time
	cancelTimeout  time.Duration
	cancelSent     bool
	cancelDeadline time.Time

	done       chan struct{}
	violations []string
	events     []wire.JobEvent
	why        string // why it ended, for abandoned jobs
}

// Job is a handle on a queued job.
type Job struct {
	s *Server
	j *jobState
}

// Binding is what the service fixes when it queues a job and a compiler
// cannot know in advance (see QueueOptions.Bind).
type Binding struct {
	CollectionURL string // the organization URL with a trailing slash
	AccessToken   string // the job's access token (a secret)
	RequestID     int64  // the job request id
	ServerName    string // the organization name
}

// QueueJob queues a job message for a pool. Empty ids are filled (jobId,
// plan and timeline ids); the request id, the SystemVssConnection endpoint
// with a fresh per-job access token, the secret system.accessToken, a mask
// hint for the token and the URL-bearing system variables are always set by
// the emulator, as the service does. Jobs naming the plan id of an earlier
// job join its plan and timeline. With opts.Bind, msg may be nil: the
// message is then what Bind returns for the job's token and request id.
func (s *Server) QueueJob(msg *wire.JobRequestMessage, opts QueueOptions) (*Job, error) {
	now := time.Now()
	s.mu.Lock()
	requestID := s.nextRequestID
	s.nextRequestID++
	s.mu.Unlock()
	tok, err := s.mint(map[string]any{
		"nameid": s.buildServiceID,
		"scp":    "app_token",
		"aui":    newGUID(),
		"rid":    requestID,
	}, now, 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("queue job: sign access token: %w", err)
	}
	if opts.Bind != nil {
		if msg, err = opts.Bind(Binding{CollectionURL: s.orgURL + "/", AccessToken: tok, RequestID: requestID, ServerName: s.org}); err != nil {
			return nil, fmt.Errorf("queue job: %w", err)
		}
	}
	if msg == nil {
		return nil, errors.New("queue job: nil message")
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("queue job %q: encode message: %w", msg.JobDisplayName, err)
	}
	m := new(wire.JobRequestMessage)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("queue job %q: copy message: %w", msg.JobDisplayName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return nil, errors.New("queue job: the emulator is closed")
	default:
	}
	pool := s.pools[0]
	if opts.Pool != "" {
		pool = nil
		for _, p := range s.pools {
			if strings.EqualFold(p.name, opts.Pool) {
				pool = p
			}
		}
		if pool == nil {
			return nil, fmt.Errorf("queue job %q: no pool %q in the emulator (pools: %s)", m.JobDisplayName, opts.Pool, s.poolNames())
		}
	}
	if m.JobID == "" {
		m.JobID = newGUID()
	}
	if _, err := uuid.Parse(m.JobID); err != nil {
		return nil, fmt.Errorf("queue job %q: jobId %q is not a GUID", m.JobDisplayName, m.JobID)
	}
	m.JobID = strings.ToLower(m.JobID)
	if s.jobs[m.JobID] != nil {
		return nil, fmt.Errorf("queue job %q: job id %s is already queued", m.JobDisplayName, m.JobID)
	}
	m.MessageType = wire.MessageJobRequest
	if m.JobDisplayName == "" {
		m.JobDisplayName = "Job"
	}
	if m.JobName == "" {
		m.JobName = "__default"
	}
	if m.LockedUntil == "" {
		// What the service sends (testdata/jobmessages): the lock is the
		// job request's business, not the message's.
		m.LockedUntil = "0001-01-01T00:00:00"
	}
	plan, err := s.planFor(m)
	if err != nil {
		return nil, fmt.Errorf("queue job %q: %w", m.JobDisplayName, err)
	}
	j := &jobState{
		id: m.JobID, requestID: requestID, pool: pool, plan: plan, msg: m,
		state: JobQueued, queueTime: now.UTC(), done: make(chan struct{}),
		cancelTimeout: opts.CancelTimeout, token: tok,
		tokenRef: &issuedToken{kind: kindJob, jobID: m.JobID, planID: plan.id, expires: now.Add(24 * time.Hour)},
	}
	if j.cancelTimeout <= 0 {
		j.cancelTimeout = 5 * time.Minute
	}
	if opts.Timeout > 0 {
		j.timeoutAt = now.Add(opts.Timeout)
	}
	m.RequestID = requestID
	s.tokens[tokenKey(tok)] = j.tokenRef
	s.fillMessage(j)
	s.builds.register(m, now)

	tl := plan.timelines[m.Timeline.ID]
	tl.addJobRecord(j, now)
	plan.jobs = append(plan.jobs, j)
	s.jobs[j.id] = j
	s.jobsByRequest[j.requestID] = j
	pool.queue = append(pool.queue, j)
	s.emit(Event{Kind: EventJobQueued, JobID: j.id, RequestID: j.requestID, State: j.state})
	s.assignLocked(now)
	return &Job{s: s, j: j}, nil
}

func (s *Server) poolNames() string {
	var names []string
	for _, p := range s.pools {
		names = append(names, p.name)
	}
	return strings.Join(names, ", ")
}

// planFor finds or creates the plan (and timeline) a message names.
func (s *Server) planFor(m *wire.JobRequestMessage) (*planState, error) {
	if m.Plan.PlanID == "" {
		m.Plan.PlanID = newGUID()
	}
	if _, err := uuid.Parse(m.Plan.PlanID); err != nil {
		return nil, fmt.Errorf("plan id %q is not a GUID", m.Plan.PlanID)
	}
	m.Plan.PlanID = strings.ToLower(m.Plan.PlanID)
	if p := s.plans[m.Plan.PlanID]; p != nil {
		if m.Plan.ScopeIdentifier == "" {
			m.Plan.ScopeIdentifier = p.scope
		}
		if m.Plan.PlanType == "" {
			m.Plan.PlanType = p.hub
		}
		if m.Plan.Version == 0 {
			m.Plan.Version = p.version
		}
		if !strings.EqualFold(m.Plan.ScopeIdentifier, p.scope) || !strings.EqualFold(m.Plan.PlanType, p.hub) || m.Plan.Version != p.version {
			return nil, fmt.Errorf("plan %s is already in use with another scope, type or version", p.id)
		}
		if m.Timeline.ID == "" {
			m.Timeline.ID = p.mainTL
		}
		m.Timeline.ID = strings.ToLower(m.Timeline.ID)
		if p.timelines[m.Timeline.ID] == nil {
			p.timelines[m.Timeline.ID] = newTimeline(m.Timeline.ID)
		}
		m.Plan.ScopeIdentifier = p.scope
		return p, nil
	}
	if m.Plan.ScopeIdentifier == "" {
		m.Plan.ScopeIdentifier = s.projectID
	}
	if _, err := uuid.Parse(m.Plan.ScopeIdentifier); err != nil {
		return nil, fmt.Errorf("scope identifier %q is not a GUID", m.Plan.ScopeIdentifier)
	}
	m.Plan.ScopeIdentifier = strings.ToLower(m.Plan.ScopeIdentifier)
	if m.Plan.PlanType == "" {
		m.Plan.PlanType = "Build"
	}
	if m.Plan.Version == 0 {
		m.Plan.Version = DefaultPlanVersion
	}
	if m.Timeline.ID == "" {
		// A build plan's timeline shares the plan's id (the captured message
		// in testdata/jobmessages).
		m.Timeline.ID = m.Plan.PlanID
	}
	if _, err := uuid.Parse(m.Timeline.ID); err != nil {
		return nil, fmt.Errorf("timeline id %q is not a GUID", m.Timeline.ID)
	}
	m.Timeline.ID = strings.ToLower(m.Timeline.ID)
	p := &planState{
		id: m.Plan.PlanID, scope: m.Plan.ScopeIdentifier, hub: m.Plan.PlanType, version: m.Plan.Version,
		timelines: map[string]*timelineState{}, mainTL: m.Timeline.ID,
		logs: map[int]*logState{}, nextLogID: 1, feeds: map[string]*feedState{},
	}
	p.timelines[m.Timeline.ID] = newTimeline(m.Timeline.ID)
	s.plans[p.id] = p
	return p, nil
}

// fillMessage sets what the service puts into every job message: the
// SystemVssConnection endpoint with the job's token, system.accessToken, the
// URL-bearing and id-bearing system variables (worker.md §1.2, §1.6).
func (s *Server) fillMessage(j *jobState) {
	m := j.msg
	base := s.orgURL + "/"
	ep := wire.ServiceEndpoint{
		ID: "00000000-0000-0000-0000-000000000000", Name: wire.SystemConnectionName, URL: base,
		Authorization: wire.EndpointAuth{Scheme: "OAuth", Parameters: map[string]string{"AccessToken": j.token}},
		Data:          map[string]string{"ServerId": s.instanceID, "ServerName": s.org},
		IsReady:       true,
	}
	if sc := m.SystemConnection(); sc != nil {
		*sc = ep
	} else {
		m.Resources.Endpoints = append(m.Resources.Endpoints, ep)
	}
	if m.Variables == nil {
		m.Variables = map[string]wire.VariableValue{}
	}
	// As in the captured real message (testdata/jobmessages): system
	// variables are read-only, the access token is secret and not read-only.
	set := func(name, value string, secret bool) {
		for k := range m.Variables {
			if strings.EqualFold(k, name) && k != name {
				delete(m.Variables, k)
			}
		}
		m.Variables[name] = wire.VariableValue{Value: value, IsSecret: secret, IsReadonly: !secret}
	}
	setDefault := func(name, value string) {
		for k := range m.Variables {
			if strings.EqualFold(k, name) {
				return
			}
		}
		m.Variables[name] = wire.VariableValue{Value: value, IsReadonly: true}
	}
	hasHint := false
	for _, h := range m.Mask {
		if h.Value == j.token {
			hasHint = true
		}
	}
	if !hasHint {
		// The service sends the token as a regex mask hint too (mask[] of the
		// captured message in testdata/jobmessages).
		m.Mask = append(m.Mask, wire.MaskHint{Type: "regex", Value: j.token})
	}
	set("system.accessToken", j.token, true)
	set("system.collectionUri", base, false)
	set("system.teamFoundationCollectionUri", base, false)
	set("system.taskDefinitionsUri", base, false)
	set("system.collectionId", s.instanceID, false)
	set("system.teamProjectId", m.Plan.ScopeIdentifier, false)
	set("system.planId", m.Plan.PlanID, false)
	set("system.timelineId", m.Timeline.ID, false)
	set("system.jobId", m.JobID, false)
	setDefault("system", "build")
	setDefault("system.hostType", "build")
	setDefault("system.serverType", "Hosted")
	setDefault("system.culture", "en-US")
	setDefault("system.jobName", m.JobName)
	setDefault("system.jobDisplayName", m.JobDisplayName)
	setDefault("system.jobAttempt", "1")
	setDefault("system.teamProject", "emulator")
	setDefault("system.debug", "false")
}

// assignLocked hands queued jobs to free agents: enabled, online (with a
// session) and not running a job. Pools are served oldest request first.
func (s *Server) assignLocked(now time.Time) {
	for _, pool := range s.pools {
		for len(pool.queue) > 0 {
			j := pool.queue[0]
			var agent *agentState
			for _, a := range s.sortedAgents(pool) {
				if a.enabled && a.session != nil && a.job == nil {
					agent = a
					break
				}
			}
			if agent == nil {
				break
			}
			pool.queue = pool.queue[1:]
			j.state = JobAssigned
			j.agent, j.session = agent, agent.session
			j.assignTime = now.UTC()
			j.firstRenew = now.Add(s.opts.FirstRenewWindow)
			agent.job = j
			body, err := json.Marshal(j.msg)
			if err == nil {
				j.message, err = s.enqueueLocked(agent.session, wire.MessageJobRequest, body, InjectEncrypted, j)
			}
			if err != nil {
				s.bugs = append(s.bugs, fmt.Sprintf("assign job %s: %v", j.id, err))
				s.finishJobLocked(j, now, JobAbandoned, string(taskagent.TaskResultValues.Abandoned), "the job message could not be encoded")
				continue
			}
			s.emit(Event{Kind: EventJobAssigned, JobID: j.id, RequestID: j.requestID, AgentID: agent.id, State: j.state})
		}
	}
}

// requeueLocked puts a job that was assigned but never started back into
// its pool's queue, in request order.
func (s *Server) requeueLocked(j *jobState) {
	if j.agent != nil && j.agent.job == j {
		j.agent.job = nil
	}
	if j.session != nil && j.message != nil {
		dropMessage(j.session, j.message)
	}
	j.state, j.agent, j.session, j.message = JobQueued, nil, nil, nil
	j.assignTime, j.receiveTime, j.firstRenew = time.Time{}, time.Time{}, time.Time{}
	q := append(j.pool.queue, j)
	sort.SliceStable(q, func(a, b int) bool { return q[a].requestID < q[b].requestID })
	j.pool.queue = q
	s.emit(Event{Kind: EventJobQueued, JobID: j.id, RequestID: j.requestID, State: j.state})
}

func dropMessage(ss *sessionState, m *queuedMessage) {
	for i, x := range ss.queue {
		if x == m {
			ss.queue = append(ss.queue[:i], ss.queue[i+1:]...)
			return
		}
	}
}

// finishJobLocked ends a job: result recorded, token retired after the
// grace period, agent freed, waiters released.
func (s *Server) finishJobLocked(j *jobState, now time.Time, state JobState, result, why string) {
	if j.state.terminal() {
		return
	}
	if j.state == JobQueued {
		for i, x := range j.pool.queue {
			if x == j {
				j.pool.queue = append(j.pool.queue[:i], j.pool.queue[i+1:]...)
				break
			}
		}
	}
	if j.message != nil && j.message.delivered == 0 && j.session != nil {
		dropMessage(j.session, j.message)
	}
	j.state, j.result, j.why = state, result, why
	j.finishTime = now.UTC()
	if exp := now.Add(s.opts.JobTokenGrace); exp.Before(j.tokenRef.expires) {
		j.tokenRef.expires = exp
	}
	if a := j.agent; a != nil && a.job == j {
		a.job = nil
		a.lastCompleted = j
	}
	close(j.done)
	s.log.Debug("job finished", "job", j.id, "state", state, "result", result, "why", why)
	s.emit(Event{Kind: EventJobCompleted, JobID: j.id, RequestID: j.requestID, State: state, Result: result})
	s.assignLocked(now)
}

// CancelJob cancels a job as the service does: a queued job is canceled at
// once; an assigned or running one gets a JobCancellation message with the
// given timeout (default 5m), and is forced to canceled if the agent has not
// finished it by timeout + Options.CancelGrace.
func (s *Server) CancelJob(jobID string, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[strings.ToLower(jobID)]
	if j == nil {
		return fmt.Errorf("cancel job %s: no such job", jobID)
	}
	if timeout <= 0 {
		timeout = j.cancelTimeout
	}
	return s.cancelLocked(j, time.Now(), timeout)
}

func (s *Server) cancelLocked(j *jobState, now time.Time, timeout time.Duration) error {
	switch j.state {
	case JobCompleted, JobAbandoned:
		return fmt.Errorf("cancel job %s: it already ended (%s)", j.id, j.result)
	case JobQueued:
		s.finishJobLocked(j, now, JobCompleted, string(taskagent.TaskResultValues.Canceled), "canceled before an agent took it")
		return nil
	}
	j.cancelSent = true
	j.cancelDeadline = now.Add(timeout + s.opts.CancelGrace)
	ss := j.session
	if ss == nil || ss.ended {
		ss = j.agent.session
	}
	if ss == nil {
		return nil // no session to tell: the cancel deadline forces the result
	}
	body, _ := json.Marshal(wire.JobCancelMessage{JobID: j.id, Timeout: timeSpan(timeout)})
	if _, err := s.enqueueLocked(ss, wire.MessageJobCancellation, body, InjectEncrypted, nil); err != nil {
		return fmt.Errorf("cancel job %s: %w", j.id, err)
	}
	return nil
}

// timeSpan renders a .NET TimeSpan the way Newtonsoft does: [d.]hh:mm:ss.
func timeSpan(d time.Duration) string {
	d = d.Round(time.Second)
	days := int(d / (24 * time.Hour))
	d -= time.Duration(days) * 24 * time.Hour
	s := fmt.Sprintf("%02d:%02d:%02d", int(d/time.Hour), int(d/time.Minute)%60, int(d/time.Second)%60)
	if days > 0 {
		s = strconv.Itoa(days) + "." + s
	}
	return s
}

// reaper enforces the deadlines: first renewal, lock expiry, cancel and job
// timeouts, idle sessions; and forgets expired tokens.
func (s *Server) reaper() {
	tick := min(s.opts.FirstRenewWindow, s.opts.LockDuration, s.opts.SessionIdle, s.opts.CancelGrace) / 8
	tick = max(min(tick, time.Second), 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
			s.reap(time.Now())
		}
	}
}

func (s *Server) reap(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		switch {
		case j.state.terminal():
			continue
		case j.cancelSent && now.After(j.cancelDeadline):
			s.violation(j, "job %s was not finished by the agent within its cancel timeout", j.id)
			s.finishJobLocked(j, now, JobCompleted, string(taskagent.TaskResultValues.Canceled), "cancel timeout passed")
		case j.state == JobAssigned && now.After(j.firstRenew):
			s.finishJobLocked(j, now, JobAbandoned, string(taskagent.TaskResultValues.Abandoned), "the agent did not renew the job request in time")
		case j.state == JobRunning && now.After(j.lockedUntil):
			s.finishJobLocked(j, now, JobAbandoned, string(taskagent.TaskResultValues.Abandoned), "the job request's lock expired")
		case !j.timeoutAt.IsZero() && now.After(j.timeoutAt) && !j.cancelSent:
			s.cancelLocked(j, now, j.cancelTimeout)
		}
	}
	for _, ss := range s.sessions {
		if ss.polls == 0 && now.Sub(ss.lastPoll) > s.opts.SessionIdle {
			s.endSessionLocked(ss, now, "idle")
		}
	}
	for k, it := range s.tokens {
		if now.Sub(it.expires) > time.Hour {
			delete(s.tokens, k)
		}
	}
	for k, exp := range s.seenJTI {
		if now.After(exp) {
			delete(s.seenJTI, k)
		}
	}
}

// jobRequestJSON renders the TaskAgentJobRequest the service returns.
func (s *Server) jobRequestJSON(j *jobState) taskagent.TaskAgentJobRequest {
	t := func(v time.Time) *azuredevops.Time {
		if v.IsZero() {
			return nil
		}
		return &azuredevops.Time{Time: v.UTC()}
	}
	planID, _ := uuid.Parse(j.plan.id)
	jobID, _ := uuid.Parse(j.id)
	scope, _ := uuid.Parse(j.plan.scope)
	host, _ := uuid.Parse(s.instanceID)
	owner, _ := uuid.Parse(serviceOwnerTFS)
	out := taskagent.TaskAgentJobRequest{
		RequestId: ptr(uint64(j.requestID)), QueueTime: t(j.queueTime), AssignTime: t(j.assignTime),
		ReceiveTime: t(j.receiveTime), FinishTime: t(j.finishTime), LockedUntil: t(j.lockedUntil),
		PlanId: &planID, JobId: &jobID, JobName: ptr(j.msg.JobDisplayName), PlanType: ptr(j.plan.hub),
		ScopeId: &scope, PoolId: ptr(j.pool.id), HostId: &host, ServiceOwner: &owner,
		PlanGroup: ptr(j.msg.Plan.PlanGroup), OrchestrationId: ptr(j.plan.id + "." + j.msg.JobName),
		MatchesAllAgentsInPool: ptr(true),
	}
	if j.state == JobAssigned {
		out.LockedUntil = t(j.firstRenew)
	}
	if j.agent != nil {
		out.ReservedAgent = j.agent.ref()
	}
	if j.state.terminal() && j.result != "" {
		r := taskagent.TaskResult(j.result)
		out.Result = &r
	}
	return out
}

// renewBody is TaskAgentJobRequest as the listener sends it to renew or
// finish (listener.md §5.2, §5.3).
type renewBody struct {
	RequestID  *int64            `json:"requestId"`
	FinishTime *azuredevops.Time `json:"finishTime"`
	Result     *string           `json:"result"`
}

// handleJobRequests serves GET …/jobrequests[/{requestId}] and
// PATCH …/jobrequests/{requestId}?lockToken= (renew, or finish when the body
// has a result).
func (s *Server) handleJobRequests(q *request) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.agentForListener(q)
	if err != nil {
		return err
	}
	raw, hasID := q.vals["requestId"]
	if !hasID {
		if q.r.Method != http.MethodGet {
			return methodNotAllowed(q.r)
		}
		var list []taskagent.TaskAgentJobRequest
		agentFilter := queryValue(q.r, "agentId")
		for _, j := range s.sortedJobs() {
			if j.pool != a.pool || (agentFilter != "" && (j.agent == nil || strconv.Itoa(j.agent.id) != agentFilter)) {
				continue
			}
			list = append(list, s.jobRequestJSON(j))
		}
		q.reply(http.StatusOK, collection(list))
		return nil
	}
	id, perr := strconv.ParseInt(raw, 10, 64)
	if perr != nil {
		return badRequest("The request id '%s' is not a valid integer.", raw)
	}
	j := s.jobsByRequest[id]
	if j == nil || j.pool != a.pool {
		return notFound(exJobNotFound, "The job request %d could not be found in pool %d.", id, a.pool.id)
	}
	switch q.r.Method {
	case http.MethodGet:
		q.reply(http.StatusOK, s.jobRequestJSON(j))
		return nil
	case http.MethodPatch:
		return s.renewOrFinish(q, a, j)
	}
	return methodNotAllowed(q.r)
}

func (s *Server) sortedJobs() []*jobState {
	out := make([]*jobState, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].requestID < out[b].requestID })
	return out
}

func (s *Server) renewOrFinish(q *request, a *agentState, j *jobState) *apiError {
	lock := queryValue(q.r, "lockToken")
	if lock == "" {
		s.violation(j, "job request %d was updated without lockToken (the official agent always sends %s)", j.requestID, wire.EmptyLockToken)
	} else if _, err := uuid.Parse(lock); err != nil {
		return badRequest("The value '%s' is not valid for lockToken.", lock)
	}
	var in renewBody
	if err := decodeJSON(q, &in); err != nil {
		return err
	}
	if in.RequestID == nil {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: request.RequestId")
	}
	if *in.RequestID != j.requestID {
		return badRequest("The request id %d in the body does not match the id %d in the URL.", *in.RequestID, j.requestID)
	}
	if j.state.terminal() {
		return notFound(exJobNotFound, "The job request %d has already finished (%s).", j.requestID, j.result)
	}
	if j.agent != a {
		s.violation(j, "agent %d renewed job request %d, which is reserved for another agent", a.id, j.requestID)
		return notFound(exJobNotFound, "The job request %d is not assigned to agent %d.", j.requestID, a.id)
	}
	if in.Result != nil || in.FinishTime != nil {
		if in.Result == nil {
			return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: request.Result")
		}
		res, ok := taskResult(*in.Result)
		if !ok {
			return badRequest("The value '%s' is not a valid TaskResult.", *in.Result)
		}
		if in.FinishTime == nil {
			s.violation(j, "job request %d was finished without finishTime", j.requestID)
		}
		if j.plan.version >= 8 {
			s.violation(j, "job request %d was finished by the listener, but plan version %d reports completion with the JobCompleted event (listener.md §5.3)", j.requestID, j.plan.version)
		}
		// Not checkCompletion: the listener also finishes jobs whose worker
		// crashed, leaving records open for the service to close.
		s.finishJobLocked(j, q.now, JobCompleted, res, "finished by the agent")
		q.reply(http.StatusOK, s.jobRequestJSON(j))
		return nil
	}
	if j.state == JobAssigned {
		j.state = JobRunning
		j.startTime = q.now.UTC()
		s.emit(Event{Kind: EventJobStarted, JobID: j.id, RequestID: j.requestID, AgentID: a.id, State: j.state})
	}
	j.renewals++
	j.lockedUntil = q.now.Add(s.opts.LockDuration)
	q.reply(http.StatusOK, s.jobRequestJSON(j))
	return nil
}

// taskResult normalises a TaskResult (case-insensitive, as the service's
// enum binding) to its camelCase wire value.
func taskResult(v string) (string, bool) {
	for _, r := range []taskagent.TaskResult{
		taskagent.TaskResultValues.Succeeded, taskagent.TaskResultValues.SucceededWithIssues,
		taskagent.TaskResultValues.Failed, taskagent.TaskResultValues.Canceled,
		taskagent.TaskResultValues.Skipped, taskagent.TaskResultValues.Abandoned,
	} {
		if strings.EqualFold(v, string(r)) {
			return string(r), true
		}
	}
	return "", false
}

// Job returns the handle of a queued job by its id.
func (s *Server) Job(jobID string) *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.jobs[strings.ToLower(jobID)]; j != nil {
		return &Job{s: s, j: j}
	}
	return nil
}

// Jobs lists every job, oldest first.
func (s *Server) Jobs() []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Job
	for _, j := range s.sortedJobs() {
		out = append(out, &Job{s: s, j: j})
	}
	return out
}

// ExpireJobToken makes a job's access token invalid now.
func (s *Server) ExpireJobToken(jobID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[strings.ToLower(jobID)]
	if j == nil {
		return fmt.Errorf("expire token of job %s: no such job", jobID)
	}
	j.tokenRef.expires = time.Now()
	return nil
}

// ID is the job id (also the Job timeline record id).
func (h *Job) ID() string { return h.j.id }

// RequestID is the job request id.
func (h *Job) RequestID() int64 { return h.j.requestID }

// PlanID is the orchestration plan id.
func (h *Job) PlanID() string { return h.j.plan.id }

// TimelineID is the job's timeline id.
func (h *Job) TimelineID() string { return h.j.msg.Timeline.ID }

// Token is the job's access token (a secret: tests grep for it).
func (h *Job) Token() string { return h.j.token }

// Done is closed when the job completes or is abandoned.
func (h *Job) Done() <-chan struct{} { return h.j.done }

// Message returns a copy of the job message as the agent receives it.
func (h *Job) Message() *wire.JobRequestMessage {
	h.s.mu.Lock()
	b, err := json.Marshal(h.j.msg)
	h.s.mu.Unlock()
	var m wire.JobRequestMessage
	if err == nil {
		json.Unmarshal(b, &m)
	}
	return &m
}

// State is where the job is now.
func (h *Job) State() JobState {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.j.state
}

// Result is the job's result ("" until it ends).
func (h *Job) Result() string {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.j.result
}

// Renewals counts the lock renewals received.
func (h *Job) Renewals() int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.j.renewals
}

// AgentID is the agent the job is or was assigned to (0 if none).
func (h *Job) AgentID() int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.j.agent == nil {
		return 0
	}
	return h.j.agent.id
}

// Request returns the job request as the service would serve it.
func (h *Job) Request() taskagent.TaskAgentJobRequest {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.jobRequestJSON(h.j)
}

// Violations lists protocol violations attributed to this job.
func (h *Job) Violations() []string {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return append([]string(nil), h.j.violations...)
}

// Events returns the plan events raised for this job.
func (h *Job) Events() []wire.JobEvent {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return append([]wire.JobEvent(nil), h.j.events...)
}

// Wait blocks until the job ends or ctx is done, and returns the result. An
// abandoned job returns its result ("abandoned") with ErrJobAbandoned.
func (h *Job) Wait(ctx context.Context) (string, error) {
	select {
	case <-h.j.done:
	case <-ctx.Done():
		return "", fmt.Errorf("wait for job %s: %w", h.j.id, ctx.Err())
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.j.state == JobAbandoned {
		return h.j.result, fmt.Errorf("job %s: %w: %s", h.j.id, ErrJobAbandoned, h.j.why)
	}
	return h.j.result, nil
}

package devserver_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

func TestQueueJobFillsTheRealMessage(t *testing.T) {
	// The captured real job message (testdata/jobmessages at the module root).
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "jobmessages", "l1-checkout-cmdline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var in wire.JobRequestMessage
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "real")
	a.openSession()
	job, err := s.QueueJob(&in, devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := a.takeJob()
	base := s.URL() + "/"
	if m.JobID != in.JobID || m.Plan.PlanID != in.Plan.PlanID || m.Timeline.ID != in.Timeline.ID || m.Plan.ScopeIdentifier != in.Plan.ScopeIdentifier {
		t.Fatal("given ids were not kept")
	}
	if m.RequestID != job.RequestID() || m.RequestID == 0 {
		t.Fatalf("requestId %d", m.RequestID)
	}
	sc := m.SystemConnection()
	if sc.URL != base || sc.Authorization.Parameters["AccessToken"] != job.Token() || sc.Authorization.Parameters["AccessToken"] == "access" {
		t.Fatalf("SystemVssConnection not replaced: %+v", sc)
	}
	if len(m.Resources.Endpoints) != 1 {
		t.Fatalf("%d endpoints", len(m.Resources.Endpoints))
	}
	for name, want := range map[string]string{
		"system.collectionUri": base, "system.teamFoundationCollectionUri": base, "system.taskDefinitionsUri": base,
		"system.accessToken": job.Token(), "system.planId": in.Plan.PlanID, "system.jobId": in.JobID,
		"build.buildNumber": in.Variables["build.buildNumber"].Value,
	} {
		if got := m.Variables[name].Value; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if v := m.Variables["system.accessToken"]; !v.IsSecret {
		t.Error("system.accessToken is not secret")
	}
	if len(m.Steps) != len(in.Steps) || len(m.Mask) != len(in.Mask)+1 || m.Mask[len(m.Mask)-1] != (wire.MaskHint{Type: "regex", Value: job.Token()}) {
		t.Errorf("steps or mask hints: %d steps, mask %d", len(m.Steps), len(m.Mask))
	}
	if strings.Contains(string(mustJSON(t, m)), "codedev.ms/alpeck/\"") {
		t.Error("a URL-bearing value still names the captured organization")
	}
	if _, err := s.QueueJob(&in, devserver.QueueOptions{}); err == nil {
		t.Fatal("the same job id was queued twice")
	}
	if _, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{Pool: "nope"}); err == nil {
		t.Fatal("a job was queued for an unknown pool")
	}
}

func TestQueueJobWithBind(t *testing.T) {
	s := startServer(t, devserver.Options{})
	var got devserver.Binding
	job, err := s.QueueJob(nil, devserver.QueueOptions{Bind: func(b devserver.Binding) (*wire.JobRequestMessage, error) {
		got = b
		return simpleJob(0), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != job.Token() || got.RequestID != job.RequestID() || got.CollectionURL != s.URL()+"/" || got.ServerName != s.Org() {
		t.Fatalf("binding %+v", got)
	}
	if m := job.Message(); m.RequestID != got.RequestID || jobToken(m) != got.AccessToken {
		t.Fatal("the bound message does not carry the binding")
	}
	boom := errors.New("boom")
	if _, err := s.QueueJob(nil, devserver.QueueOptions{Bind: func(devserver.Binding) (*wire.JobRequestMessage, error) { return nil, boom }}); !errors.Is(err, boom) {
		t.Fatalf("bind error: %v", err)
	}
	if _, err := s.QueueJob(nil, devserver.QueueOptions{}); err == nil {
		t.Fatal("queued a nil message")
	}
}

func TestRenewAndFinish(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "renewer")
	a.openSession()
	job, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{})
	m := a.takeJob()
	if st := job.State(); st != devserver.JobAssigned {
		t.Fatalf("state before renewal: %s", st)
	}
	before := time.Now()
	r := a.renew(m.RequestID)
	if r.status != 200 {
		t.Fatalf("renew: %s", r)
	}
	var jr taskagent.TaskAgentJobRequest
	decode(t, r, &jr)
	if jr.LockedUntil == nil || jr.LockedUntil.Time.Before(before.Add(10*time.Minute-time.Second)) || jr.LockedUntil.Time.After(time.Now().Add(10*time.Minute+time.Second)) {
		t.Fatalf("lockedUntil %v, want renewal + 10 min", jr.LockedUntil)
	}
	if *jr.RequestId != uint64(m.RequestID) || jr.AssignTime == nil || jr.ReceiveTime == nil || jr.ReservedAgent == nil || *jr.ReservedAgent.Id != a.reg.ID {
		t.Fatalf("job request: %s", r.body)
	}
	a.renew(m.RequestID)
	if job.Renewals() != 2 || job.State() != devserver.JobRunning {
		t.Fatalf("renewals %d state %s", job.Renewals(), job.State())
	}
	if g := a.call("GET", "jobrequests/"+strconv.FormatInt(m.RequestID, 10), "5.1-preview.1", nil); g.status != 200 {
		t.Fatalf("get job request: %s", g)
	}
	wantError(t, a.call("PATCH", "jobrequests/"+strconv.FormatInt(m.RequestID, 10)+"?lockToken="+wire.EmptyLockToken, "5.1-preview.1", map[string]any{"requestId": m.RequestID + 1}), 400, "ArgumentException")
	wantError(t, a.call("PATCH", "jobrequests/"+strconv.FormatInt(m.RequestID, 10)+"?lockToken="+wire.EmptyLockToken, "5.1-preview.1", map[string]any{"requestId": m.RequestID, "result": "bogus"}), 400, "ArgumentException")
	wantError(t, a.call("GET", "jobrequests/9999", "5.1-preview.1", nil), 404, "TaskAgentJobNotFoundException")

	// Plan version 7: the listener finishes the request.
	fin := a.call("PATCH", "jobrequests/"+strconv.FormatInt(m.RequestID, 10)+"?lockToken="+wire.EmptyLockToken, "5.1-preview.1",
		map[string]any{"requestId": m.RequestID, "finishTime": time.Now().UTC(), "result": "Failed"})
	if fin.status != 200 {
		t.Fatalf("finish: %s", fin)
	}
	res, err := job.Wait(waitCtx(t))
	if err != nil || res != "failed" {
		t.Fatalf("result %q %v", res, err)
	}
	if v := job.Violations(); len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
	wantError(t, a.renew(m.RequestID), 404, "TaskAgentJobNotFoundException")

	// Plan version 14: finishing through the request is recorded.
	job2, _ := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	m2 := a.takeJob()
	a.renew(m2.RequestID)
	a.call("PATCH", "jobrequests/"+strconv.FormatInt(m2.RequestID, 10), "5.1-preview.1",
		map[string]any{"requestId": m2.RequestID, "result": "succeeded"})
	job2.Wait(waitCtx(t))
	if v := strings.Join(job2.Violations(), "\n"); !strings.Contains(v, "JobCompleted event") || !strings.Contains(v, "lockToken") || !strings.Contains(v, "finishTime") {
		t.Fatalf("violations: %q", v)
	}
}

func TestAbandonment(t *testing.T) {
	t.Run("first renewal missing", func(t *testing.T) {
		s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond, FirstRenewWindow: 100 * time.Millisecond})
		a := newAgentWithSession(t, s, httpClient(t, s), "lazy")
		never, _ := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
		m := a.takeJob()
		res, err := never.Wait(waitCtx(t))
		if !errors.Is(err, devserver.ErrJobAbandoned) || res != "abandoned" || never.State() != devserver.JobAbandoned {
			t.Fatalf("never renewed: %q %v", res, err)
		}
		wantError(t, a.renew(m.RequestID), 404, "TaskAgentJobNotFoundException")
	})
	t.Run("renewals stop", func(t *testing.T) {
		s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond, LockDuration: 100 * time.Millisecond})
		a := newAgentWithSession(t, s, httpClient(t, s), "stops")
		stopped, _ := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
		m := a.takeJob()
		if r := a.renew(m.RequestID); r.status != 200 {
			t.Fatalf("renew: %s", r)
		}
		res, err := stopped.Wait(waitCtx(t))
		if !errors.Is(err, devserver.ErrJobAbandoned) || res != "abandoned" || stopped.Renewals() != 1 {
			t.Fatalf("renewals stopped: %q %v", res, err)
		}
		wantError(t, a.renew(m.RequestID), 404, "TaskAgentJobNotFoundException")
	})
}

func TestSessionEndReturnsUnstartedJobs(t *testing.T) {
	// A --once agent runs one job, leaves the next message alone and deletes
	// its session: the second job must go to another agent.
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	c := httpClient(t, s)
	once := newAgent(t, s, c, "once")
	once.openSession()
	first, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{})
	second, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{})
	m := once.takeJob()
	if m.JobID != first.ID() || second.State() != devserver.JobQueued {
		t.Fatalf("assignment: got %s; second is %s", m.JobID, second.State())
	}
	once.renew(m.RequestID)
	once.call("PATCH", "jobrequests/"+strconv.FormatInt(m.RequestID, 10)+"?lockToken="+wire.EmptyLockToken, "5.1-preview.1",
		map[string]any{"requestId": m.RequestID, "finishTime": time.Now().UTC(), "result": "succeeded"})
	if second.State() != devserver.JobAssigned || second.AgentID() != once.reg.ID {
		t.Fatalf("second job: %s to %d", second.State(), second.AgentID())
	}
	seen := once.next(m.RequestID) // the second job request, not deleted
	if seen.Type != wire.MessageJobRequest {
		t.Fatalf("message %s", seen.Type)
	}
	if r := once.call("DELETE", "sessions/"+once.session, "5.1-preview.1", nil); r.status != 204 {
		t.Fatalf("delete session: %s", r)
	}
	if second.State() != devserver.JobQueued {
		t.Fatalf("second job after the session ended: %s", second.State())
	}
	other := newAgent(t, s, c, "other")
	other.openSession()
	if got := other.takeJob(); got.JobID != second.ID() {
		t.Fatalf("the other agent got %s", got.JobID)
	}
	// A renewal by an agent the job is not reserved for is refused.
	wantError(t, newAgentWithSession(t, s, c, "third").renew(second.RequestID()), 404, "TaskAgentJobNotFoundException")
	if !strings.Contains(strings.Join(second.Violations(), "\n"), "reserved for another agent") {
		t.Fatal("foreign renewal not recorded")
	}
}

func newAgentWithSession(t *testing.T, s *devserver.Server, c *http.Client, name string) *agent {
	a := newAgent(t, s, c, name)
	a.openSession()
	return a
}

func TestDeletingARunningAgentAbandonsItsJob(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgentWithSession(t, s, c, "doomed")
	job, _ := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	m := a.takeJob()
	a.renew(m.RequestID)
	if r := do(t, c, call{method: "DELETE", url: a.pool("agents/" + itoa(a.reg.ID)), auth: basic(s.PAT())}); r.status != 204 {
		t.Fatalf("delete: %s", r)
	}
	if _, err := job.Wait(waitCtx(t)); !errors.Is(err, devserver.ErrJobAbandoned) {
		t.Fatalf("job of a deleted agent: %v", err)
	}
	wantError(t, a.poll(-1), 404, "TaskAgentNotFoundException")
}

func TestCancellation(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond, CancelGrace: 100 * time.Millisecond})
	c := httpClient(t, s)

	queued, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{})
	if err := s.CancelJob(queued.ID(), 0); err != nil {
		t.Fatal(err)
	}
	if res, err := queued.Wait(waitCtx(t)); res != "canceled" || err != nil {
		t.Fatalf("queued job: %q %v", res, err)
	}
	if err := s.CancelJob(queued.ID(), 0); err == nil {
		t.Fatal("canceling a finished job succeeded")
	}

	a := newAgentWithSession(t, s, c, "canceled")
	running, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{})
	m := a.takeJob()
	a.renew(m.RequestID)
	if err := s.CancelJob(running.ID(), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	cm := a.next(-1)
	var body wire.JobCancelMessage
	if err := json.Unmarshal(cm.Body, &body); err != nil || cm.Type != wire.MessageJobCancellation || body.JobID != running.ID() || body.Timeout != "00:01:30" {
		t.Fatalf("cancellation message %s: %s", cm.Type, cm.Body)
	}
	a.ack(cm.ID)
	a.call("PATCH", "jobrequests/"+strconv.FormatInt(m.RequestID, 10)+"?lockToken="+wire.EmptyLockToken, "5.1-preview.1",
		map[string]any{"requestId": m.RequestID, "finishTime": time.Now().UTC(), "result": "canceled"})
	if res, _ := running.Wait(waitCtx(t)); res != "canceled" {
		t.Fatalf("canceled job result %q", res)
	}

	// An agent that ignores the cancellation: the result is forced after the
	// cancel timeout and the grace period, and recorded.
	stubborn, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{})
	m = a.takeJob()
	a.renew(m.RequestID)
	s.CancelJob(stubborn.ID(), time.Millisecond)
	if res, err := stubborn.Wait(waitCtx(t)); res != "canceled" || err != nil {
		t.Fatalf("forced: %q %v", res, err)
	}
	if !strings.Contains(strings.Join(stubborn.Violations(), "\n"), "cancel timeout") {
		t.Fatalf("violations: %q", stubborn.Violations())
	}

	// The job timeout: the service sends the cancellation itself.
	timed, _ := s.QueueJob(simpleJob(7), devserver.QueueOptions{Timeout: 50 * time.Millisecond, CancelTimeout: 2 * time.Minute})
	for {
		msg := a.next(-1)
		a.ack(msg.ID)
		if msg.Type == wire.MessageJobCancellation {
			var cb wire.JobCancelMessage
			json.Unmarshal(msg.Body, &cb)
			if cb.JobID == timed.ID() {
				if cb.Timeout != "00:02:00" {
					t.Fatalf("timeout %q", cb.Timeout)
				}
				break
			}
		}
	}
}

func TestJobsOfOneRunShareThePlan(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	first, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next := simpleJob(0)
	next.Plan.PlanID = first.PlanID()
	second, err := s.QueueJob(next, devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if second.TimelineID() != first.TimelineID() || second.Message().Plan.ScopeIdentifier != first.Message().Plan.ScopeIdentifier {
		t.Fatal("the second job of a plan got another timeline or scope")
	}
	if len(second.Timeline()) != 1 || second.Timeline()[0].Id.String() != second.ID() || *second.Timeline()[0].State != "pending" {
		t.Fatalf("second job's Job record: %+v", second.Timeline())
	}
	bad := simpleJob(3)
	bad.Plan.PlanID = first.PlanID()
	if _, err := s.QueueJob(bad, devserver.QueueOptions{}); err == nil {
		t.Fatal("a job joined a plan with another plan version")
	}
}

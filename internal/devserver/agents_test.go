package devserver_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
)

func TestPools(t *testing.T) {
	s := startServer(t, devserver.Options{Pools: []string{"Default", "linux"}})
	c := httpClient(t, s)
	get := func(q string) []taskagent.TaskAgentPool {
		t.Helper()
		a := do(t, c, call{method: "GET", url: apiURL(s, "_apis/distributedtask/pools"+q), auth: basic(s.PAT()), version: "5.1-preview.1"})
		if a.status != 200 {
			t.Fatalf("pools%s: %s", q, a)
		}
		var out struct {
			Count int                       `json:"count"`
			Value []taskagent.TaskAgentPool `json:"value"`
		}
		decode(t, a, &out)
		if out.Count != len(out.Value) {
			t.Fatalf("count %d for %d values", out.Count, len(out.Value))
		}
		return out.Value
	}
	if p := get("?poolName=LINUX&poolType=Automation"); len(p) != 1 || *p[0].Name != "linux" || *p[0].Id != 2 || *p[0].PoolType != "automation" {
		t.Fatalf("by name: %+v", p)
	}
	if p := get(""); len(p) != 2 {
		t.Fatalf("all: %d", len(p))
	}
	if p := get("?poolName=nope"); len(p) != 0 {
		t.Fatalf("unknown name: %d", len(p))
	}
	if p := get("?poolType=Deployment"); len(p) != 0 {
		t.Fatalf("deployment pools: %d", len(p))
	}
	wantError(t, do(t, c, call{method: "GET", url: apiURL(s, "_apis/distributedtask/pools?poolType=bogus"), auth: basic(s.PAT())}), 400, "ArgumentException")
	wantError(t, do(t, c, call{method: "GET", url: apiURL(s, "_apis/distributedtask/pools/9"), auth: basic(s.PAT())}), 404, "TaskAgentPoolNotFoundException")
	wantError(t, do(t, c, call{method: "GET", url: apiURL(s, "_apis/distributedtask/pools/9/agents"), auth: basic(s.PAT())}), 404, "TaskAgentPoolNotFoundException")
}

func TestAgentRegistration(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	agents := apiURL(s, "_apis/distributedtask/pools/1/agents")
	add := func(body map[string]any) answer {
		return do(t, c, call{method: "POST", url: agents, auth: basic(s.PAT()), version: "6.0-preview.2", body: mustJSON(t, body)})
	}
	key := newKey(t)
	t.Run("key rules", func(t *testing.T) {
		wantError(t, add(map[string]any{"name": "k"}), 400, "ArgumentNullException")
		wantError(t, add(map[string]any{"name": "k", "authorization": map[string]any{}}), 400, "ArgumentNullException")
		small := loadKey(t, "small1024")
		e := wantError(t, add(map[string]any{"name": "k", "authorization": map[string]any{"publicKey": publicKeyJSON(&small.PublicKey)}}), 400, "ArgumentException")
		if !strings.Contains(e.Message, "2048") {
			t.Fatalf("message %q", e.Message)
		}
		wantError(t, add(map[string]any{"authorization": map[string]any{"publicKey": publicKeyJSON(&key.PublicKey)}}), 400, "ArgumentNullException")
	})
	r := register(t, s, c, 1, "builder", key)
	t.Run("answer", func(t *testing.T) {
		a := do(t, c, call{method: "GET", url: agents + "?agentName=BUILDER&includeCapabilities=true", auth: basic(s.PAT())})
		var out struct {
			Value []taskagent.TaskAgent `json:"value"`
		}
		decode(t, a, &out)
		if len(out.Value) != 1 {
			t.Fatalf("list by name: %s", a)
		}
		ag := out.Value[0]
		if *ag.Id != r.ID || *ag.Status != "offline" || !*ag.Enabled || ag.CreatedOn == nil || ag.SystemCapabilities == nil || (*ag.SystemCapabilities)["Agent.Name"] != "builder" {
			t.Fatalf("agent: %s", a.body)
		}
		if r.AuthURL != s.TokenURL() || !strings.HasPrefix(r.AuthURL, "https://127.0.0.1:") {
			t.Fatalf("authorizationUrl %q", r.AuthURL)
		}
		a = do(t, c, call{method: "GET", url: agents + "?agentName=builder", auth: basic(s.PAT())})
		if strings.Contains(string(a.body), "systemCapabilities") {
			t.Fatal("capabilities sent although includeCapabilities was not asked for")
		}
	})
	t.Run("duplicate name", func(t *testing.T) {
		wantError(t, add(map[string]any{"name": "Builder", "authorization": map[string]any{"publicKey": publicKeyJSON(&key.PublicKey)}}), 409, "TaskAgentExistsException")
	})
	t.Run("replace with a new key", func(t *testing.T) {
		tok := agentToken(t, c, r)
		nk := newKey(t)
		a := do(t, c, call{method: "PUT", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT()), version: "6.0-preview.2", body: mustJSON(t, map[string]any{
			"id": r.ID, "name": "builder", "version": "4.276.0", "authorization": map[string]any{"publicKey": publicKeyJSON(&nk.PublicKey)},
		})})
		if a.status != 200 {
			t.Fatalf("replace: %s", a)
		}
		var ag taskagent.TaskAgent
		decode(t, a, &ag)
		if ag.Authorization.ClientId.String() == r.ClientID || *ag.Version != "4.276.0" {
			t.Fatalf("replace kept the client id or version: %s", a.body)
		}
		// The old key's token and assertions are void; the new key works.
		if got := do(t, c, call{method: "POST", url: apiURL(s, "_apis/distributedtask/pools/1/sessions"), auth: bearer(tok), body: []byte(`{"agent":{"id":1}}`)}); got.status != 401 {
			t.Fatalf("old token after key replacement: %s", got)
		}
		if got := tokenRequest(t, c, r.AuthURL, assertion(t, r.Key, r.ClientID, r.AuthURL, nil)); got.status != 401 {
			t.Fatalf("old client id after key replacement: %s", got)
		}
		r = registered{ID: r.ID, ClientID: ag.Authorization.ClientId.String(), AuthURL: r.AuthURL, Key: nk, PoolID: 1, Name: "builder"}
		agentToken(t, c, r)
		wantError(t, do(t, c, call{method: "PUT", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT()), body: []byte(`{"id":99}`)}), 400, "ArgumentException")
		wantError(t, do(t, c, call{method: "PUT", url: agents + "/77", auth: basic(s.PAT()), body: []byte(`{"id":77}`)}), 404, "TaskAgentNotFoundException")
	})
	t.Run("disable and enable", func(t *testing.T) {
		ag := &agent{t: t, s: s, c: c, reg: r, token: agentToken(t, c, r)}
		ag.openSession()
		patch := func(enabled bool) {
			a := do(t, c, call{method: "PATCH", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT()), body: mustJSON(t, map[string]any{"enabled": enabled})})
			if a.status != 200 {
				t.Fatalf("patch: %s", a)
			}
		}
		patch(false)
		job, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st := job.State(); st != devserver.JobQueued {
			t.Fatalf("a disabled agent got a job: %s", st)
		}
		if a := do(t, c, call{method: "GET", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT())}); !strings.Contains(string(a.body), `"status":"online"`) {
			t.Fatalf("agent with a session is not online: %s", a.body)
		}
		patch(true)
		if st := job.State(); st != devserver.JobAssigned {
			t.Fatalf("enabling did not assign the job: %s", st)
		}
	})
	t.Run("delete", func(t *testing.T) {
		a := do(t, c, call{method: "DELETE", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT())})
		if a.status != http.StatusNoContent {
			t.Fatalf("delete: %s", a)
		}
		wantError(t, do(t, c, call{method: "GET", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT())}), 404, "TaskAgentNotFoundException")
		wantError(t, do(t, c, call{method: "DELETE", url: agents + "/" + itoa(r.ID), auth: basic(s.PAT())}), 404, "TaskAgentNotFoundException")
		// The job it was assigned but never started goes back to the pool.
		for _, j := range s.Jobs() {
			if st := j.State(); st != devserver.JobQueued {
				t.Fatalf("job %s of the deleted agent is %s, want queued", j.ID(), st)
			}
		}
	})
}

func TestAgentUpdateState(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "updater")
	if r := a.call("PUT", "agents/"+itoa(a.reg.ID)+"/updates?currentState=Downloading", "5.1-preview.1", nil); r.status != 200 {
		t.Fatalf("own update state: %s", r)
	}
	b := newAgent(t, s, c, "other")
	wantError(t, b.call("PUT", "agents/"+itoa(a.reg.ID)+"/updates?currentState=x", "5.1-preview.1", nil), 403, "AccessDeniedException")
	wantError(t, do(t, c, call{method: "PUT", url: a.pool("agents/" + itoa(a.reg.ID) + "/updates"), auth: basic(s.PAT())}), 403, "AccessDeniedException")
}

func itoa(i int) string { return strconv.Itoa(i) }

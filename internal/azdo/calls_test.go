package azdo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/wire"
)

const (
	tScope    = "6f4cd0f1-2e36-4d63-9d6e-2c1a5e4a5b10"
	tPlan     = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	tTimeline = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	tRecord   = "12345678-1234-1234-1234-123456789abc"
	tSession  = "99999999-8888-7777-6666-555555555555"
)

// Each call as listener.md §3–§5 and worker.md §7 describe it on the wire.
func TestCalls(t *testing.T) {
	hub := "/org/" + tScope + "/_apis/distributedtask/hubs/build/plans/" + tPlan
	finish := time.Date(2025, 8, 11, 9, 12, 39, 123000000, time.UTC)
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	stepID := uuid.MustParse(tRecord)
	startLine := uint64(41)
	lines := []string{"hello", "world"}
	page := []byte("2025-08-11T09:12:39.1230000Z line one\n")

	for _, tc := range []struct {
		name        string
		call        func(ctx context.Context, c *Client, p *Plan) (any, error)
		status      int    // the fake's answer; 200 when 0
		answer      string // its body
		method      string
		path        string
		query       string
		accept      string
		contentType string // "" = none
		body        string // JSON compared semantically; raw bodies byte for byte
		want        any    // what the call returns
		attempts    int    // against a server that keeps answering 503, with Retries 2
	}{
		{
			name: "ConnectionData",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				cd, err := c.ConnectionData(ctx)
				if err != nil {
					return nil, err
				}
				return *cd.InstanceId, nil
			},
			answer: `{"instanceId":"00000000-0000-0000-0000-00000000abcd","deploymentType":"hosted"}`,
			method: "GET", path: "/org/_apis/connectionData", query: "connectOptions=1&lastChangeId=-1&lastChangeId64=-1",
			accept: "application/json", want: uuid.MustParse("00000000-0000-0000-0000-00000000abcd"), attempts: 3,
		},
		{
			name: "PoolsByName",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				ps, err := c.PoolsByName(ctx, "Default pool")
				if err != nil || len(ps) != 1 {
					return ps, err
				}
				return *ps[0].Id, nil
			},
			answer: `{"count":1,"value":[{"id":12,"name":"Default pool"}]}`,
			method: "GET", path: "/org/_apis/distributedtask/pools", query: "poolName=Default+pool&poolType=Automation",
			accept: "application/json; api-version=5.1-preview.1", want: 12, attempts: 3,
		},
		{
			name: "AgentsByName",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				as, err := c.AgentsByName(ctx, 12, "agent-1")
				return len(as), err
			},
			answer: `{"count":0,"value":[]}`,
			method: "GET", path: "/org/_apis/distributedtask/pools/12/agents", query: "agentName=agent-1&includeCapabilities=False",
			accept: "application/json; api-version=6.0-preview.2", want: 0, attempts: 3,
		},
		{
			name: "AddAgent",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				a, err := c.AddAgent(ctx, 12, &taskagent.TaskAgent{Name: str("agent-1"), MaxParallelism: num(1)})
				if err != nil {
					return nil, err
				}
				return *a.Id, nil
			},
			answer: `{"id":345,"name":"agent-1"}`,
			method: "POST", path: "/org/_apis/distributedtask/pools/12/agents",
			accept: "application/json; api-version=6.0-preview.2", contentType: "application/json; charset=utf-8; api-version=6.0-preview.2",
			body: `{"name":"agent-1","maxParallelism":1}`, want: 345, attempts: 1,
		},
		{
			name: "ReplaceAgent",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				a, err := c.ReplaceAgent(ctx, 12, 345, &taskagent.TaskAgent{Id: num(345), Name: str("agent-1")})
				if err != nil {
					return nil, err
				}
				return *a.Id, nil
			},
			answer: `{"id":345}`,
			method: "PUT", path: "/org/_apis/distributedtask/pools/12/agents/345",
			accept: "application/json; api-version=6.0-preview.2", contentType: "application/json; charset=utf-8; api-version=6.0-preview.2",
			body: `{"id":345,"name":"agent-1"}`, want: 345, attempts: 3,
		},
		{
			name:   "DeleteAgent",
			call:   func(ctx context.Context, c *Client, _ *Plan) (any, error) { return nil, c.DeleteAgent(ctx, 12, 345) },
			status: 204, method: "DELETE", path: "/org/_apis/distributedtask/pools/12/agents/345",
			accept: "application/json; api-version=6.0-preview.2", attempts: 3,
		},
		{
			name: "CreateSession",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				s, err := c.CreateSession(ctx, 12, &taskagent.TaskAgentSession{
					OwnerName: str("host-1"), Agent: &taskagent.TaskAgentReference{Id: num(345), Name: str("agent-1")},
				})
				if err != nil {
					return nil, err
				}
				return s.SessionId.String(), nil
			},
			answer: `{"sessionId":"` + tSession + `","encryptionKey":{"encrypted":true,"value":"AAEC"}}`,
			method: "POST", path: "/org/_apis/distributedtask/pools/12/sessions",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"ownerName":"host-1","agent":{"id":345,"name":"agent-1"}}`, want: tSession, attempts: 1,
		},
		{
			name: "DeleteSession",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				return nil, c.DeleteSession(ctx, 12, tSession)
			},
			status: 204, method: "DELETE", path: "/org/_apis/distributedtask/pools/12/sessions/" + tSession,
			accept: "application/json; api-version=5.1-preview.1", attempts: 3,
		},
		{
			name: "GetMessage",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				m, err := c.GetMessage(ctx, 642, tSession, 1119, 0)
				if err != nil || m == nil {
					return m, err
				}
				return *m.MessageType + "/" + *m.Body, nil
			},
			answer: `{"messageId":1120,"messageType":"PipelineAgentJobRequest","iv":"AAAAAAAAAAAAAAAAAAAAAA==","body":"b64"}`,
			method: "GET", path: "/org/_apis/distributedtask/pools/642/messages", query: "lastMessageId=1119&sessionId=" + tSession,
			accept: "application/json; api-version=6.0-preview.1", want: "PipelineAgentJobRequest/b64", attempts: 1,
		},
		{
			name: "GetMessage first poll 202",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				m, err := c.GetMessage(ctx, 642, tSession, -1, 0)
				return m == nil, err
			},
			status: 202, method: "GET", path: "/org/_apis/distributedtask/pools/642/messages", query: "sessionId=" + tSession,
			accept: "application/json; api-version=6.0-preview.1", want: true, attempts: 1,
		},
		{
			name: "GetMessage 204",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				m, err := c.GetMessage(ctx, 642, tSession, 0, 0)
				return m == nil, err
			},
			status: 204, method: "GET", path: "/org/_apis/distributedtask/pools/642/messages", query: "lastMessageId=0&sessionId=" + tSession,
			accept: "application/json; api-version=6.0-preview.1", want: true, attempts: 1,
		},
		{
			name: "DeleteMessage",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				return nil, c.DeleteMessage(ctx, 642, tSession, 1120)
			},
			status: 204, method: "DELETE", path: "/org/_apis/distributedtask/pools/642/messages/1120", query: "sessionId=" + tSession,
			accept: "application/json; api-version=5.1-preview.1", attempts: 3,
		},
		{
			name: "RenewJobRequest",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				r, err := c.RenewJobRequest(ctx, 22, 427606, 60*time.Second)
				if err != nil {
					return nil, err
				}
				return r.LockedUntil.Time.UTC(), nil
			},
			answer: `{"requestId":427606,"lockedUntil":"2025-08-11T09:22:39.123Z"}`,
			method: "PATCH", path: "/org/_apis/distributedtask/pools/22/jobrequests/427606", query: "lockToken=00000000-0000-0000-0000-000000000000",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"requestId":427606}`, want: time.Date(2025, 8, 11, 9, 22, 39, 123000000, time.UTC), attempts: 1,
		},
		{
			name: "FinishJobRequest",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				return nil, c.FinishJobRequest(ctx, 22, 1037133, finish, taskagent.TaskResultValues.Succeeded)
			},
			answer: `{"requestId":1037133}`,
			method: "PATCH", path: "/org/_apis/distributedtask/pools/22/jobrequests/1037133", query: "lockToken=00000000-0000-0000-0000-000000000000",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"requestId":1037133,"finishTime":"2025-08-11T09:12:39.123Z","result":"succeeded"}`, attempts: 1,
		},
		{
			name: "GetJobRequest",
			call: func(ctx context.Context, c *Client, _ *Plan) (any, error) {
				r, err := c.GetJobRequest(ctx, 22, 5)
				if err != nil {
					return nil, err
				}
				return string(*r.Result), nil
			},
			answer: `{"requestId":5,"result":"canceled"}`,
			method: "GET", path: "/org/_apis/distributedtask/pools/22/jobrequests/5",
			accept: "application/json; api-version=5.1-preview.1", want: "canceled", attempts: 3,
		},
		{
			name: "UpdateRecords",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				id := uuid.MustParse(tRecord)
				st := taskagent.TimelineRecordStateValues.InProgress
				rs, err := p.UpdateRecords(ctx, []taskagent.TimelineRecord{{Id: &id, State: &st}})
				return len(rs), err
			},
			answer: `{"count":1,"value":[{"id":"` + tRecord + `","state":"inProgress"}]}`,
			method: "PATCH", path: hub + "/timelines/" + tTimeline + "/records",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"count":1,"value":[{"id":"` + tRecord + `","state":"inProgress"}]}`, want: 1, attempts: 3,
		},
		{
			name: "AppendFeed",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				return nil, p.AppendFeed(ctx, tRecord, taskagent.TimelineRecordFeedLinesWrapper{
					Count: num(2), Value: &lines, StepId: &stepID, StartLine: &startLine,
				})
			},
			method: "POST", path: hub + "/timelines/" + tTimeline + "/records/" + tRecord + "/feed",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"count":2,"value":["hello","world"],"stepId":"` + tRecord + `","startLine":41}`, attempts: 3,
		},
		{
			name: "CreateLog",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				l, err := p.CreateLog(ctx, `logs\`+tRecord)
				if err != nil {
					return nil, err
				}
				return *l.Id, nil
			},
			answer: `{"id":7,"path":"logs\\` + tRecord + `"}`,
			method: "POST", path: hub + "/logs",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"path":"logs\\` + tRecord + `"}`, want: 7, attempts: 1,
		},
		{
			name: "AppendLog",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				l, err := p.AppendLog(ctx, 7, page)
				if err != nil {
					return nil, err
				}
				return *l.LineCount, nil
			},
			answer: `{"id":7,"lineCount":1}`,
			method: "POST", path: hub + "/logs/7",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/octet-stream; api-version=5.1-preview.1",
			body: string(page), want: uint64(1), attempts: 1,
		},
		{
			name: "AppendLogContent",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				l, err := p.AppendLogContent(ctx, 7, bytes.NewReader(page), int64(len(page)))
				if err != nil {
					return nil, err
				}
				return *l.LineCount, nil
			},
			answer: `{"id":7,"lineCount":1}`,
			method: "POST", path: hub + "/logs/7",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/octet-stream; api-version=5.1-preview.1",
			body: string(page), want: uint64(1), attempts: 1,
		},
		{
			name: "CreateAttachment",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				a, err := p.CreateAttachment(ctx, tRecord, "DistributedTask.Core.Summary", "summary name.md", strings.NewReader("# done"), 6)
				if err != nil {
					return nil, err
				}
				return *a.Name, nil
			},
			answer: `{"name":"summary name.md","type":"DistributedTask.Core.Summary"}`,
			method: "PUT", path: hub + "/timelines/" + tTimeline + "/records/" + tRecord + "/attachments/DistributedTask.Core.Summary/summary%20name.md",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/octet-stream; api-version=5.1-preview.1",
			body: "# done", want: "summary name.md", attempts: 3,
		},
		{
			name: "RaiseEvent",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				return nil, p.RaiseEvent(ctx, wire.JobEvent{Name: "JobCompleted", JobID: tRecord, RequestID: 4711, Result: "succeeded"})
			},
			method: "POST", path: hub + "/events",
			accept: "application/json; api-version=2.0-preview.1", contentType: "application/json; charset=utf-8; api-version=2.0-preview.1",
			body: `{"name":"JobCompleted","jobId":"` + tRecord + `","requestId":4711,"result":"succeeded","agentShuttingDown":false}`, attempts: 1,
		},
		{
			name: "CreateTimeline",
			call: func(ctx context.Context, _ *Client, p *Plan) (any, error) {
				return nil, p.CreateTimeline(ctx, tTimeline)
			},
			method: "POST", path: hub + "/timelines",
			accept: "application/json; api-version=5.1-preview.1", contentType: "application/json; charset=utf-8; api-version=5.1-preview.1",
			body: `{"id":"` + tTimeline + `"}`, attempts: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, "/org")
			f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
				st := tc.status
				if st == 0 {
					st = http.StatusOK
				}
				if tc.answer == "" {
					w.WriteHeader(st)
					return
				}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(st)
				w.Write([]byte(tc.answer))
			})
			c, _ := newClient(t, f, StaticToken{Scheme: "Bearer", Value: "t"}, Options{})
			p := &Plan{Client: c, Scope: tScope, Hub: "build", PlanID: tPlan, TimelineID: tTimeline}
			got, err := tc.call(testContext(t), c, p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("returned %#v, want %#v", got, tc.want)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			if r.Method != tc.method || r.Path != tc.path || r.Query != tc.query {
				t.Errorf("request %s %s?%s\nwant    %s %s?%s", r.Method, r.Path, r.Query, tc.method, tc.path, tc.query)
			}
			if got := r.Header.Get("Accept"); got != tc.accept {
				t.Errorf("Accept %q, want %q", got, tc.accept)
			}
			if got := r.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if strings.HasPrefix(tc.contentType, "application/json") {
				var gotBody, wantBody any
				if err := json.Unmarshal(r.Body, &gotBody); err != nil {
					t.Fatalf("body %q: %v", r.Body, err)
				}
				json.Unmarshal([]byte(tc.body), &wantBody)
				if !reflect.DeepEqual(gotBody, wantBody) {
					t.Errorf("body %s\nwant %s", r.Body, tc.body)
				}
			} else if string(r.Body) != tc.body {
				t.Errorf("body %q, want %q", r.Body, tc.body)
			}

			// Which calls the client itself retries.
			f2 := newFake(t, "/org")
			f2.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
				vssError(w, http.StatusServiceUnavailable, "RequestBlockedException", "busy")
			})
			c2, _ := newClient(t, f2, StaticToken{Scheme: "Bearer", Value: "t"}, Options{Retries: 2})
			p2 := &Plan{Client: c2, Scope: tScope, Hub: "build", PlanID: tPlan, TimelineID: tTimeline}
			if _, err := tc.call(testContext(t), c2, p2); err == nil {
				t.Fatal("no error from a busy server")
			}
			reqs = f2.requests()
			if len(reqs) != tc.attempts {
				t.Errorf("%d attempts against a busy server, want %d", len(reqs), tc.attempts)
			}
			for i, r := range reqs[1:] {
				if !bytes.Equal(r.Body, reqs[0].Body) {
					t.Errorf("attempt %d body %q differs from the first %q", i+2, r.Body, reqs[0].Body)
				}
			}
		})
	}
}

// A ReaderAtBody is streamed with its length and replayed on a retry; an
// empty one is an empty body, not a missing one.
func TestReaderAtBody(t *testing.T) {
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		if r.ContentLength != int64(len(s.Body)) {
			http.Error(w, "length mismatch", http.StatusBadRequest)
			return
		}
		if s.Attempt == 1 && len(s.Body) > 0 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	c, _ := newClient(t, f, nil, Options{})
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	for _, tc := range []struct {
		name string
		data []byte
	}{{"big", big}, {"empty", nil}} {
		req := Request{Method: http.MethodPut, Location: thingsLoc, RouteValues: map[string]string{"path": tc.name},
			Body: ReaderAtBody{R: bytes.NewReader(tc.data), Size: int64(len(tc.data))}}
		if _, err := c.Send(testContext(t), req, nil); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	reqs := f.requests()
	if len(reqs) != 3 || !bytes.Equal(reqs[0].Body, big) || !bytes.Equal(reqs[1].Body, big) || len(reqs[2].Body) != 0 {
		t.Fatalf("%d requests", len(reqs))
	}
	if got := reqs[2].Header.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("empty body Content-Type %q", got)
	}
	// Only the first size bytes are sent.
	if _, err := c.Send(testContext(t), Request{Method: http.MethodPut, Location: thingsLoc, RouteValues: map[string]string{"path": "part"},
		Body: ReaderAtBody{R: strings.NewReader("abcdef"), Size: 3}}, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[4].Body; string(got) != "abc" {
		t.Errorf("partial body %q", got)
	}
	if _, err := c.Send(testContext(t), Request{Method: http.MethodPut, Location: thingsLoc, Body: ReaderAtBody{Size: 3}}, nil); err == nil {
		t.Error("a body without a reader was accepted")
	}
}

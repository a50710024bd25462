package jobs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/script"
	"github.com/goagent-dev/goagent/internal/wire"
)

// memReporter records what the runner reports.
type memReporter struct {
	mu       sync.Mutex
	records  map[string]jobs.Record
	history  []jobs.Record
	lines    map[string][]string
	attached []string
	done     *jobs.Completion
	details  []detailUpdate // UpdateDetailRecord calls, in order
}

type detailUpdate struct {
	timeline string
	rec      jobs.DetailRecord
	after    int // record updates made before this one
}

func newMem() *memReporter {
	return &memReporter{records: map[string]jobs.Record{}, lines: map[string][]string{}}
}

func (m *memReporter) UpdateRecord(r jobs.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records[r.ID] = r
	m.history = append(m.history, r)
}

func (m *memReporter) WriteLine(id, line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines[id] = append(m.lines[id], line)
}

func (m *memReporter) WriteLines(id string, lines []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines[id] = append(m.lines[id], lines...)
}

func (m *memReporter) UpdateDetailRecord(timelineID string, r jobs.DetailRecord) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.details = append(m.details, detailUpdate{timelineID, r, len(m.history)})
}

func (m *memReporter) Attach(id, typ, name, path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attached = append(m.attached, typ+"/"+name)
}

func (m *memReporter) Finish(ctx context.Context, c jobs.Completion) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done = &c
	return nil
}

func (m *memReporter) rec(id string) jobs.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.records[id]
}

func (m *memReporter) log(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.lines[id], "\n")
}

func (m *memReporter) all() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, ls := range m.lines {
		for _, l := range ls {
			b.WriteString(l + "\n")
		}
	}
	for _, r := range m.records {
		for _, is := range r.Issues {
			b.WriteString(is.Message + "\n")
		}
		for _, v := range r.Variables {
			b.WriteString(v.Value + "\n")
		}
	}
	return b.String()
}

type stepSpec struct {
	name, display, script, condition string
	continueOnError                  bool
	timeoutMinutes, retries          int
	env                              map[string]string
	task                             *wire.TaskReference
	inputs                           map[string]string
	disabled                         bool
	target                           *wire.StepTarget
}

func message(vars map[string]wire.VariableValue, specs ...stepSpec) *wire.JobRequestMessage {
	m := &wire.JobRequestMessage{
		MessageType: wire.MessageJobRequest,
		Plan:        wire.PlanReference{ScopeIdentifier: "6302cb6f-c9d9-44c2-ae60-84eff8845059", PlanType: "Build", Version: 9, PlanID: "c7a42561-d84c-4972-b78f-ec97a3b63d53"},
		Timeline:    wire.TimelineReference{ID: "c7a42561-d84c-4972-b78f-ec97a3b63d53"},
		JobID:       "12f1170f-54f2-53f3-20dd-22fc7dff55f9", JobDisplayName: "Job", JobName: "__default", RequestID: 7,
		Variables: map[string]wire.VariableValue{
			"system.collectionId": {Value: "297a3210-e711-4ddf-857a-1df14915bb29"},
			"system.definitionId": {Value: "2"},
			"system.accessToken":  {Value: "accesstoken-0123456789", IsSecret: true},
		},
		Resources: wire.JobResources{Endpoints: []wire.ServiceEndpoint{{
			Name: "SystemVssConnection", URL: "https://127.0.0.1:1/org/",
			Authorization: wire.EndpointAuth{Scheme: "OAuth", Parameters: map[string]string{"AccessToken": "jobtoken-abcdefghijkl"}},
		}}},
	}
	for k, v := range vars {
		m.Variables[k] = v
	}
	for i, s := range specs {
		ref := wire.TaskReference{ID: wire.TaskCmdLine, Name: "CmdLine", Version: "2.250.1"}
		if s.task != nil {
			ref = *s.task
		}
		in := map[string]string{"script": s.script}
		if s.inputs != nil {
			in = s.inputs
		}
		name := s.name
		if name == "" {
			name = fmt.Sprintf("CmdLine%d", i)
		}
		disp := s.display
		if disp == "" {
			disp = name
		}
		m.Steps = append(m.Steps, wire.Step{
			Type: "task", ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), Name: name, DisplayName: disp,
			Condition: s.condition, ContinueOnError: s.continueOnError, TimeoutInMinutes: s.timeoutMinutes,
			RetryCountOnTaskFailure: s.retries, Reference: ref, Inputs: in, Environment: s.env, Target: s.target,
		})
		if s.disabled {
			f := false
			m.Steps[len(m.Steps)-1].Enabled = &f
		}
	}
	return m
}

func stepID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1) }

func newRunner(t *testing.T) *jobs.Runner {
	t.Helper()
	return &jobs.Runner{
		Registry:   steps.NewRegistry(script.Definitions()...),
		WorkDir:    filepath.Join(t.TempDir(), "_work"),
		Agent:      jobs.AgentInfo{ID: 3, Name: "test-agent", Version: "4.275.0", MachineName: "host"},
		Env:        []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AZP_TOKEN=must-not-leak-token"},
		KillGrace:  [2]time.Duration{500 * time.Millisecond, 500 * time.Millisecond},
		RetryDelay: func(int) time.Duration { return 10 * time.Millisecond },
	}
}

func run(t *testing.T, r *jobs.Runner, m *wire.JobRequestMessage) (string, *memReporter) {
	t.Helper()
	rep := newMem()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := r.Run(ctx, jobs.Job{Message: m, Reporter: rep})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res, rep
}

// TestCancellation cancels a running job in-process: a job cancellation
// re-evaluates conditions (always() and canceled() steps still run); an agent
// shutdown cancels the running step and skips every step left, always() ones
// too (StepsRunner).
func TestCancellation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		cause error
		job   string
		want  []string
	}{
		{"job cancellation", context.Canceled, "canceled", []string{"canceled", "skipped", "succeeded", "succeeded"}},
		{"agent shutdown", jobs.ErrAgentShutdown, "canceled", []string{"canceled", "skipped", "skipped", "skipped"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRunner(t)
			rep := newMem()
			ctx, cancel := context.WithCancelCause(context.Background())
			m := message(nil,
				stepSpec{script: "echo started; sleep 600"},
				stepSpec{script: "echo should-not-run"},
				stepSpec{script: "echo cleanup", condition: "always()"},
				stepSpec{script: "echo on-cancel", condition: "canceled()"},
			)
			done := make(chan string)
			go func() {
				res, _ := r.Run(ctx, jobs.Job{Message: m, Reporter: rep})
				done <- res
			}()
			deadline := time.After(30 * time.Second)
			for !strings.Contains(rep.log(stepID(0)), "started") {
				select {
				case <-deadline:
					t.Fatal("step never started")
				case <-time.After(20 * time.Millisecond):
				}
			}
			cancel(tc.cause)
			var res string
			select {
			case res = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("job did not end after cancel")
			}
			if res != tc.job || rep.done == nil || rep.done.Result != tc.job {
				t.Fatalf("result %s, completion %+v", res, rep.done)
			}
			for i, w := range tc.want {
				if got := rep.rec(stepID(i)).Result; got != w {
					t.Errorf("step %d = %s, want %s\n%s", i, got, w, rep.log(stepID(i)))
				}
			}
			if shutdown := tc.cause == jobs.ErrAgentShutdown; rep.done.AgentShuttingDown != shutdown {
				t.Errorf("agentShuttingDown = %v", rep.done.AgentShuttingDown)
			}
		})
	}
}

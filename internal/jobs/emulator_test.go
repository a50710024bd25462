package jobs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/identity/identitytest"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/jobs/report"
	"github.com/goagent-dev/goagent/internal/listener"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/checkout"
	"github.com/goagent-dev/goagent/internal/steps/script"
	"github.com/goagent-dev/goagent/internal/wire"
)

// The tests in this file run jobs end to end: the emulator (internal/devserver)
// queues a job message, an in-process agent wired as cmd/goagent wires it
// (listener + Engine + Runner + HTTP reporter) takes it over real HTTPS, and
// the assertions read what the emulator stored and recorded.

// lab is one emulator with agents registered in its Default pool.
type lab struct {
	t    *testing.T
	srv  *devserver.Server
	http *http.Client
	keys int // agent keys handed out
}

// labOptions tune a lab.
type labOptions struct {
	agents int // default 1; negative: none
	server func(*devserver.Options)
	runner func(*jobs.Runner)
}

func newLab(t *testing.T, o labOptions) *lab {
	t.Helper()
	so := devserver.Options{Dir: t.TempDir(), JobTokenGrace: 10 * time.Minute}
	if o.server != nil {
		o.server(&so)
	}
	srv, err := devserver.Start(context.Background(), so)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	tr, err := azdo.NewTransport(azdo.TransportOptions{CAFiles: []string{srv.CAFile()}})
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	l := &lab{t: t, srv: srv, http: &http.Client{Transport: tr}}
	if o.agents == 0 {
		o.agents = 1
	}
	if o.agents < 0 { // the test runs its agent itself
		o.agents = 0
	}
	for i := range o.agents {
		l.startAgent(fmt.Sprintf("agent-%d", i+1), o.runner)
	}
	l.waitOnline(o.agents)
	return l
}

// waitOnline waits until n agents have a session.
func (l *lab) waitOnline(n int) {
	l.t.Helper()
	// Jobs go to agents that have a session; queueing only once every agent
	// is online spreads a batch of jobs one per agent.
	waitFor(l.t, "agents online", func() bool {
		online := 0
		for _, a := range l.srv.Agents("") {
			if a.Status != nil && *a.Status == taskagent.TaskAgentStatusValues.Online {
				online++
			}
		}
		return online == n
	})
}

// newTestRunner is the production Runner (cmd/goagent/agent.go) with test
// directories and short kill graces.
func newTestRunner(t *testing.T, name string) *jobs.Runner {
	home := t.TempDir()
	return &jobs.Runner{
		Registry: steps.NewRegistry(append(script.Definitions(), checkout.Definition())...),
		WorkDir:  filepath.Join(t.TempDir(), "_work"),
		Agent: jobs.AgentInfo{
			Name: name, Version: "4.255.0", GoVersion: "test", MachineName: "lab-host", HomeDir: home,
		},
		Env: []string{
			"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8",
			"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull,
		},
		KillGrace: [2]time.Duration{time.Second, time.Second},
	}
}

// startAgent runs an agent until the test ends.
func (l *lab) startAgent(name string, mod func(*jobs.Runner)) {
	t := l.t
	runner := newTestRunner(t, name)
	if mod != nil {
		mod(runner)
	}
	stateDir := t.TempDir()
	writeAgentKey(t, stateDir, l.keys)
	l.keys++
	a := newAgent(t, l.srv.URL(), l.srv.PAT(), l.http, runner, stateDir)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("agent %s: %v", name, err)
			}
		case <-time.After(time.Minute):
			t.Errorf("agent %s did not stop", name)
		}
		// A connection the client opened but never used counts as active
		// for 5 s in http.Server.Shutdown; close them so the emulator stops
		// at once.
		l.http.CloseIdleConnections()
	})
}

// newAgent wires an agent as cmd/goagent does: the listener, registered with
// a PAT, running jobs with the Engine (Runner + HTTP reporter). Report
// cadences are shortened so tests finish quickly.
func newAgent(t *testing.T, serverURL, pat string, client *http.Client, runner *jobs.Runner, stateDir string) *listener.Agent {
	t.Helper()
	basic := base64.StdEncoding.EncodeToString([]byte("VstsAgent:" + pat))
	a, err := listener.New(listener.Config{
		ServerURL:        serverURL,
		Pool:             "Default",
		AgentName:        runner.Agent.Name,
		WorkDir:          runner.WorkDir,
		StateDir:         stateDir,
		AgentVersion:     runner.Agent.Version,
		GoagentVersion:   "test",
		Env:              runner.Env,
		Registration:     azdo.StaticToken{Scheme: "Basic", Value: basic},
		RegistrationName: "a PAT",
		RegistrationKind: "pat",
		HTTPClient:       client,
		Runner: &listener.Engine{
			Runner:   runner,
			PagesDir: filepath.Join(runner.WorkDir, "_diag", "pages"),
			Report: report.Options{
				TimelineInterval:     50 * time.Millisecond,
				RetryDelay:           50 * time.Millisecond,
				CompletionRetryDelay: 100 * time.Millisecond,
			},
		},
		Logger: testLogger(),
	})
	if err != nil {
		t.Fatalf("new agent %s: %v", runner.Agent.Name, err)
	}
	return a
}

// writeAgentKey gives an agent a fixed registration key in the official
// RSAParameters file, as identity.LoadOrCreateKey reads it: generating a
// 2048-bit key takes seconds on a loaded machine.
func writeAgentKey(t *testing.T, dir string, i int) {
	t.Helper()
	key := identitytest.Key(i % 3)
	key.Precompute()
	k, half := key.Size(), (key.Size()+1)/2
	b, err := json.Marshal(map[string][]byte{
		"d": key.D.FillBytes(make([]byte, k)), "dp": key.Precomputed.Dp.FillBytes(make([]byte, half)),
		"dq": key.Precomputed.Dq.FillBytes(make([]byte, half)), "exponent": big.NewInt(int64(key.E)).Bytes(),
		"inverseQ": key.Precomputed.Qinv.FillBytes(make([]byte, half)), "modulus": key.N.FillBytes(make([]byte, k)),
		"p": key.Primes[0].FillBytes(make([]byte, half)), "q": key.Primes[1].FillBytes(make([]byte, half)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, identity.KeyFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// queue queues a job and returns its handle.
func (l *lab) queue(m *wire.JobRequestMessage) *devserver.Job {
	l.t.Helper()
	j, err := l.srv.QueueJob(m, devserver.QueueOptions{})
	if err != nil {
		l.t.Fatalf("queue job: %v", err)
	}
	return j
}

// wait waits for a job's result.
func (l *lab) wait(j *devserver.Job) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := j.Wait(ctx)
	if err != nil {
		l.t.Fatalf("job %s: %v", j.ID(), err)
	}
	return res
}

// checkViolations fails the test on any protocol violation the emulator saw.
func (l *lab) checkViolations() {
	l.t.Helper()
	if v := l.srv.Violations(); len(v) > 0 {
		l.t.Errorf("emulator violations:\n%s", strings.Join(v, "\n"))
	}
	if b := l.srv.Bugs(); len(b) > 0 {
		l.t.Errorf("emulator bugs:\n%s", strings.Join(b, "\n"))
	}
}

// emuMessage is message() for the emulator: ids, plan and the system
// connection are left for the emulator to fill, as the service does.
func emuMessage(vars map[string]wire.VariableValue, specs ...stepSpec) *wire.JobRequestMessage {
	m := message(vars, specs...)
	m.JobID, m.Plan.PlanID, m.Timeline.ID, m.RequestID = "", "", "", 0
	m.Plan.ScopeIdentifier = ""
	m.Resources.Endpoints = nil
	delete(m.Variables, "system.accessToken")
	delete(m.Variables, "system.collectionId")
	return m
}

// record finds a record of the job's timeline by id.
func record(t *testing.T, j *devserver.Job, id string) taskagent.TimelineRecord {
	t.Helper()
	for _, r := range j.Timeline() {
		if r.Id != nil && strings.EqualFold(r.Id.String(), id) {
			return r
		}
	}
	t.Fatalf("job %s has no record %s", j.ID(), id)
	return taskagent.TimelineRecord{}
}

// hasRecord reports whether the job's timeline has the record.
func hasRecord(j *devserver.Job, id string) bool {
	for _, r := range j.Timeline() {
		if r.Id != nil && strings.EqualFold(r.Id.String(), id) {
			return true
		}
	}
	return false
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func num(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

func result(r taskagent.TimelineRecord) string {
	if r.Result == nil {
		return ""
	}
	return string(*r.Result)
}

func state(r taskagent.TimelineRecord) string {
	if r.State == nil {
		return ""
	}
	return string(*r.State)
}

// logText is the text of the log a record links (its last page).
func logText(j *devserver.Job, id string) string {
	return strings.Join(j.LogLines(id), "\n")
}

// logMessages are the lines of the log a record links, without their
// timestamps.
func logMessages(j *devserver.Job, id string) []string {
	var out []string
	for _, l := range j.LogLines(id) {
		_, msg, _ := strings.Cut(l, " ")
		out = append(out, msg)
	}
	return out
}

// hasLine reports whether lines holds line exactly.
func hasLine(lines []string, line string) bool {
	for _, l := range lines {
		if l == line {
			return true
		}
	}
	return false
}

// issues lists a record's issue messages of one type.
func issues(r taskagent.TimelineRecord, typ string) []string {
	var out []string
	if r.Issues == nil {
		return nil
	}
	for _, is := range *r.Issues {
		if is.Type != nil && strings.EqualFold(string(*is.Type), typ) {
			out = append(out, str(is.Message))
		}
	}
	return out
}

// recordStates returns, per record id, the states the agent reported for
// the job's plan, in the order its record updates were sent.
func recordStates(t *testing.T, srv *devserver.Server, planID string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, ex := range srv.Recorder().Exchanges() {
		if ex.Method != http.MethodPatch || ex.Resource != "records" || !strings.Contains(strings.ToLower(ex.Path), planID) || ex.Status != http.StatusOK {
			continue
		}
		var body struct {
			Value []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"value"`
		}
		if err := json.Unmarshal(ex.RequestBody, &body); err != nil {
			t.Fatalf("records body: %v", err)
		}
		for _, r := range body.Value {
			id := strings.ToLower(r.ID)
			if r.State == "" {
				continue
			}
			if s := out[id]; len(s) == 0 || s[len(s)-1] != r.State {
				out[id] = append(s, r.State)
			}
		}
	}
	return out
}

// taskRecords returns the job's Task records sorted by order.
func taskRecords(j *devserver.Job) []taskagent.TimelineRecord {
	var out []taskagent.TimelineRecord
	for _, r := range j.Timeline() {
		if r.Type != nil && *r.Type == "Task" {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(a, b int) bool { return num(out[a].Order) < num(out[b].Order) })
	return out
}

// secretsAbsent fails when any recorded byte of any exchange holds one of
// the forms.
func secretsAbsent(t *testing.T, srv *devserver.Server, forms map[string]string) {
	t.Helper()
	exs := srv.Recorder().Exchanges()
	if len(exs) == 0 {
		t.Fatal("the recorder holds no exchanges")
	}
	for _, ex := range exs {
		var hdr bytes.Buffer
		ex.RequestHeader.Write(&hdr)
		parts := map[string][]byte{
			"path": []byte(ex.Path + "?" + ex.Query), "request headers": hdr.Bytes(),
			"request body": ex.RequestBody, "response body": ex.ResponseBody,
		}
		for what, b := range parts {
			for name, f := range forms {
				if bytes.Contains(b, []byte(f)) {
					t.Errorf("%s (%q) leaked in the %s of %s %s", name, f, what, ex.Method, ex.Path)
				}
			}
		}
	}
}

// waitFor polls cond until it holds (a hang guard, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("GOAGENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

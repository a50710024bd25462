package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/testbin"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// hangGuard bounds every wait. It is not a timing claim: a healthy run takes
// a small fraction of it even on a loaded machine.
const hangGuard = 90 * time.Second

// agentBinary is the goagent built by TestMain; set once before any test.
var agentBinary string

func TestMain(m *testing.M) { testbin.Main(m.Run, &agentBinary, "e2e") }

// world is one test's emulator and the agents run against it.
type world struct {
	t      *testing.T
	srv    *devserver.Server
	dir    string
	caFile string // SSL_CERT_FILE for the agents

	mu    sync.Mutex
	procs []*proc
}

// newWorld starts an emulator for the test. Agents started through the world
// are killed, and the emulator checked for defects and protocol violations,
// when the test ends.
func newWorld(t *testing.T, o devserver.Options) *world {
	t.Helper()
	dir := t.TempDir()
	if o.Dir == "" {
		o.Dir = filepath.Join(dir, "emulator")
	}
	if o.PollHold == 0 {
		o.PollHold = 10 * time.Second
	}
	srv, err := devserver.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	w := &world{t: t, srv: srv, dir: dir}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close emulator: %v", err)
		}
	})
	t.Cleanup(func() {
		if bugs := srv.Bugs(); len(bugs) > 0 {
			t.Errorf("emulator defects (report them; not the agent's fault): %v", bugs)
		}
		if v := srv.Violations(); len(v) > 0 {
			t.Errorf("the agent violated the protocol:\n  %s", strings.Join(v, "\n  "))
		}
	})
	// One bundle for every server the agents talk to: the emulator's CA and
	// the certificate every httptest TLS server (the identity fakes) shares.
	ca, err := os.ReadFile(srv.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	w.caFile = filepath.Join(dir, "ca-bundle.pem")
	if err := os.WriteFile(w.caFile, append(ca, httptestCertPEM(t)...), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

// httptestCertPEM is the certificate of httptest's TLS servers.
func httptestCertPEM(t *testing.T) []byte {
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defer s.Close()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
}

// agent is one agent installation: a home with its work and state
// directories, and the environment its processes get.
type agent struct {
	w    *world
	name string
	home string
	env  map[string]string
}

// newAgent prepares an agent named name that registers with the emulator's
// administrator PAT unless the test changes env.
func (w *world) newAgent(name string) *agent {
	home := filepath.Join(w.dir, "agents", name+"-"+uuid.NewString()[:8])
	if err := os.MkdirAll(filepath.Join(home, "tmp"), 0o755); err != nil {
		w.t.Fatal(err)
	}
	return &agent{w: w, name: name, home: home, env: map[string]string{
		"AZP_URL":        w.srv.URL(),
		"AZP_POOL":       "Default",
		"AZP_AGENT_NAME": name,
		"AZP_WORK":       filepath.Join(home, "_work"),
		"AZP_TOKEN":      w.srv.PAT(),
		"AZP_KILL_GRACE": "2s",
		"HOME":           home,
		"TMPDIR":         filepath.Join(home, "tmp"),
		"SSL_CERT_FILE":  w.caFile,
		"PATH":           os.Getenv("PATH"),
	}}
}

// stateDir is where the agent keeps its registration by default: .goagent
// beside the work directory (DESIGN.md).
func (a *agent) stateDir() string { return filepath.Join(a.home, ".goagent") }

// set changes environment variables ("" removes one).
func (a *agent) set(kv ...string) *agent {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(a.env, kv[i])
		} else {
			a.env[kv[i]] = kv[i+1]
		}
	}
	return a
}

func (a *agent) environ() []string {
	var out []string
	for k, v := range a.env {
		out = append(out, k+"="+v)
	}
	return out
}

// proc is a running goagent process.
type proc struct {
	args     []string
	cmd      *exec.Cmd
	stdout   lockedBuffer
	stderr   lockedBuffer
	combined lockedBuffer
	done     chan struct{}
	code     int
}

// start runs goagent with args.
func (a *agent) start(args ...string) *proc {
	t := a.w.t
	t.Helper()
	p := &proc{args: args, done: make(chan struct{})}
	p.cmd = exec.Command(agentBinary, args...)
	p.cmd.Env = a.environ()
	p.cmd.Dir = a.home
	p.cmd.Stdout = io.MultiWriter(&p.stdout, &p.combined)
	p.cmd.Stderr = io.MultiWriter(&p.stderr, &p.combined)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start goagent: %v", err)
	}
	go func() {
		defer close(p.done)
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.code = 0
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			p.code = -1
		}
	}()
	a.w.mu.Lock()
	a.w.procs = append(a.w.procs, p)
	a.w.mu.Unlock()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Logf("goagent %s was still running at the end of the test; killed. Output:\n%s", strings.Join(args, " "), p.combined.String())
		}
	})
	return p
}

// run runs goagent with args to completion and returns its exit status.
func (a *agent) run(args ...string) *proc {
	a.w.t.Helper()
	p := a.start(args...)
	p.wait(a.w.t)
	return p
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(hangGuard):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("goagent %s did not exit; output:\n%s", strings.Join(p.args, " "), p.combined.String())
		return -1
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal goagent: %v", err)
	}
}

// expectExit waits and fails the test unless the status is want.
func (p *proc) expectExit(t *testing.T, want int) {
	t.Helper()
	if got := p.wait(t); got != want {
		t.Fatalf("goagent %s exited with %d, want %d; output:\n%s", strings.Join(p.args, " "), got, want, p.combined.String())
	}
}

// output is everything the process wrote, stdout and stderr interleaved.
func (p *proc) output() string { return p.combined.String() }

// outputs is everything every agent process of the world wrote.
func (w *world) outputs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, p := range w.procs {
		b.WriteString(p.output())
	}
	return b.String()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond until it holds; the hang guard fails the test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agentByName returns the emulator's view of an agent.
func (w *world) agentByName(name string) (taskagent.TaskAgent, bool) {
	for _, a := range w.srv.Agents("") {
		if a.Name != nil && strings.EqualFold(*a.Name, name) {
			return a, true
		}
	}
	return taskagent.TaskAgent{}, false
}

// sessionOf returns the open session of the named agent.
func (w *world) sessionOf(name string) (devserver.SessionInfo, bool) {
	a, ok := w.agentByName(name)
	if !ok {
		return devserver.SessionInfo{}, false
	}
	for _, s := range w.srv.Sessions() {
		if s.AgentID == *a.Id {
			return s, true
		}
	}
	return devserver.SessionInfo{}, false
}

// waitListening waits until the named agent has a session and is polling.
func (w *world) waitListening(t *testing.T, name string) devserver.SessionInfo {
	t.Helper()
	var s devserver.SessionInfo
	eventually(t, "agent "+name+" to open a session and poll", func() bool {
		var ok bool
		s, ok = w.sessionOf(name)
		return ok && s.Polls > 0
	})
	return s
}

// exchanges returns the recorded exchanges matching method and resource.
func (w *world) exchanges(method, resource string) []devserver.Exchange {
	var out []devserver.Exchange
	for _, e := range w.srv.Recorder().Exchanges() {
		if (method == "" || e.Method == method) && (resource == "" || e.Resource == resource) {
			out = append(out, e)
		}
	}
	return out
}

// scriptJob is a job with one CmdLine step running script.
func scriptJob(display, script string) *wire.JobRequestMessage {
	return &wire.JobRequestMessage{
		JobDisplayName: display, JobName: "__default",
		Steps: []wire.Step{{
			Type: "task", ID: uuid.NewString(), Name: "CmdLine", DisplayName: "Run a script",
			Reference: wire.TaskReference{ID: wire.TaskCmdLine, Name: "CmdLine", Version: "2.250.1"},
			Inputs:    map[string]string{"script": script},
		}},
		Variables: map[string]wire.VariableValue{},
	}
}

// queue queues a job message in the Default pool.
func (w *world) queue(t *testing.T, msg *wire.JobRequestMessage) *devserver.Job {
	t.Helper()
	j, err := w.srv.QueueJob(msg, devserver.QueueOptions{})
	if err != nil {
		t.Fatalf("queue job: %v", err)
	}
	return j
}

// result waits for a job to end and returns its result.
func result(t *testing.T, j *devserver.Job) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	r, err := j.Wait(ctx)
	if err != nil && !errors.Is(err, devserver.ErrJobAbandoned) {
		t.Fatalf("job %s: %v", j.ID(), err)
	}
	return r
}

// expectResult waits for the job and fails the test unless it ended with
// want. An agent that exits without ending the job fails the test at once,
// with its output.
func expectResult(t *testing.T, j *devserver.Job, want string, p *proc) {
	t.Helper()
	if p != nil {
		select {
		case <-j.Done():
		case <-p.done:
			select {
			case <-j.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("goagent %s exited with %d before job %q ended (state %s); output:\n%s", strings.Join(p.args, " "), p.code, j.Message().JobDisplayName, j.State(), p.output())
			}
		case <-time.After(hangGuard):
			t.Fatalf("job %q did not end (state %s); agent output:\n%s", j.Message().JobDisplayName, j.State(), p.output())
		}
	}
	if got := result(t, j); got != want {
		out := ""
		if p != nil {
			out = p.output()
		}
		t.Fatalf("job %q ended %q, want %q; agent output:\n%s", j.Message().JobDisplayName, got, want, out)
	}
}

// gate is a file a step waits for, so a test decides when the step ends
// without guessing how long anything takes.
type gate string

func newGate(t *testing.T) gate { return gate(filepath.Join(t.TempDir(), "gate")) }

// wait is the shell snippet that blocks until the gate opens.
func (g gate) wait() string {
	return fmt.Sprintf("while [ ! -e %q ]; do sleep 0.05; done", string(g))
}

func (g gate) open(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(string(g), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readPID waits for a file holding a process id and returns it.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	eventually(t, "pid file "+path, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

// alive reports whether a process exists and is not a zombie (the step's
// orphans are reparented to an init that may not reap them at once).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state …: comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return syscall.Kill(pid, 0) == nil
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// randomSecret is a fresh secret value that cannot occur by chance.
func randomSecret(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s%x", prefix, b)
}

// fileMode returns the permission bits of path.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

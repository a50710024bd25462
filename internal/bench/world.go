package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/devserver/pipeline"
	"github.com/goagent-dev/goagent/internal/wire"
)

// hangGuard bounds every wait on the agent or the emulator. It is not a
// timing claim: it only turns a hung agent into an error instead of a hung
// `make bench`.
const hangGuard = 3 * time.Minute

// emulator is an in-process Azure DevOps emulator the agents under test talk
// to over loopback HTTPS, as they would to the service.
type emulator struct {
	srv    *devserver.Server
	dir    string
	builds int // build ids handed out, so every queued run has its own plan
	mu     sync.Mutex
}

func startEmulator(ctx context.Context, dir string, hold time.Duration, pools ...string) (*emulator, error) {
	srv, err := devserver.Start(ctx, devserver.Options{
		Dir:      filepath.Join(dir, "emulator"),
		Pools:    pools,
		PollHold: hold,
	})
	if err != nil {
		return nil, err
	}
	return &emulator{srv: srv, dir: dir}, nil
}

func (e *emulator) close() { e.srv.Close() }

// agentOptions tune one agent process.
type agentOptions struct {
	Path string   // PATH for the agent and its steps; default the bench's
	Env  []string // extra KEY=VALUE
}

// agentProc is one running `goagent run`.
type agentProc struct {
	name    string
	home    string
	cmd     *exec.Cmd
	started time.Time // just before the process was created
	out     *tailBuffer
	done    chan struct{}
	waitErr error
}

// startAgent starts `goagent run` with a fresh home (state directory, work
// directory, temp): a fresh registration with a newly generated RSA key.
func (e *emulator) startAgent(binary, dir, name, pool string, o agentOptions) (*agentProc, error) {
	home := filepath.Join(dir, "agents", name+"-"+uuid.NewString()[:8])
	if err := os.MkdirAll(filepath.Join(home, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("start agent %s: %w", name, err)
	}
	path := o.Path
	if path == "" {
		path = os.Getenv("PATH")
	}
	env := []string{
		"AZP_URL=" + e.srv.URL(),
		"AZP_POOL=" + pool,
		"AZP_AGENT_NAME=" + name,
		"AZP_WORK=" + filepath.Join(home, "_work"),
		"AZP_STATE_DIR=" + filepath.Join(home, ".goagent"),
		"AZP_TOKEN=" + e.srv.PAT(),
		"HOME=" + home,
		"TMPDIR=" + filepath.Join(home, "tmp"),
		"SSL_CERT_FILE=" + e.srv.CAFile(),
		"GIT_SSL_CAINFO=" + e.srv.CAFile(),
		"LC_ALL=C",
		"PATH=" + path,
	}
	env = append(env, o.Env...)
	p := &agentProc{name: name, home: home, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "run")
	p.cmd.Env = env
	p.cmd.Dir = home
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %s (%s): %w", name, binary, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM (the agent deletes its session and exits) and waits;
// an agent that does not exit in time is killed.
func (p *agentProc) stop() error {
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("agent %s did not exit within 30s of SIGTERM; killed. Output:\n%s", p.name, p.out.String())
	}
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *agentProc) exitError() error {
	return fmt.Errorf("agent %s exited early (%v). Output:\n%s", p.name, p.waitErr, p.out.String())
}

// status reads the agent's memory accounting from the kernel.
func (p *agentProc) status() (procStatus, error) {
	return readProcStatus(p.cmd.Process.Pid)
}

// waitSession waits until the agent has an open session and a poll in
// flight, and returns the session.
func (e *emulator) waitSession(ctx context.Context, p *agentProc) (devserver.SessionInfo, error) {
	deadline := time.Now().Add(hangGuard)
	for {
		if s, ok := e.sessionOf(p.name); ok && s.Polls > 0 {
			return s, nil
		}
		if p.exited() {
			return devserver.SessionInfo{}, p.exitError()
		}
		if time.Now().After(deadline) {
			return devserver.SessionInfo{}, fmt.Errorf("agent %s opened no session within %s. Output:\n%s", p.name, hangGuard, p.out.String())
		}
		select {
		case <-ctx.Done():
			return devserver.SessionInfo{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (e *emulator) sessionOf(name string) (devserver.SessionInfo, bool) {
	id := 0
	for _, a := range e.srv.Agents("") {
		if a.Name != nil && strings.EqualFold(*a.Name, name) && a.Id != nil {
			id = *a.Id
		}
	}
	if id == 0 {
		return devserver.SessionInfo{}, false
	}
	for _, s := range e.srv.Sessions() {
		if s.AgentID == id {
			return s, true
		}
	}
	return devserver.SessionInfo{}, false
}

// runSpec is one pipeline run to queue.
type runSpec struct {
	Pool  string
	YAML  string
	Repos map[string]pipeline.Repo
	// Secrets become secret variables of the run.
	Secrets map[string]string
}

// queue compiles the YAML (one job) and queues it in the pool. Every run gets
// its own build id (so its own plan) and a fresh job id: the compiler derives
// job ids from names, the same in every run, as the service does.
func (e *emulator) queue(spec runSpec) (*devserver.Job, error) {
	e.mu.Lock()
	e.builds++
	build := e.builds
	e.mu.Unlock()
	p, err := pipeline.Compile([]byte(spec.YAML), pipeline.Options{
		BuildID:      build,
		Repositories: spec.Repos,
		Secrets:      spec.Secrets,
	})
	if err != nil {
		return nil, fmt.Errorf("compile benchmark pipeline: %w", err)
	}
	if len(p.Jobs) != 1 {
		return nil, fmt.Errorf("benchmark pipeline has %d jobs, want 1", len(p.Jobs))
	}
	j := p.Jobs[0]
	return e.srv.QueueJob(nil, devserver.QueueOptions{
		Pool: spec.Pool,
		Bind: func(b devserver.Binding) (*wire.JobRequestMessage, error) {
			m, err := j.Bind(pipeline.Connection{CollectionURL: b.CollectionURL, AccessToken: b.AccessToken, RequestID: b.RequestID, ServerName: b.ServerName})
			if err != nil {
				return nil, err
			}
			m.JobID = uuid.NewString()
			return m, nil
		},
	})
}

// wait waits for a job to end and fails unless it succeeded.
func wait(ctx context.Context, j *devserver.Job, p *agentProc) error {
	ctx, cancel := context.WithTimeout(ctx, hangGuard)
	defer cancel()
	select {
	case <-j.Done():
	case <-p.done:
		return p.exitError()
	case <-ctx.Done():
		return fmt.Errorf("job %s did not finish within %s. Agent output:\n%s", j.ID(), hangGuard, p.out.String())
	}
	res, err := j.Wait(ctx)
	if err != nil {
		return err
	}
	if res != "succeeded" {
		return fmt.Errorf("benchmark job %s ended %s; its log:\n%s", j.ID(), res, tail(joinLogs(j), 4000))
	}
	return nil
}

// joinLogs returns every log of a job's plan, in log id order.
func joinLogs(j *devserver.Job) string {
	logs := j.Logs()
	ids := make([]int, 0, len(logs))
	for id := range logs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(logs[id])
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// stepTimes returns the start and finish times the agent reported for the
// job's steps (the message's steps, in order), skipping those it has none for.
func stepTimes(j *devserver.Job) (starts, finishes []time.Time, err error) {
	byID := map[string]int{}
	for i, s := range j.Message().Steps {
		byID[strings.ToLower(s.ID)] = i
	}
	starts = make([]time.Time, len(byID))
	finishes = make([]time.Time, len(byID))
	for _, r := range j.Timeline() {
		if r.Id == nil {
			continue
		}
		i, ok := byID[strings.ToLower(r.Id.String())]
		if !ok {
			continue
		}
		if r.StartTime == nil || r.FinishTime == nil {
			return nil, nil, fmt.Errorf("step record %s has no start or finish time", r.Id)
		}
		starts[i], finishes[i] = r.StartTime.Time, r.FinishTime.Time
	}
	for i := range starts {
		if starts[i].IsZero() {
			return nil, nil, fmt.Errorf("the timeline of job %s has no record for step %d", j.ID(), i+1)
		}
	}
	return starts, finishes, nil
}

// procStatus is the part of /proc/PID/status the benchmarks read.
type procStatus struct {
	VmRSS, VmHWM int64 // bytes
}

func readProcStatus(pid int) (procStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return procStatus{}, fmt.Errorf("read memory accounting of process %d: %w", pid, err)
	}
	return parseProcStatus(b)
}

// parseProcStatus reads VmRSS and VmHWM ("VmRSS:\t   12345 kB").
func parseProcStatus(b []byte) (procStatus, error) {
	var st procStatus
	found := 0
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		var dst *int64
		switch string(k) {
		case "VmRSS":
			dst = &st.VmRSS
		case "VmHWM":
			dst = &st.VmHWM
		default:
			continue
		}
		f := strings.Fields(string(v))
		if len(f) != 2 || f[1] != "kB" {
			return procStatus{}, fmt.Errorf("parse %s in /proc status: unexpected %q", k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return procStatus{}, fmt.Errorf("parse %s in /proc status: %w", k, err)
		}
		*dst = n << 10
		found++
	}
	if found != 2 {
		return procStatus{}, errors.New("parse /proc status: no VmRSS and VmHWM lines (not Linux, or a kernel thread)")
	}
	return st, nil
}

// tailBuffer keeps the last max bytes written (an agent's output, for errors).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

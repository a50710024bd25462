package jobs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// The large-output test runs its agent in a child process (this test binary,
// running TestAgentProcess) so that the memory it measures is the agent's
// alone: the emulator in the parent keeps every uploaded byte.
const (
	envAgentURL   = "GOAGENT_TEST_AGENT_URL"
	envAgentPAT   = "GOAGENT_TEST_AGENT_PAT"
	envAgentCA    = "GOAGENT_TEST_AGENT_CA"
	envAgentDir   = "GOAGENT_TEST_AGENT_DIR"
	envAgentStats = "GOAGENT_TEST_AGENT_STATS"
)

// largeLine is line i of the large output: a 9-digit sequence number and
// padding, 1000 bytes with the newline.
func largeLine(i int, pad string) string { return fmt.Sprintf("%09d %s", i, pad) }

const largePad = 990 // bytes of padding per line

// agentStats is what the agent process measured.
type agentStats struct {
	PeakHeapInuse uint64 `json:"peakHeapInuse"`
	PeakSys       uint64 `json:"peakSys"`
	TotalAlloc    uint64 `json:"totalAlloc"`
	Samples       int    `json:"samples"`
}

// TestAgentProcess is the agent of TestEmulatorLargeOutput; it does nothing
// in a normal run.
func TestAgentProcess(t *testing.T) {
	url := os.Getenv(envAgentURL)
	if url == "" {
		t.Skip("the agent process of TestEmulatorLargeOutput; runs only as its child")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	tr, err := azdo.NewTransport(azdo.TransportOptions{CAFiles: []string{os.Getenv(envAgentCA)}})
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv(envAgentDir)
	runner := newTestRunner(t, "big-agent")
	runner.WorkDir = filepath.Join(dir, "_work")
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	writeAgentKey(t, state, 0)
	a := newAgent(t, url, os.Getenv(envAgentPAT), &http.Client{Transport: tr}, runner, state)

	// Sample the heap while the agent runs.
	var st agentStats
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			st.PeakHeapInuse = max(st.PeakHeapInuse, ms.HeapInuse)
			st.PeakSys = max(st.PeakSys, ms.Sys)
			st.TotalAlloc = ms.TotalAlloc
			st.Samples++
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	if err := a.Run(ctx); err != nil && ctx.Err() == nil {
		t.Errorf("agent: %v", err)
	}
	<-sampled
	b, _ := json.Marshal(st)
	if err := os.WriteFile(os.Getenv(envAgentStats), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEmulatorLargeOutput: a step prints largeOutputBytes (200 MB without
// -race) in 1000-byte lines. The agent's heap stays bounded, and every line
// arrives in the uploaded logs exactly once and in order — in the step's
// log and in the job's — read back page by page from the emulator's REST
// API with a running count and checksum, never all at once.
func TestEmulatorLargeOutput(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{agents: -1, server: func(o *devserver.Options) {
		o.MaxExchanges = 64 // page bodies are recorded too; keep the parent lean
	}})
	dir := t.TempDir()
	stats := filepath.Join(dir, "stats.json")
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentProcess$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(),
		envAgentURL+"="+l.srv.URL(), envAgentPAT+"="+l.srv.PAT(), envAgentCA+"="+l.srv.CAFile(),
		envAgentDir+"="+dir, envAgentStats+"="+stats)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopAgent := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("agent process: %v\n%s", err, out.String())
			}
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Errorf("agent process did not stop\n%s", out.String())
		}
	}
	stopped := false
	defer func() {
		if !stopped {
			stopAgent()
		}
	}()
	l.waitOnline(1)

	lines := largeOutputBytes / (largePad + 10)
	script := fmt.Sprintf(`awk -v n=%d 'BEGIN { p = sprintf("%%%ds", ""); gsub(/ /, "x", p); for (i = 0; i < n; i++) printf "%%09d %%s\n", i, p }'`, lines, largePad)
	j := l.queue(emuMessage(nil, stepSpec{script: script}))
	res := l.wait(j)
	stopAgent()
	stopped = true
	if res != "succeeded" {
		t.Fatalf("result %s\n%s", res, out.String())
	}

	// Memory: a generous bound, far below what the output would need.
	var st agentStats
	b, err := os.ReadFile(stats)
	if err != nil || json.Unmarshal(b, &st) != nil || st.Samples == 0 {
		t.Fatalf("agent stats %q: %v\n%s", b, err, out.String())
	}
	t.Logf("%d lines, %d MB; agent peak heap in use %d MB, peak from the OS %d MB, allocated in total %d MB, %d samples",
		lines, largeOutputBytes>>20, st.PeakHeapInuse>>20, st.PeakSys>>20, st.TotalAlloc>>20, st.Samples)
	if st.PeakHeapInuse > 150<<20 {
		t.Errorf("the agent's heap in use peaked at %d MB", st.PeakHeapInuse>>20)
	}

	// Every line once, in order, in both logs.
	pad := strings.Repeat("x", largePad)
	want := sha256.New()
	for i := range lines {
		want.Write([]byte(largeLine(i, pad) + "\n"))
	}
	wantSum := want.Sum(nil)
	for _, id := range []string{stepID(0), j.ID()} {
		n, sum, pages := readLog(t, l, j, id, pad)
		if n != lines || !bytes.Equal(sum, wantSum) {
			t.Errorf("log of %s: %d of %d lines, checksum match %v", id, n, lines, bytes.Equal(sum, wantSum))
		}
		if pages < largeOutputBytes/report8MiB {
			t.Errorf("log of %s came in %d pages", id, pages)
		}
	}
	l.checkViolations()
}

const report8MiB = 8 << 20

// readLog reads every page of a record's log from the emulator's REST API,
// one page at a time, and returns how many generated lines it held, their
// checksum, and the number of pages. A line out of sequence fails the test.
func readLog(t *testing.T, l *lab, j *devserver.Job, recordID, pad string) (int, []byte, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := azdo.New(l.srv.URL(), azdo.StaticToken{Scheme: "Bearer", Value: j.Token()}, azdo.Options{HTTPClient: l.http})
	if err != nil {
		t.Fatal(err)
	}
	m := j.Message()
	route := map[string]string{"scopeIdentifier": m.Plan.ScopeIdentifier, "hubName": m.Plan.PlanType, "planId": m.Plan.PlanID}
	var list struct {
		Value []taskagent.TaskLog `json:"value"`
	}
	if _, err := c.Send(ctx, azdo.Request{Method: http.MethodGet, Location: wire.LocationLogs, APIVersion: wire.APITask, RouteValues: route}, &list); err != nil {
		t.Fatalf("list logs: %v", err)
	}
	var ids []int
	for _, lg := range list.Value {
		if lg.Path != nil && strings.EqualFold(*lg.Path, `logs\`+recordID) {
			ids = append(ids, *lg.Id)
		}
	}
	sort.Ints(ids)
	sum := sha256.New()
	next := 0
	for _, id := range ids {
		rv := map[string]string{"logId": strconv.Itoa(id)}
		for k, v := range route {
			rv[k] = v
		}
		var page struct {
			Value []string `json:"value"`
		}
		if _, err := c.Send(ctx, azdo.Request{Method: http.MethodGet, Location: wire.LocationLogs, APIVersion: wire.APITask, RouteValues: rv}, &page); err != nil {
			t.Fatalf("read log %d: %v", id, err)
		}
		for _, line := range page.Value {
			_, msg, _ := strings.Cut(line, " ")
			if len(msg) != 10+len(pad) || msg[9] != ' ' || msg[10:] != pad {
				continue // the step's own lines (Starting:, the command, …)
			}
			n, err := strconv.Atoi(msg[:9])
			if err != nil || n != next {
				t.Fatalf("log %d: line %q where line %d was due", id, msg[:9], next)
			}
			sum.Write([]byte(msg + "\n"))
			next++
		}
	}
	return next, sum.Sum(nil), len(ids)
}

//go:build linux

package webui

import (
	"context"
	"fmt"
	"net"
	"slices"
	"syscall"
	"testing"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// smallBuffers shrinks a socket's kernel buffers, so that a client that
// stops reading stalls the server's writes after a few kilobytes rather
// than megabytes.
func smallBuffers(opt int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 4096) })
		if err != nil {
			return err
		}
		return serr
	}
}

// A client that stops reading never slows the emulator or the agent: its
// queue stays within its bound, overflows, and once the client reads again
// it is told to resync, gets a snapshot, and ends up with exactly the
// emulator's state and console.
func TestStalledClientIsToldToResync(t *testing.T) {
	const limit = 8
	srv := startEmulator(t)
	u, err := New(srv, Options{QueueLimit: limit, WriteTimeout: 4 * hangGuard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	// Accepted sockets inherit the listening socket's send buffer size.
	lc := net.ListenConfig{Control: smallBuffers(syscall.SO_SNDBUF)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := u.ServeListener(context.Background(), ln)

	f := newFakeRun(t, srv, "Build")
	run := f.job.PlanID()
	step := startedStep(t, f)

	d := websocket.Dialer{HandshakeTimeout: hangGuard, NetDialContext: (&net.Dialer{Control: smallBuffers(syscall.SO_RCVBUF)}).DialContext, ReadBufferSize: 1024}
	conn, _, err := d.Dial(wsURL(url), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	v := &viewer{t: t, conn: conn, runs: map[string]Run{}, records: map[string]Record{}, jobs: map[string]Job{}}
	v.next() // hello
	v.watch(run, step.String())
	v.until("the snapshot", func() bool { return slices.Contains(v.types, "snapshot") })

	// The client now reads nothing. Every update below is a real HTTP call
	// to the emulator; each returns, so nothing waits on the client.
	extra := make([]uuid.UUID, 50)
	for i := range extra {
		extra[i] = uuid.New()
	}
	line := 1
	for round := 0; u.stats().overflows == 0; round++ {
		if round == 200 {
			t.Fatalf("the client never fell behind after %d rounds of updates (stats %+v)", round, u.stats())
		}
		recs := make([]taskagent.TimelineRecord, len(extra))
		for i, id := range extra {
			recs[i] = f.record(id, "Task", fmt.Sprintf("step %d (round %d)", i, round), 10+i, "inProgress", "")
		}
		f.update(recs...)
		f.feed(step, int64(line), numbered("line", line, 20)...)
		line += 20
	}
	if got := u.stats().maxQueue; got > limit {
		t.Fatalf("a queue held %d messages, over its limit of %d", got, limit)
	}
	recs := []taskagent.TimelineRecord{f.record(step, "Task", "Compile", 1, "completed", "succeeded"), f.record(f.jobID(), "Job", "Build", 1, "completed", "succeeded")}
	for i, id := range extra {
		recs = append(recs, f.record(id, "Task", fmt.Sprintf("step %d", i), 10+i, "completed", "succeeded"))
	}
	f.update(recs...)
	f.complete("succeeded")

	// The client reads again.
	n := len(v.types)
	want := f.job.Feed(step.String())
	v.until("the resync and the final state", func() bool {
		return v.runs[run].State == "completed" && len(v.lines) == len(want) && v.records[extra[49].String()].Result == "succeeded"
	})
	i := slices.Index(v.types[n:], "resync")
	if i < 0 {
		t.Fatalf("no resync after the stall: %v", v.types[n:])
	}
	if after := v.types[n+i+1:]; len(after) < 2 || after[0] != "runs" || after[1] != "snapshot" {
		t.Fatalf("after resync: %v, want runs then snapshot", after)
	}
	if !slices.Equal(v.lines, want) {
		t.Fatalf("console after the stall differs from the emulator's feed (%d vs %d lines)", len(v.lines), len(want))
	}
	for _, r := range f.job.Timeline() {
		got := v.records[r.Id.String()]
		if got.Name != *r.Name || got.State != string(*r.State) {
			t.Fatalf("record %s: %q %s, the emulator has %q %s", r.Id, got.Name, got.State, *r.Name, *r.State)
		}
	}
	if u.stats().maxQueue > limit {
		t.Fatalf("a queue held %d messages, over its limit of %d", u.stats().maxQueue, limit)
	}
}

// When the hub itself stalls, the emulator drops events rather than wait;
// the hub then re-reads the emulator and its clients resync to the truth.
func TestDroppedEventsAreRecovered(t *testing.T) {
	srv := startEmulator(t)
	u, url := startUI(t, srv, Options{EventBuffer: 4})
	f := newFakeRun(t, srv, "Build")
	run := f.job.PlanID()
	step := startedStep(t, f)
	f.feed(step, 1, numbered("line", 1, 10)...)

	v := newViewer(t, url)
	v.watch(run, step.String())
	v.until("the first lines", v.hasLines(10))

	u.hub.mu.Lock() // the hub cannot apply events now
	for i := 1; i < 30; i++ {
		f.feed(step, int64(1+10*i), numbered("line", 1+10*i, 10)...)
	}
	f.update(f.record(step, "Task", "Compile", 1, "completed", "succeeded"), f.record(f.jobID(), "Job", "Build", 1, "completed", "succeeded"))
	f.complete("succeeded")
	u.hub.mu.Unlock()

	want := f.job.Feed(step.String())
	v.until("the final state", func() bool {
		return v.runs[run].State == "completed" && len(v.lines) == len(want) && v.records[step.String()].Result == "succeeded"
	})
	if !slices.Equal(v.lines, want) || len(want) != 300 {
		t.Fatalf("console after recovery: %d lines, want the emulator's %d", len(v.lines), len(want))
	}
	st := u.stats()
	if st.recovered == 0 || !slices.Contains(v.types, "resync") {
		t.Fatalf("no recovery seen (stats %+v, messages %v): the test did not make the emulator drop events", st, v.types)
	}
	if st.rebuilt != 0 {
		t.Fatalf("a console was rebuilt (%d) although the re-read only extended it", st.rebuilt)
	}
}

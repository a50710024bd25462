package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/devserver/pipeline"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/listener"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/script"
	"github.com/goagent-dev/goagent/internal/wire"
)

// The hot path of a step's output, in-process, for pprof:
//
//	go test -run '^$' -bench StepOutput -cpuprofile cpu.out ./internal/bench
//	go tool pprof -top cpu.out
//
// Each op runs a job whose one step prints benchOutputLines lines with awk
// (as the log benchmark of `make bench` does, 50 secrets registered).
// "runner" hands the lines to a reporter that only counts them: line
// splitting, logging-command parsing, masking. "reported" is the production
// wiring (listener.Engine: the runner and the HTTP reporter) posting the
// console feed and uploading the log pages to the emulator over loopback
// HTTPS.
const benchOutputLines = 200_000

func BenchmarkStepOutput(b *testing.B) {
	secrets := map[string]string{}
	var refs []string
	for i := range 50 {
		n := fmt.Sprintf("benchSecret%02d", i+1)
		secrets[n] = fmt.Sprintf("s3cr3t%02dq7v9w2k4m6p8r1t3", i)
		refs = append(refs, "$("+n+")")
	}
	yaml := "steps:\n- checkout: none\n- script: |\n"
	for _, l := range strings.Split(strings.TrimRight(awkProducer.script(benchOutputLines, refs), "\n"), "\n") {
		yaml += "    " + l + "\n"
	}
	p, err := pipeline.Compile([]byte(yaml), pipeline.Options{Secrets: secrets})
	if err != nil {
		b.Fatal(err)
	}
	size := int64(benchOutputLines*97 + benchOutputLines/1000*(1+len(secrets["benchSecret01"])))

	b.Run("runner", func(b *testing.B) {
		msg, err := p.Jobs[0].Bind(pipeline.Connection{CollectionURL: "https://127.0.0.1:9/bench/", AccessToken: "eyJ0eXAiOiJKV1QifQ.eyJiZW5jaCI6MX0.c2ln", RequestID: 1})
		if err != nil {
			b.Fatal(err)
		}
		r := benchRunner(b)
		rep := &countingReporter{}
		b.SetBytes(size)
		for b.Loop() {
			res, err := r.Run(context.Background(), jobs.Job{Message: msg, Reporter: rep})
			if err != nil || res != jobs.ResultSucceeded {
				b.Fatalf("job: %s, %v", res, err)
			}
		}
		if got := rep.lines.Load(); got < int64(b.N*benchOutputLines) {
			b.Fatalf("the reporter got %d lines, want at least %d", got, b.N*benchOutputLines)
		}
	})

	b.Run("reported", func(b *testing.B) {
		srv, err := devserver.Start(context.Background(), devserver.Options{Dir: b.TempDir(), JobTokenGrace: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		tr, err := azdo.NewTransport(azdo.TransportOptions{CAFiles: []string{srv.CAFile()}})
		if err != nil {
			b.Fatal(err)
		}
		hc := &http.Client{Transport: tr}
		engine := &listener.Engine{Runner: benchRunner(b), PagesDir: filepath.Join(b.TempDir(), "pages")}
		b.SetBytes(size)
		for b.Loop() {
			// No agent is online: the job stays queued and its token valid,
			// and the engine reports to its plan as the listener would.
			b.StopTimer()
			h, err := srv.QueueJob(nil, devserver.QueueOptions{Bind: func(bd devserver.Binding) (*wire.JobRequestMessage, error) {
				m, err := p.Jobs[0].Bind(pipeline.Connection{CollectionURL: bd.CollectionURL, AccessToken: bd.AccessToken, RequestID: bd.RequestID, ServerName: bd.ServerName})
				if err == nil {
					m.JobID = ""
					m.Plan.PlanID = ""
					m.Timeline.ID = ""
				}
				return m, err
			}})
			if err != nil {
				b.Fatal(err)
			}
			msg := h.Message()
			c, err := azdo.New(msg.SystemConnection().URL, azdo.StaticToken{Scheme: "Bearer", Value: h.Token()}, azdo.Options{HTTPClient: hc})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			res, err := engine.RunJob(context.Background(), &listener.Job{Message: msg, Client: c})
			if err != nil || res != jobs.ResultSucceeded {
				b.Fatalf("job: %s, %v", res, err)
			}
			// The emulator notes that nobody renewed the job request (the
			// listener's part, not on this path); what matters here is that
			// every line arrived, masked.
			b.StopTimer()
			if err := checkLog(h, secrets, benchOutputLines); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// benchRunner is the production runner (cmd/goagent) with the script steps.
func benchRunner(b *testing.B) *jobs.Runner {
	home := b.TempDir()
	return &jobs.Runner{
		Registry: steps.NewRegistry(script.Definitions()...),
		WorkDir:  filepath.Join(home, "_work"),
		Agent:    jobs.AgentInfo{Name: "bench", Version: "4.255.0", GoVersion: "bench", MachineName: "bench", HomeDir: home},
		Env:      []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LC_ALL=C"},
	}
}

// countingReporter is a jobs.Reporter that keeps nothing but counts.
type countingReporter struct {
	lines atomic.Int64
}

func (r *countingReporter) UpdateRecord(jobs.Record)                      {}
func (r *countingReporter) WriteLine(string, string)                      { r.lines.Add(1) }
func (r *countingReporter) WriteLines(_ string, lines []string)           { r.lines.Add(int64(len(lines))) }
func (r *countingReporter) Attach(string, string, string, string)         {}
func (r *countingReporter) UpdateDetailRecord(string, jobs.DetailRecord)  {}
func (r *countingReporter) Finish(context.Context, jobs.Completion) error { return nil }

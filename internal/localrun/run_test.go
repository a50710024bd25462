package localrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/checkout"
	"github.com/goagent-dev/goagent/internal/steps/script"
)

// hangGuard bounds a run in these tests; a healthy one takes a second or two.
const hangGuard = 2 * time.Minute

func registry() *steps.Registry {
	return steps.NewRegistry(append(script.Definitions(), checkout.Definition())...)
}

// console collects the output and tells when a text appeared.
type console struct {
	mu    sync.Mutex
	b     bytes.Buffer
	watch string
	seen  chan struct{}
	once  sync.Once
}

func newConsole(watch string) *console { return &console{watch: watch, seen: make(chan struct{})} }

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.Write(p)
	if c.watch != "" && strings.Contains(c.b.String(), c.watch) {
		c.once.Do(func() { close(c.seen) })
	}
	return len(p), nil
}

func (c *console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

func writePipeline(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "pipeline.yml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func guard(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func TestRunSucceeds(t *testing.T) {
	f := writePipeline(t, `
variables:
  name: world
jobs:
- job: A
  steps:
  - checkout: none
  - bash: |
      echo "hello $(name) from $(Agent.Name)"
      echo "secret: $(token)"
      echo "##vso[task.setvariable variable=v;isOutput=true]x"
    name: s
- job: B
  dependsOn: A
  condition: eq(dependencies.A.outputs['s.v'], 'x')
  steps:
  - checkout: none
  - script: |
      echo "B ran"
      echo "##vso[build.updatebuildnumber]renamed-7"
      echo "##vso[build.addbuildtag]local"
`)
	out := newConsole("")
	pool := t.TempDir()
	var info RunInfo
	sum, err := Run(guard(t), Options{
		File: f, Vars: map[string]string{"name": "tester"}, Secrets: map[string]string{"token": "tok-abcdef-123456"},
		Registry: registry(), Stdout: out, PoolDir: pool, AgentVersion: "4.275.0", GoagentVersion: "test",
		OnStart: func(i RunInfo) { info = i },
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	text := out.String()
	for _, s := range []string{"hello tester from local-agent", "secret: ***", "B ran", "Pipeline succeeded", "Run renamed to renamed-7", "Tags: local"} {
		if !strings.Contains(text, s) {
			t.Errorf("the console lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "tok-abcdef-123456") {
		t.Errorf("the console shows the secret:\n%s", text)
	}
	if sum.Result != "succeeded" || len(sum.Jobs) != 2 || sum.Jobs[0].Result != "succeeded" || sum.Jobs[1].Result != "succeeded" {
		t.Fatalf("summary %+v", sum)
	}
	if sum.BuildNumber != "renamed-7" || strings.Join(sum.Tags, ",") != "local" {
		t.Errorf("the summary's build number %q and tags %q", sum.BuildNumber, sum.Tags)
	}
	if info.Server == nil || info.RunID != sum.RunID || info.Pipeline == nil || len(info.Pipeline.Jobs) != 2 {
		t.Errorf("OnStart got %+v", info)
	}
	// The emulator saw the production path, without protocol violations.
	if v := info.Server.Violations(); len(v) > 0 {
		t.Errorf("protocol violations: %v", v)
	}
	var stepNames []string
	for _, s := range sum.Jobs[0].Steps {
		stepNames = append(stepNames, s.Name)
	}
	if strings.Join(stepNames, ",") != "Initialize job,Bash,Finalize Job" {
		t.Errorf("steps of A: %v", stepNames)
	}
	// --pool-dir keeps the agent's work directory.
	if _, err := os.Stat(filepath.Join(pool, agentName, "_work")); err != nil {
		t.Errorf("pool directory: %v", err)
	}
}

func TestRunFails(t *testing.T) {
	f := writePipeline(t, `
jobs:
- job: A
  steps:
  - checkout: none
  - script: exit 4
    displayName: Break
- job: B
  dependsOn: A
  steps:
  - checkout: none
  - script: echo never
`)
	out := newConsole("")
	sum, err := Run(guard(t), Options{File: f, Registry: registry(), Stdout: out})
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), `job A failed at step "Break"`) {
		t.Fatalf("error %v\n%s", err, out)
	}
	if sum.Result != "failed" || sum.Jobs[1].Result != "skipped" || sum.Jobs[1].Reason != "condition succeeded() was false" || sum.BuildNumber != "" || len(sum.Tags) != 0 {
		t.Errorf("summary %+v", sum)
	}
}

func TestRunInterrupted(t *testing.T) {
	f := writePipeline(t, `
jobs:
- job: A
  steps:
  - checkout: none
  - bash: echo started; sleep 120; echo finished
  - script: echo cleanup
    condition: always()
- job: B
  dependsOn: A
  condition: always()
  steps:
  - checkout: none
  - script: echo B
`)
	out := newConsole("started")
	ctx, cancel := context.WithCancel(guard(t))
	go func() {
		<-out.seen
		cancel()
	}()
	sum, err := Run(ctx, Options{File: f, Registry: registry(), Stdout: out, KillGrace: time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v\n%s", err, out)
	}
	text := out.String()
	for _, s := range []string{"Canceling job A", "cleanup", "Pipeline canceled"} {
		if !strings.Contains(text, s) {
			t.Errorf("the console lacks %q:\n%s", s, text)
		}
	}
	if strings.Contains(text, "\n  finished\n") {
		t.Errorf("the step was not stopped:\n%s", text)
	}
	if sum.Result != "canceled" || sum.Jobs[0].Result != "canceled" || sum.Jobs[1].Result != "canceled" {
		t.Errorf("summary %+v", sum)
	}
}

func TestRunSetupErrors(t *testing.T) {
	root := t.TempDir()
	loose := writePipeline(t, "steps:\n- script: echo hi\n")
	withRepo := writePipeline(t, `
resources:
  repositories:
  - repository: tools
    type: git
    name: tools
steps:
- checkout: none
- checkout: tools
`)
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no file", Options{Registry: registry()}, "no pipeline file"},
		{"no registry", Options{File: loose}, "no task registry"},
		{"work and pool", Options{File: loose, Registry: registry(), WorkDir: root, PoolDir: root}, "either a work directory or a pool directory"},
		{"missing file", Options{File: filepath.Join(root, "nope.yml"), Registry: registry()}, "read pipeline file"},
		{"no self repository", Options{File: loose, Registry: registry()}, "is not inside a git repository"},
		{"repository not found", Options{File: withRepo, Registry: registry()}, "pass --repo tools=PATH"},
		{"unknown --repo alias", Options{File: withRepo, Registry: registry(), Repos: map[string]string{"lib": root}}, "--repo lib: the pipeline has no repository resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, err := Run(guard(t), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrFailed) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if sum != nil {
				t.Errorf("summary of a run that did not start: %+v", sum)
			}
		})
	}
}

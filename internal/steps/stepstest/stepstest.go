// Package stepstest gives step tests a recording Console, a map-backed
// Variables, goroutine-safe output buffers and an Exec builder with a real
// job directory layout under t.TempDir().
package stepstest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/steps"
)

// Line kinds recorded by Console.
const (
	KindInfo    = "info"
	KindCommand = "command"
	KindWarning = "warning"
	KindError   = "error"
	KindDebug   = "debug"
	KindSecret  = "secret"
)

// Line is one Console call.
type Line struct {
	Kind string
	Text string
}

// Console records every call in order. Safe for concurrent use.
type Console struct {
	mu    sync.Mutex
	lines []Line
}

func (c *Console) add(kind, text string) {
	c.mu.Lock()
	c.lines = append(c.lines, Line{kind, text})
	c.mu.Unlock()
}

func (c *Console) Info(line string)       { c.add(KindInfo, line) }
func (c *Console) Command(line string)    { c.add(KindCommand, line) }
func (c *Console) Warning(msg string)     { c.add(KindWarning, msg) }
func (c *Console) Error(msg string)       { c.add(KindError, msg) }
func (c *Console) Debug(line string)      { c.add(KindDebug, line) }
func (c *Console) AddSecret(value string) { c.add(KindSecret, value) }

// Lines returns a copy of what was recorded.
func (c *Console) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...)
}

// Of returns the texts of one kind, in order.
func (c *Console) Of(kind string) []string {
	var out []string
	for _, l := range c.Lines() {
		if l.Kind == kind {
			out = append(out, l.Text)
		}
	}
	return out
}

// Log renders the lines as the official log shows them: plain lines as is,
// the others with their ##[kind] prefix; secrets are not shown.
func (c *Console) Log() string {
	var b strings.Builder
	for _, l := range c.Lines() {
		switch l.Kind {
		case KindSecret:
			continue
		case KindInfo:
		default:
			b.WriteString("##[" + l.Kind + "]")
		}
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// Vars is a case-insensitive variable map. Safe for concurrent use.
type Vars struct {
	mu sync.Mutex
	m  map[string]string
}

// NewVars copies m.
func NewVars(m map[string]string) *Vars {
	v := &Vars{m: map[string]string{}}
	for k, val := range m {
		v.m[strings.ToLower(k)] = val
	}
	return v
}

func (v *Vars) Get(name string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.m[strings.ToLower(name)]
	return s, ok
}

func (v *Vars) Set(name, value string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]string{}
	}
	v.m[strings.ToLower(name)] = value
}

// Buffer is a goroutine-safe output sink that can be waited on.
type Buffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  []string
	changed chan struct{}
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	b.writes = append(b.writes, string(p))
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Writes returns each Write call's data, in order.
func (b *Buffer) Writes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.writes...)
}

// WaitFor blocks until the output contains s or ctx ends.
func (b *Buffer) WaitFor(ctx context.Context, s string) error {
	for {
		b.mu.Lock()
		if strings.Contains(b.buf.String(), s) {
			b.mu.Unlock()
			return nil
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Harness is an Exec wired to recording fakes.
type Harness struct {
	Exec    *steps.Exec
	Stdout  *Buffer
	Stderr  *Buffer
	Console *Console
	Vars    *Vars
	// Posts collects what the step registered with AddPostJob.
	Posts []Post
}

// Post is a registered post-job step.
type Post struct {
	DisplayName string
	Run         func(ctx context.Context, ex *steps.Exec) error
}

// New builds an Exec for def with a job layout under t.TempDir(): _work/1/{s,a,b},
// _work/_temp, _work/_tool. Inputs start from def's defaults (FilePath inputs
// rooted against the sources directory, as the runner does) and are then
// overlaid with inputs. Env holds the agent's PATH and HOME, TF_BUILD and
// the directory variables; replace or extend h.Exec.Env as needed.
func New(t testing.TB, def *steps.Definition, inputs map[string]string) *Harness {
	t.Helper()
	root := t.TempDir()
	work := filepath.Join(root, "_work")
	d := steps.Dirs{
		Work:      work,
		Build:     filepath.Join(work, "1"),
		Sources:   filepath.Join(work, "1", "s"),
		Temp:      filepath.Join(work, "_temp"),
		Tools:     filepath.Join(work, "_tool"),
		Artifacts: filepath.Join(work, "1", "a"),
		Binaries:  filepath.Join(work, "1", "b"),
	}
	d.DefaultWorking = d.Sources
	for _, p := range []string{d.Sources, d.Temp, d.Tools, d.Artifacts, d.Binaries} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := map[string]string{}
	if def != nil {
		for _, i := range def.Inputs {
			in[i.Name] = i.Default
		}
	}
	for k, v := range inputs {
		in[k] = v
	}
	if def != nil {
		for _, i := range def.Inputs {
			if i.FilePath {
				in[i.Name] = Root(d.DefaultWorking, in[i.Name])
			}
		}
	}
	h := &Harness{Stdout: &Buffer{}, Stderr: &Buffer{}, Console: &Console{}, Vars: NewVars(nil)}
	h.Exec = &steps.Exec{
		StepID:      "00000000-0000-0000-0000-000000000001",
		StepName:    "step1",
		DisplayName: "step",
		Inputs:      in,
		Env: []string{
			"PATH=" + os.Getenv("PATH"),
			"HOME=" + root,
			"TF_BUILD=True",
			"AGENT_TEMPDIRECTORY=" + d.Temp,
			"AGENT_WORKFOLDER=" + d.Work,
			"BUILD_SOURCESDIRECTORY=" + d.Sources,
			"SYSTEM_DEFAULTWORKINGDIRECTORY=" + d.DefaultWorking,
		},
		Dirs:      d,
		Job:       &steps.Job{},
		Stdout:    h.Stdout,
		Stderr:    h.Stderr,
		Console:   h.Console,
		Vars:      h.Vars,
		KillGrace: [2]time.Duration{5 * time.Second, 5 * time.Second},
	}
	h.Exec.AddPostJob = func(name string, run func(ctx context.Context, ex *steps.Exec) error) {
		h.Posts = append(h.Posts, Post{name, run})
	}
	return h
}

// Root resolves a filePath input the way the runner does: empty or relative
// values against base.
func Root(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// SetEnv replaces or adds name=value in env.
func SetEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != name {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

package stepstest_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/stepstest"
)

func TestHarness(t *testing.T) {
	def := &steps.Definition{Inputs: []steps.Input{{Name: "dir", FilePath: true}, {Name: "flag", Default: "false"}, {Name: "abs", FilePath: true}}}
	h := stepstest.New(t, def, map[string]string{"dir": "sub", "abs": "/x"})
	d := h.Exec.Dirs
	for _, p := range []string{d.Sources, d.Temp, d.Tools, d.Artifacts, d.Binaries} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", p, err)
		}
	}
	want := map[string]string{"dir": filepath.Join(d.Sources, "sub"), "flag": "false", "abs": "/x"}
	for k, v := range want {
		if h.Exec.Inputs[k] != v {
			t.Errorf("input %s = %q, want %q", k, h.Exec.Inputs[k], v)
		}
	}
	h.Exec.Console.Info("plain")
	h.Exec.Console.Error("bad")
	h.Exec.Console.AddSecret("s3cret")
	if got := h.Console.Log(); got != "plain\n##[error]bad\n" {
		t.Errorf("log %q", got)
	}
	if !slices.Equal(h.Console.Of(stepstest.KindSecret), []string{"s3cret"}) {
		t.Errorf("secrets %q", h.Console.Of(stepstest.KindSecret))
	}
	h.Exec.Vars.Set("Build.SourcesDirectory", "x")
	if v, ok := h.Vars.Get("build.sourcesdirectory"); !ok || v != "x" {
		t.Errorf("vars: %q %v", v, ok)
	}
	h.Exec.AddPostJob("cleanup", nil)
	if len(h.Posts) != 1 || h.Posts[0].DisplayName != "cleanup" {
		t.Errorf("posts %+v", h.Posts)
	}
	env := stepstest.SetEnv([]string{"A=1", "B=2"}, "A", "3")
	if !slices.Equal(env, []string{"B=2", "A=3"}) {
		t.Errorf("SetEnv %q", env)
	}
}

func TestBufferWaitFor(t *testing.T) {
	var b stepstest.Buffer
	go func() {
		time.Sleep(10 * time.Millisecond)
		b.Write([]byte("rea"))
		b.Write([]byte("dy\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.WaitFor(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Writes(), []string{"rea", "dy\n"}) {
		t.Errorf("writes %q", b.Writes())
	}
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := b.WaitFor(short, "never"); err == nil {
		t.Error("WaitFor returned without the string")
	}
}

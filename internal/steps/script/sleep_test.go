package script_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/steps/stepstest"
)

// The built-in sleep in a PATH without one: it waits, refuses bad operands
// as GNU sleep does, and ends at once when the step is canceled.
func TestEmbeddedSleep(t *testing.T) {
	m := modes[1]
	t.Run("waits the sum of its operands", func(t *testing.T) {
		h := harness(t, m, "CmdLine", map[string]string{"script": "sleep 0.2 0.1s\necho slept"})
		h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "PATH", t.TempDir()) // no sleep on it
		start := time.Now()
		if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
			t.Fatalf("run: %v\n%s", err, h.Stderr)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("step took %v, want at least the 300 ms slept", d)
		}
		if h.Stdout.String() != "slept\n\n" {
			t.Errorf("stdout %q", h.Stdout.String())
		}
	})
	t.Run("bad operand", func(t *testing.T) {
		h := harness(t, m, "CmdLine", map[string]string{"script": "sleep 5x"})
		h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "PATH", t.TempDir()) // no sleep on it
		err := def(t, "CmdLine").Run(testCtx(t), h.Exec)
		if err == nil || err.Error() != "Bash exited with code '1'." {
			t.Errorf("run: %v", err)
		}
		if got := h.Stderr.String(); got != "sleep: invalid time interval '5x'\n" {
			t.Errorf("stderr %q", got)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		h := harness(t, m, "CmdLine", map[string]string{"script": "echo started\nsleep infinity\necho never"})
		h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "PATH", t.TempDir()) // no sleep on it
		ctx, cancel := context.WithCancel(testCtx(t))
		defer cancel()
		go func() {
			for !strings.HasPrefix(h.Stdout.String(), "started") && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
		}()
		start := time.Now()
		err := def(t, "CmdLine").Run(ctx, h.Exec)
		if err == nil {
			t.Fatal("a canceled step succeeded")
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("cancel took %v", d)
		}
		if out := h.Stdout.String(); !strings.HasPrefix(out, "started\n") || strings.Contains(out, "never") {
			t.Errorf("stdout %q", out)
		}
	})
}

package script_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/steps/stepstest"
)

// shellMode is how a scenario gets its shell: the system bash, or no shell
// at all on the step's PATH (the embedded interpreter).
type shellMode struct {
	name string
	path func(t *testing.T) string
}

var modes = []shellMode{
	{"bash", func(t *testing.T) string {
		if _, err := exec.LookPath("bash"); err != nil {
			t.Fatal("these tests need bash on the test machine's PATH")
		}
		return os.Getenv("PATH")
	}},
	{"embedded", noShellPath},
}

// noShellPath is a directory with only the few tools the scenarios call,
// and no sh or bash.
func noShellPath(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range []string{"sleep", "cat", "env"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("the tests need %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func harness(t *testing.T, m shellMode, task string, inputs map[string]string) *stepstest.Harness {
	t.Helper()
	h := stepstest.New(t, def(t, task), inputs)
	h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "PATH", m.path(t))
	return h
}

const embeddedNotice = "bash was not found on this step's PATH, so goagent runs the script in its embedded POSIX shell interpreter (mvdan.cc/sh)."

// checkMode asserts the log says which shell ran, once.
func checkMode(t *testing.T, m shellMode, h *stepstest.Harness) {
	t.Helper()
	n := 0
	for _, l := range h.Console.Of("info") {
		if strings.HasPrefix(l, embeddedNotice) {
			n++
		}
	}
	want := 0
	if m.name == "embedded" {
		want = 1
	}
	if n != want {
		t.Errorf("embedded-shell notice logged %d times, want %d", n, want)
	}
}

func TestScriptScenarios(t *testing.T) {
	type scenario struct {
		name   string
		task   string
		inputs map[string]string
		env    []string
		setup  func(t *testing.T, h *stepstest.Harness) // before the run
		err    string                                   // "" = success
		issues []string                                 // console errors
		stdout string                                   // exact, with the toolrunner's EOL
		stderr string
	}
	scenarios := []scenario{
		{name: "stdout and stderr", task: "CmdLine",
			inputs: map[string]string{"script": "echo out\necho err >&2"},
			stdout: "out\n\n", stderr: "err\n"},
		{name: "no errexit", task: "CmdLine",
			inputs: map[string]string{"script": "false\necho after"},
			stdout: "after\n\n"},
		{name: "no pipefail", task: "Bash",
			inputs: map[string]string{"targetType": "inline", "script": "false | true\necho $?"},
			stdout: "0\n\n"},
		{name: "exit code", task: "CmdLine",
			inputs: map[string]string{"script": "exit 3"},
			err:    "Bash exited with code '3'.", stdout: "\n"},
		{name: "exit 137 CmdLine", task: "CmdLine",
			inputs: map[string]string{"script": "exit 137"},
			err:    "Bash exited with code '137'.", stdout: "\n"},
		{name: "exit 137 Bash", task: "Bash",
			inputs: map[string]string{"targetType": "inline", "script": "exit 137"},
			err:    "Bash exited with code 137, which means it ran out of memory. Make sure the agent (container) host has sufficient memory configured.", stdout: "\n"},
		{name: "stderr without failOnStderr", task: "Bash",
			inputs: map[string]string{"targetType": "inline", "script": "echo warn >&2"},
			stderr: "warn\n", stdout: "\n"},
		{name: "failOnStderr", task: "CmdLine",
			inputs: map[string]string{"script": "echo bad >&2", "failOnStderr": "true"},
			err:    "Bash wrote one or more lines to the standard error stream.",
			issues: []string{"bad\n"}, stderr: "bad\n", stdout: "\n"},
		{name: "failOnStderr and exit code", task: "Bash",
			inputs: map[string]string{"targetType": "inline", "script": "echo bad >&2\nexit 2", "failOnStderr": "TRUE"},
			err:    "Bash exited with code '2'.",
			issues: []string{"Bash wrote one or more lines to the standard error stream.", "bad\n"}, stderr: "bad\n", stdout: "\n"},
		{name: "environment", task: "CmdLine",
			inputs: map[string]string{"script": `echo "v=$MY_VAR"; env | while read -r l; do case "$l" in MY_VAR=*) echo "child $l";; esac; done`},
			env:    []string{"MY_VAR=hello world"},
			stdout: "v=hello world\nchild MY_VAR=hello world\n\n"},
		{name: "working directory", task: "CmdLine",
			inputs: map[string]string{"script": "pwd; cat data.txt"},
			setup: func(t *testing.T, h *stepstest.Harness) {
				write(t, filepath.Join(h.Exec.Dirs.Sources, "data.txt"), "in sources\n", 0o644)
			},
			stdout: "SOURCES\nin sources\n\n"},
		{name: "bash file with arguments", task: "Bash",
			inputs: map[string]string{"filePath": "tools/run it.sh", "arguments": `one "two three"`},
			setup: func(t *testing.T, h *stepstest.Harness) {
				write(t, filepath.Join(h.Exec.Dirs.Sources, "tools", "run it.sh"), "echo \"$# [$1] [$2]\"\nexit 4\n", 0o644)
			},
			err: "Bash exited with code '4'.", stdout: "2 [one] [two three]\n\n"},
		{name: "bashEnvValue", task: "Bash",
			inputs: map[string]string{"targetType": "inline", "script": `echo "from env: $FROM_ENV"`},
			setup: func(t *testing.T, h *stepstest.Harness) {
				p := filepath.Join(h.Exec.Dirs.Temp, "..", "env.sh")
				write(t, p, "FROM_ENV=sourced\n", 0o644)
				h.Exec.Inputs["bashEnvValue"] = p
			},
			stdout: "from env: sourced\n\n"},
		{name: "nested shell", task: "CmdLine",
			inputs: map[string]string{"script": `bash -c 'echo "$0:$1"; exit 7' zero one; echo "status $?"`},
			stdout: "zero:one\nstatus 7\n\n"},
		{name: "external command and pipes", task: "CmdLine",
			inputs: map[string]string{"script": "printf 'a\\nb\\n' | cat\ncat missing-file\necho status $?"},
			stdout: "a\nb\nstatus 1\n\n", stderr: "*"},
		{name: "command not found", task: "CmdLine",
			inputs: map[string]string{"script": "no-such-command-xyz\necho status $?"},
			stdout: "status 127\n\n", stderr: "*"},
		{name: "syntax error", task: "CmdLine",
			inputs: map[string]string{"script": "echo start\nif then fi ("},
			err:    "Bash exited with code '2'.", stdout: "*", stderr: "*"},
	}
	for _, m := range modes {
		for _, sc := range scenarios {
			t.Run(m.name+"/"+sc.name, func(t *testing.T) {
				h := harness(t, m, sc.task, sc.inputs)
				h.Exec.Env = append(h.Exec.Env, sc.env...)
				if sc.setup != nil {
					sc.setup(t, h)
				}
				err := def(t, sc.task).Run(testCtx(t), h.Exec)
				if sc.err == "" && err != nil {
					t.Fatalf("run: %v\nlog:\n%s\nstderr: %s", err, h.Console.Log(), h.Stderr)
				}
				if sc.err != "" && (err == nil || err.Error() != sc.err) {
					t.Fatalf("error %v, want %q\nstderr: %s", err, sc.err, h.Stderr)
				}
				if got := h.Console.Of("error"); !slices.Equal(got, sc.issues) {
					t.Errorf("issues %q, want %q", got, sc.issues)
				}
				want := strings.ReplaceAll(sc.stdout, "SOURCES", h.Exec.Dirs.Sources)
				if want != "*" && h.Stdout.String() != want {
					t.Errorf("stdout %q, want %q", h.Stdout.String(), want)
				}
				if sc.stderr == "*" {
					if h.Stderr.String() == "" {
						t.Errorf("nothing on stderr")
					}
				} else if h.Stderr.String() != sc.stderr {
					t.Errorf("stderr %q, want %q", h.Stderr.String(), sc.stderr)
				}
				checkMode(t, m, h)
				if _, c := onlyTempFile(t, h); sc.task == "CmdLine" && string(c) != sc.inputs["script"] {
					t.Errorf("script file %q", c)
				}
			})
		}
	}
}

func write(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// taggedPIDs lists live processes whose environment holds tag.
func taggedPIDs(t *testing.T, tag string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		if slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return string(kv) == tag }) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventuallyNone waits (as a hang guard only) until no tagged process is
// left: a SIGKILLed process may take a moment to leave /proc.
func eventuallyNone(t *testing.T, tag string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		pids := taggedPIDs(t, tag)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("processes still alive after the step returned: %v", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCanceled starts the step, waits for marker on stdout, cancels and
// returns the step's error.
func runCanceled(t *testing.T, h *stepstest.Harness, task, marker string, before func()) error {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- def(t, task).Run(ctx, h.Exec) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := h.Stdout.WaitFor(wctx, marker); err != nil {
		cancel()
		<-done
		t.Fatalf("the script never printed %q: %v\nstderr: %s", marker, err, h.Stderr)
	}
	if before != nil {
		before()
	}
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("the step did not return after cancellation")
		return nil
	}
}

func TestCancelKillsTheProcessTree(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			tag := "GOAGENT_TEST_TAG=" + uuid.NewString()
			h := harness(t, m, "CmdLine", map[string]string{"script": "sleep 1000 &\nsleep 1000 &\necho started\nwait\necho not-reached"})
			h.Exec.Env = append(h.Exec.Env, tag)
			err := runCanceled(t, h, "CmdLine", "started", func() {
				// Both sleeps run before the cancel: the test can fail.
				deadline := time.Now().Add(20 * time.Second)
				for len(taggedPIDs(t, tag)) < 2 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if n := len(taggedPIDs(t, tag)); n < 2 {
					t.Errorf("%d tagged processes before cancel, want the two sleeps", n)
				}
			})
			if !isCanceled(err) {
				t.Errorf("error %v, want one carrying context.Canceled", err)
			}
			eventuallyNone(t, tag)
			if strings.Contains(h.Stdout.String(), "not-reached") {
				t.Errorf("the script went on after cancel")
			}
			checkMode(t, m, h)
		})
	}
}

// Signal traps need a real bash: the embedded interpreter has none.
func TestCancelGracefulSIGINT(t *testing.T) {
	tag := "GOAGENT_TEST_TAG=" + uuid.NewString()
	h := harness(t, modes[0], "Bash", map[string]string{"targetType": "inline",
		"script": "trap 'echo caught-int; exit 5' INT\necho ready\nwhile :; do sleep 0.1; done"})
	h.Exec.Env = append(h.Exec.Env, tag)
	h.Exec.KillGrace = [2]time.Duration{30 * time.Second, 30 * time.Second}
	err := runCanceled(t, h, "Bash", "ready", nil)
	if !isCanceled(err) {
		t.Errorf("error %v", err)
	}
	if !strings.Contains(h.Stdout.String(), "caught-int\n") {
		t.Errorf("the INT trap did not run: %q", h.Stdout.String())
	}
	eventuallyNone(t, tag)
}

func TestCancelEscalatesToSIGKILL(t *testing.T) {
	tag := "GOAGENT_TEST_TAG=" + uuid.NewString()
	h := harness(t, modes[0], "Bash", map[string]string{"targetType": "inline",
		"script": "trap 'echo got-int' INT\ntrap 'echo got-term' TERM\necho ready\nwhile :; do sleep 0.1; done"})
	h.Exec.Env = append(h.Exec.Env, tag)
	h.Exec.KillGrace = [2]time.Duration{300 * time.Millisecond, 300 * time.Millisecond}
	err := runCanceled(t, h, "Bash", "ready", nil)
	if !isCanceled(err) {
		t.Errorf("error %v", err)
	}
	out := h.Stdout.String()
	if !strings.Contains(out, "got-int\n") || !strings.Contains(out, "got-term\n") {
		t.Errorf("traps did not see SIGINT then SIGTERM: %q", out)
	}
	eventuallyNone(t, tag)
}

func TestEmbeddedShebangAndExec(t *testing.T) {
	m := modes[1]
	t.Run("shebang of an existing interpreter", func(t *testing.T) {
		h := harness(t, m, "CmdLine", nil)
		path, _ := lookup(h.Exec.Env, "PATH")
		script := "#!" + filepath.Join(path, "cat") + "\nthis is not shell (\n"
		h.Exec.Inputs["script"] = script
		if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
			t.Fatalf("run: %v\n%s", err, h.Stderr)
		}
		file, _ := onlyTempFile(t, h)
		if h.Stdout.String() != script+"\n" {
			t.Errorf("stdout %q", h.Stdout.String())
		}
		if info := h.Console.Of("info"); info[len(info)-1] != "[command]"+filepath.Join(path, "cat")+" "+file {
			t.Errorf("console %q", info)
		}
	})
	t.Run("missing and env shebang", func(t *testing.T) {
		h := harness(t, m, "CmdLine", map[string]string{"script": "#!/no/such/interpreter\nx"})
		// A missing interpreter: the line is a comment, as for bash.
		if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err == nil || err.Error() != "Bash exited with code '127'." {
			t.Errorf("run: %v", err)
		}
		h = harness(t, m, "CmdLine", map[string]string{"script": "#!/usr/bin/env -S cat\nline"})
		if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
			t.Fatalf("run: %v", err)
		}
		if h.Stdout.String() != "#!/usr/bin/env -S cat\nline\n" {
			t.Errorf("stdout %q", h.Stdout.String())
		}
	})
	t.Run("sh shebang stays embedded", func(t *testing.T) {
		h := harness(t, m, "CmdLine", map[string]string{"script": "#!/bin/sh\necho via-embedded"})
		if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
			t.Fatal(err)
		}
		if h.Stdout.String() != "via-embedded\n\n" {
			t.Errorf("stdout %q", h.Stdout.String())
		}
		checkMode(t, m, h)
	})
	t.Run("exec of a file without shebang", func(t *testing.T) {
		h := harness(t, m, "CmdLine", nil)
		p := filepath.Join(h.Exec.Dirs.Sources, "noshebang")
		write(t, p, "echo \"args: $*\"\nexit 6\n", 0o755)
		h.Exec.Inputs["script"] = p
		err := def(t, "CmdLine").Run(testCtx(t), h.Exec)
		if err == nil || err.Error() != "Bash exited with code '6'." {
			t.Errorf("run: %v\n%s", err, h.Stderr)
		}
		if h.Stdout.String() != "args: \n\n" {
			t.Errorf("stdout %q", h.Stdout.String())
		}
	})
}

func TestEmbeddedLeftoversAreKilled(t *testing.T) {
	tag := "GOAGENT_TEST_TAG=" + uuid.NewString()
	h := harness(t, modes[1], "CmdLine", map[string]string{"script": "sleep 1000 &\necho done"})
	h.Exec.Env = append(h.Exec.Env, tag)
	if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
		t.Fatal(err)
	}
	if h.Stdout.String() != "done\n\n" {
		t.Errorf("stdout %q", h.Stdout.String())
	}
	eventuallyNone(t, tag)
}

func TestBackgroundProcessOutlivesTaggedStep(t *testing.T) {
	// With VSTS_PROCESS_LOOKUP_ID set the runner cleans up at job end, so
	// a server started in the background survives the step, as with the
	// official agent; without it the step's process group is killed.
	for _, tagged := range []bool{true, false} {
		t.Run(fmt.Sprint("tagged=", tagged), func(t *testing.T) {
			tag := "GOAGENT_TEST_TAG=" + uuid.NewString()
			h := harness(t, modes[0], "CmdLine", map[string]string{"script": "sleep 1000 >/dev/null 2>&1 &\necho started"})
			h.Exec.Env = append(h.Exec.Env, tag)
			if tagged {
				h.Exec.Env = append(h.Exec.Env, "VSTS_PROCESS_LOOKUP_ID=vsts_"+uuid.NewString())
			}
			if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
				t.Fatal(err)
			}
			if tagged {
				pids := taggedPIDs(t, tag)
				if len(pids) != 1 {
					t.Fatalf("background sleep: %v", pids)
				}
				_ = syscall.Kill(pids[0], syscall.SIGKILL)
			}
			eventuallyNone(t, tag)
		})
	}
}

// Package script runs CmdLine@2, Bash@3 and PowerShell@2 natively on Linux,
// reproducing the official Node tasks (microsoft/azure-pipelines-tasks
// Tasks/CmdLineV2/cmdline.ts, Tasks/BashV3/bash.ts,
// Tasks/PowerShellV2/powershell.ts and the task library's toolrunner): the
// script is written to Agent.TempDirectory/<uuid>.sh|.ps1, the same banner
// and "[command]" lines are logged, the same shell and flags run it, and exit
// codes and stderr map to the same error messages. Without bash on the
// step's PATH (a scratch image) script and bash steps run in the embedded
// POSIX shell interpreter mvdan.cc/sh.
package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
	"github.com/goagent-dev/goagent/internal/wire"
)

// Definitions returns the native script tasks.
func Definitions() []*steps.Definition {
	return []*steps.Definition{cmdLineDefinition(), bashDefinition(), powerShellDefinition()}
}

func cmdLineDefinition() *steps.Definition {
	return &steps.Definition{
		ID:    wire.TaskCmdLine,
		Name:  "CmdLine",
		Major: 2,
		// Tasks/CmdLineV2/task.json 2.279.1
		Inputs: []steps.Input{
			{Name: "script", Default: "echo Write your commands here\n\necho Hello world\n"},
			{Name: "workingDirectory", FilePath: true},
			{Name: "failOnStderr", Default: "false"},
		},
		Run: runCmdLine,
	}
}

func bashDefinition() *steps.Definition {
	return &steps.Definition{
		ID:    wire.TaskBash,
		Name:  "Bash",
		Major: 3,
		// Tasks/BashV3/task.json 3.278.0
		Inputs: []steps.Input{
			{Name: "targetType", Default: "filePath"},
			{Name: "filePath", FilePath: true},
			{Name: "arguments"},
			{Name: "script", Default: "# Write your commands here\n\necho 'Hello world'\n"},
			{Name: "workingDirectory", FilePath: true},
			{Name: "failOnStderr", Default: "false"},
			{Name: "bashEnvValue"},
		},
		Run: runBash,
	}
}

func powerShellDefinition() *steps.Definition {
	return &steps.Definition{
		ID:    wire.TaskPowerShell,
		Name:  "PowerShell",
		Major: 2,
		// Tasks/PowerShellV2/task.json 2.279.0
		Inputs: []steps.Input{
			{Name: "targetType", Default: "filePath"},
			{Name: "filePath", FilePath: true},
			{Name: "arguments"},
			{Name: "script", Default: "# Write your PowerShell commands here.\n\nWrite-Host \"Hello World\"\n"},
			{Name: "errorActionPreference", Default: "stop"},
			{Name: "warningPreference", Default: "default"},
			{Name: "informationPreference", Default: "default"},
			{Name: "verbosePreference", Default: "default"},
			{Name: "debugPreference", Default: "default"},
			{Name: "progressPreference", Default: "silentlyContinue"},
			{Name: "failOnStderr", Default: "false"},
			{Name: "showWarnings", Default: "false"},
			{Name: "ignoreLASTEXITCODE", Default: "false"},
			{Name: "pwsh", Default: "false"},
			{Name: "workingDirectory", FilePath: true},
			{Name: "runScriptInSeparateScope", Default: "false"},
		},
		Run: runPowerShell,
	}
}

// Console lines shared by the tasks (task.json "messages", toolrunner).
const (
	msgGeneratingScript = "Generating script."
	msgScriptContents   = "Script contents:"
	banner              = "========================== Starting Command Output ==========================="
	// toolrunner ExecState.delay and LIB_StdioNotClosed.
	stdioDelay       = 10 * time.Second
	msgStdioNotClose = "The STDIO streams did not close within %d seconds of the exit event from process '%s'. This may indicate a child process inherited the STDIO streams and has not yet exited."
)

// boolInput is task-lib getBoolInput: only "true", in any case, is true.
func boolInput(ex *steps.Exec, name string) bool {
	return strings.EqualFold(ex.Inputs[name], "true")
}

// pathInput is task-lib getPathInput(name, required, check).
func pathInput(ex *steps.Exec, name string, check bool) (string, error) {
	v := ex.Inputs[name]
	if v == "" {
		return "", fmt.Errorf("Input required: %s", name)
	}
	if check {
		if _, err := os.Stat(v); err != nil {
			return "", fmt.Errorf("Not found %s: %s", name, v)
		}
	}
	return v, nil
}

// statFile is task-lib stats(p).isFile(); a missing file fails with Node's
// own message.
func statFile(p string) (bool, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, fmt.Errorf("ENOENT: no such file or directory, stat '%s'", p)
		}
		return false, fmt.Errorf("stat '%s': %w", p, err)
	}
	return fi.Mode().IsRegular(), nil
}

// writeTempScript writes contents to Agent.TempDirectory/<uuidv4><ext>,
// after the task's checkPath of the temp directory.
func writeTempScript(ex *steps.Exec, ext string, contents []byte) (string, error) {
	dir := ex.Dirs.Temp
	if v, ok := lookupEnv(ex.Env, "AGENT_TEMPDIRECTORY"); dir == "" && ok {
		dir = v
	}
	if _, err := os.Stat(dir); dir == "" || err != nil {
		name := dir + " (agent.tempDirectory)"
		return "", fmt.Errorf("Not found %s: %s", name, dir)
	}
	p := filepath.Join(dir, uuid.NewString()+ext)
	if err := os.WriteFile(p, contents, 0o666); err != nil {
		return "", fmt.Errorf("write script %s: %w", p, err)
	}
	return p, nil
}

// printOneLiner logs "Script contents:" and the script when it is one line
// that holds no logging command (cmdline.ts, bash.ts).
func printOneLiner(c steps.Console, script string) {
	if !strings.Contains(script, "\n") && !strings.Contains(strings.ToUpper(script), "##VSO[") {
		c.Info(msgScriptContents)
		c.Info(script)
	}
}

// jsTrim is JavaScript's String.prototype.trim.
func jsTrim(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '\uFEFF' })
}

func lookupEnv(env []string, name string) (string, bool) {
	v, ok := "", false
	for _, kv := range env {
		if k, val, found := strings.Cut(kv, "="); found && k == name {
			v, ok = val, true
		}
	}
	return v, ok
}

func setEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != name {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

// stderrLog collects what failOnStderr reports: one issue per chunk the
// child wrote, as the task's 'stderr' listener does. It keeps at most 10
// chunks of at most 1000 bytes (the truncation the same tasks shipped before,
// cmdline.ts and powershell.ts): the current tasks keep everything, which
// lets memory grow with the log.
type stderrLog struct {
	mu     sync.Mutex
	dst    io.Writer
	wrote  bool
	chunks []string
}

const (
	maxStderrChunks    = 10
	maxStderrChunkSize = 1000
)

func (s *stderrLog) Write(p []byte) (int, error) {
	if len(p) > 0 {
		s.mu.Lock()
		s.wrote = true
		switch n := len(s.chunks); {
		case n < maxStderrChunks:
			if len(p) > maxStderrChunkSize {
				s.chunks = append(s.chunks, string(p[:maxStderrChunkSize])+"<truncated>")
			} else {
				s.chunks = append(s.chunks, string(p))
			}
		case n == maxStderrChunks:
			s.chunks = append(s.chunks, "Additional writes to stderr truncated")
		}
		s.mu.Unlock()
	}
	return s.dst.Write(p)
}

func (s *stderrLog) result() (bool, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wrote, append([]string(nil), s.chunks...)
}

// outcome is what a script run ended with.
type outcome struct {
	exitCode int
	stderr   bool     // something was written to stderr (failOnStderr only)
	chunks   []string // what was written, for the issues
}

// fail reports issues the way the task does, in its order, and returns the
// step's error. The runner reports the returned error as an error issue, so
// the first issue is returned and the others are logged through the Console
// (they end up before it).
func fail(c steps.Console, issues []string) error {
	if len(issues) == 0 {
		return nil
	}
	for _, m := range issues[1:] {
		c.Error(m)
	}
	return errors.New(issues[0])
}

// canceled wraps the cancellation cause for the runner.
func canceled(ctx context.Context, what string) error {
	return fmt.Errorf("%s was canceled: %w", what, context.Cause(ctx))
}

// runTool runs a resolved executable the way the toolrunner does: the
// "[command]" line, stdout and stderr to the step, a trailing EOL on stdout
// after the child's output ends, and the not-closed-stdio notice.
func runTool(ctx context.Context, ex *steps.Exec, path string, args []string, dir string, env []string, failOnStderr bool) (outcome, error) {
	ex.Console.Info("[command]" + strings.Join(append([]string{path}, args...), " "))
	var stderr io.Writer = ex.Stderr
	var sl *stderrLog
	if failOnStderr {
		sl = &stderrLog{dst: ex.Stderr}
		stderr = sl
	}
	res, err := proc.Run(ctx, proc.Cmd{
		Path:        path,
		Args:        args,
		Dir:         dir,
		Env:         env,
		Stdout:      ex.Stdout,
		Stderr:      stderr,
		Grace:       ex.KillGrace,
		Hard:        ex.Hard,
		OutputDelay: stdioDelay,
		// Like the official agent, background processes a step starts
		// outlive it when the runner tags them for job-end cleanup.
		KeepBackground: hasLookupID(env),
	})
	if err != nil && ctx.Err() == nil && res.ExitCode == -1 && !res.Signaled {
		// LIB_ProcessError: the process could not be started.
		return outcome{}, fmt.Errorf("There was an error when attempting to execute the process '%s'. This may indicate the process failed to start. Error: %v", path, unwrapStart(err))
	}
	// The toolrunner writes an EOL once the child's stdout is finished.
	_, _ = io.WriteString(ex.Stdout, "\n")
	if res.OutputTimedOut {
		ex.Console.Info(fmt.Sprintf(msgStdioNotClose, int(stdioDelay/time.Second), path))
	}
	if ctx.Err() != nil {
		return outcome{}, canceled(ctx, filepath.Base(path))
	}
	if err != nil {
		return outcome{}, err
	}
	o := outcome{exitCode: res.ExitCode}
	if res.Signaled {
		// Node reports a null exit code here ("Bash exited with code
		// 'null'."); the shell convention 128+signal names the cause.
		o.exitCode = 128 + int(res.Signal)
	}
	if sl != nil {
		o.stderr, o.chunks = sl.result()
	}
	return o, nil
}

func hasLookupID(env []string) bool {
	v, ok := lookupEnv(env, "VSTS_PROCESS_LOOKUP_ID")
	return ok && v != ""
}

// unwrapStart drops proc's "start <path>: " prefix and exec's wrapping, so
// the message reads like Node's spawn error.
func unwrapStart(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

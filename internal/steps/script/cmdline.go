package script

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
)

// Messages of Tasks/CmdLineV2/task.json and Tasks/BashV3/task.json.
const (
	msgBashExitCode    = "Bash exited with code '%d'."
	msgBashExitCode137 = "Bash exited with code 137, which means it ran out of memory. Make sure the agent (container) host has sufficient memory configured."
	msgBashStderr      = "Bash wrote one or more lines to the standard error stream."
)

// runCmdLine is Tasks/CmdLineV2/cmdline.ts on Linux.
func runCmdLine(ctx context.Context, ex *steps.Exec) error {
	failOnStderr := boolInput(ex, "failOnStderr")
	script := ex.Inputs["script"]
	wd, err := pathInput(ex, "workingDirectory", true)
	if err != nil {
		return err
	}
	// A script that names an existing path runs that file (fs.existsSync,
	// relative to the task process's cwd, System.DefaultWorkingDirectory).
	if script != "" && pathExists(ex.Dirs.DefaultWorking, script) {
		script = "exec " + script
	}

	ex.Console.Info(msgGeneratingScript)
	file, err := writeTempScript(ex, ".sh", []byte(script))
	if err != nil {
		return err
	}
	printOneLiner(ex.Console, script)
	ex.Console.Info(banner)

	o, err := runBashFile(ctx, ex, []string{"--noprofile", "--norc"}, file, wd, ex.Env, failOnStderr)
	if err != nil {
		return err
	}
	return bashResult(ex.Console, o, false)
}

func pathExists(base, p string) bool {
	if !filepath.IsAbs(p) && base != "" {
		p = filepath.Join(base, p)
	}
	_, err := os.Stat(p)
	return err == nil
}

// runBashFile runs bash with flags and the script file, or the embedded
// interpreter when the step's PATH has no bash.
func runBashFile(ctx context.Context, ex *steps.Exec, flags []string, file, wd string, env []string, failOnStderr bool) (outcome, error) {
	bash, err := proc.LookPath("bash", env)
	if err != nil {
		return runEmbedded(ctx, ex, flags, file, wd, env, failOnStderr)
	}
	return runTool(ctx, ex, bash, append(flags, file), wd, env, failOnStderr)
}

// bashResult maps the outcome to the issues cmdline.ts and bash.ts log.
func bashResult(c steps.Console, o outcome, oomMessage bool) error {
	var issues []string
	if o.exitCode != 0 {
		if oomMessage && o.exitCode == 137 {
			issues = append(issues, msgBashExitCode137)
		} else {
			issues = append(issues, fmt.Sprintf(msgBashExitCode, o.exitCode))
		}
	}
	if o.stderr {
		issues = append(issues, msgBashStderr)
		issues = append(issues, o.chunks...)
	}
	return fail(c, issues)
}

package script

import (
	"context"
	"fmt"
	"strings"

	"github.com/goagent-dev/goagent/internal/steps"
)

const (
	msgBashFormattedCommand = "Formatted command: %s"
	msgBashInvalidFilePath  = "Invalid file path '%s'."
	msgBashEnvAlreadySet    = "The BASH_ENV environment variable has already been set to a '%s', the task will override it with '%s'"
	msgBashArgsSanitized    = "Detected characters in arguments that may not be executed correctly by the shell. Please escape special characters using backslash (\\). More information is available here: https://aka.ms/ado/75787"
)

// runBash is Tasks/BashV3/bash.ts on Linux.
func runBash(ctx context.Context, ex *steps.Exec) error {
	failOnStderr := boolInput(ex, "failOnStderr")
	wd, err := pathInput(ex, "workingDirectory", true)
	if err != nil {
		return err
	}
	targetType := ex.Inputs["targetType"]
	env := append([]string(nil), ex.Env...)
	if v := ex.Inputs["bashEnvValue"]; v != "" {
		if old, _ := lookupEnv(env, "BASH_ENV"); old != "" {
			ex.Console.Info(fmt.Sprintf(msgBashEnvAlreadySet, old, v))
		}
		env = setEnv(env, "BASH_ENV", v)
		ex.Console.Debug("The BASH_ENV environment variable was set to " + v)
	}

	fromFile := strings.EqualFold(targetType, "filePath")
	var filePath, args, script string
	oldSource := false
	if fromFile {
		v, _ := lookupEnv(env, "AZP_BASHV3_OLD_SOURCE_BEHAVIOR")
		oldSource = v != ""
		if filePath, err = pathInput(ex, "filePath", false); err != nil {
			return err
		}
		isFile, err := statFile(filePath)
		if err != nil {
			return err
		}
		if !isFile {
			return fmt.Errorf(msgBashInvalidFilePath, filePath)
		}
		args = ex.Inputs["arguments"]
	} else {
		script = ex.Inputs["script"]
	}

	ex.Console.Info(msgGeneratingScript)
	var contents string
	if fromFile {
		if err := validateFileArgs(ex.Console, env, args, bashSanitizer); err != nil {
			return err
		}
		quoted := "'" + strings.ReplaceAll(filePath, "'", `'\''`) + "'"
		if oldSource {
			contents = jsTrim(". " + quoted + " " + args)
		} else {
			contents = jsTrim("exec bash " + quoted + " " + args)
		}
		ex.Console.Info(fmt.Sprintf(msgBashFormattedCommand, contents))
	} else {
		contents = script
		printOneLiner(ex.Console, contents)
	}

	file, err := writeTempScript(ex, ".sh", []byte(contents))
	if err != nil {
		return err
	}
	ex.Console.Info(banner)
	o, err := runBashFile(ctx, ex, nil, file, wd, env, failOnStderr)
	if err != nil {
		return err
	}
	return bashResult(ex.Console, o, true)
}

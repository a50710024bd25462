package script

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/proc"
)

// Messages of Tasks/PowerShellV2/task.json.
const (
	msgPSExitCode          = "PowerShell exited with code '%d'."
	msgPSStderr            = "PowerShell wrote one or more lines to the standard error stream."
	msgPSFormattedCommand  = "Formatted command: %s"
	msgPSInvalidPreference = "Invalid action preference for %s: '%s'. The value must be one of: %s"
	msgPSInvalidFilePath   = "Invalid file path '%s'. A path to a .ps1 file is required."
	msgPSInvalidTargetType = "Invalid target type '%s'. The value must be one of: 'filepath' or 'inline'"
	msgPSArgsSanitized     = "Detected characters in arguments that may not be executed correctly by the shell. Please escape special characters using backtick (`). More information is available here: https://aka.ms/ado/75787"
	// LIB_WhichNotFound_Linux, then what to do about it.
	msgPSNotInstalled = "PowerShell (pwsh) is not installed in this image: Unable to locate executable file: 'pwsh'. Please verify either the file path exists or the file can be found within a directory specified by the PATH environment variable. Also check the file mode to verify the file is executable. " +
		"Run this job in an image that has PowerShell (for example the goagent image flavour based on Debian slim with pwsh), install PowerShell in your image (https://learn.microsoft.com/powershell/scripting/install/installing-powershell-on-linux), or use a script/bash step instead."
)

// The preference inputs in the order powershell.ts reads them, with its
// fallbacks for an empty input.
var psPreferences = []struct{ input, variable, fallback string }{
	{"errorActionPreference", "ErrorActionPreference", "Stop"},
	{"warningPreference", "WarningPreference", "Default"},
	{"informationPreference", "InformationPreference", "Default"},
	{"verbosePreference", "VerbosePreference", "Default"},
	{"debugPreference", "DebugPreference", "Default"},
	{"progressPreference", "ProgressPreference", "SilentlyContinue"},
}

var psValidPreferences = []string{"Default", "Stop", "Continue", "SilentlyContinue"}

// The showWarnings wrapper, byte for byte as powershell.ts's template
// literal produces it; %s is the script.
const psShowWarnings = "\n" +
	"                $warnings = New-Object System.Collections.ObjectModel.ObservableCollection[System.Management.Automation.WarningRecord];\n" +
	"                Register-ObjectEvent -InputObject $warnings -EventName CollectionChanged -Action {\n" +
	"                    if($Event.SourceEventArgs.Action -like \"Add\"){\n" +
	"                        $Event.SourceEventArgs.NewItems | ForEach-Object {\n" +
	"                            Write-Host \"##vso[task.logissue type=warning;]$_\";\n" +
	"                        }\n" +
	"                    }\n" +
	"                };\n" +
	"                Invoke-Command {%s} -WarningVariable +warnings;\n" +
	"            "

// The $LASTEXITCODE trailer. The task's template literal says
// "variable:\LASTEXITCODE"; JavaScript drops the backslash of the unknown
// escape "\L", so the file says "variable:LASTEXITCODE".
var psExitCodeTrailer = []string{
	"if (!(Test-Path -LiteralPath variable:LASTEXITCODE)) {",
	"    Write-Host '##vso[task.debug]$LASTEXITCODE is not set.'",
	"} else {",
	"    Write-Host ('##vso[task.debug]$LASTEXITCODE: {0}' -f $LASTEXITCODE)",
	"    exit $LASTEXITCODE",
	"}",
}

// psScript is what powershell.ts generates: the file's contents (without
// the BOM) and the command it logs as "Formatted command".
type psScript struct {
	contents  string
	formatted string
}

// buildPowerShell validates the inputs and builds the .ps1 as the task does,
// in the task's order; it logs "Generating script." when inputs are valid.
func buildPowerShell(ex *steps.Exec) (psScript, string, error) {
	prefs := make([]string, len(psPreferences))
	for i, p := range psPreferences {
		v := ex.Inputs[p.input]
		if v == "" {
			v = p.fallback
		}
		valid := false
		for _, ok := range psValidPreferences {
			valid = valid || strings.EqualFold(v, ok)
		}
		if !valid {
			return psScript{}, "", fmt.Errorf(msgPSInvalidPreference, p.input, v, strings.Join(psValidPreferences, ", "))
		}
		prefs[i] = v
	}
	showWarnings := boolInput(ex, "showWarnings")
	ignoreExitCode := boolInput(ex, "ignoreLASTEXITCODE")
	wd, err := pathInput(ex, "workingDirectory", true)
	if err != nil {
		return psScript{}, "", err
	}
	targetType := ex.Inputs["targetType"]
	var filePath, args, inline string
	switch strings.ToUpper(targetType) {
	case "FILEPATH":
		if filePath, err = pathInput(ex, "filePath", false); err != nil {
			return psScript{}, "", err
		}
		isFile, err := statFile(filePath)
		if err != nil {
			return psScript{}, "", err
		}
		if !isFile || !strings.HasSuffix(strings.ToUpper(filePath), ".PS1") {
			return psScript{}, "", fmt.Errorf(msgPSInvalidFilePath, filePath)
		}
		args = ex.Inputs["arguments"]
	case "INLINE":
		inline = ex.Inputs["script"]
	default:
		return psScript{}, "", fmt.Errorf(msgPSInvalidTargetType, targetType)
	}

	ex.Console.Info(msgGeneratingScript)
	var lines []string
	for i, p := range psPreferences {
		if !strings.EqualFold(prefs[i], "Default") {
			lines = append(lines, fmt.Sprintf("$%s = '%s'", p.variable, prefs[i]))
		}
	}
	var script string
	if filePath != "" {
		if err := validateFileArgs(ex.Console, ex.Env, args, powerShellSanitizer); err != nil {
			return psScript{}, "", err
		}
		script = jsTrim(". '" + strings.ReplaceAll(filePath, "'", "''") + "' " + args)
	} else {
		script = inline
	}
	if showWarnings {
		script = fmt.Sprintf(psShowWarnings, script)
	}
	lines = append(lines, script)
	if !ignoreExitCode {
		lines = append(lines, psExitCodeTrailer...)
	}
	return psScript{contents: strings.Join(lines, "\n"), formatted: script}, wd, nil
}

// runPowerShell is Tasks/PowerShellV2/powershell.ts on Linux.
func runPowerShell(ctx context.Context, ex *steps.Exec) error {
	failOnStderr := boolInput(ex, "failOnStderr")
	ps, wd, err := buildPowerShell(ex)
	if err != nil {
		return err
	}
	// tl.logDetail(uuid, "Formatted command: …", null, 'command', 'command', 0):
	// a logging command on stdout, which the worker turns into a detail
	// timeline record rather than a log line.
	_, _ = io.WriteString(ex.Stdout, logDetail(uuid.NewString(), fmt.Sprintf(msgPSFormattedCommand, ps.formatted))+"\n")

	file, err := writeTempScript(ex, ".ps1", append([]byte("\uFEFF"), ps.contents...))
	if err != nil {
		return err
	}
	ex.Console.Info(banner)
	exe, err := findPowerShell(ex.Env)
	if err != nil {
		return err
	}
	op := "."
	if boolInput(ex, "runScriptInSeparateScope") {
		op = "&"
	}
	args := []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-Command", op + " '" + strings.ReplaceAll(file, "'", "''") + "'"}
	o, err := runTool(ctx, ex, exe, args, wd, ex.Env, failOnStderr)
	if err != nil {
		return err
	}
	var issues []string
	if o.exitCode != 0 {
		issues = append(issues, fmt.Sprintf(msgPSExitCode, o.exitCode))
	}
	if o.stderr {
		issues = append(issues, msgPSStderr)
		issues = append(issues, o.chunks...)
	}
	return fail(ex.Console, issues)
}

// findPowerShell is which('pwsh') || which('powershell') || which('pwsh', true).
func findPowerShell(env []string) (string, error) {
	for _, name := range []string{"pwsh", "powershell"} {
		if p, err := proc.LookPath(name, env); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s", msgPSNotInstalled)
}

// logDetail formats task-lib's task.logdetail command with the properties
// logDetail(id, message, undefined, 'command', 'command', 0) sets (an order
// of 0 is dropped as falsy).
func logDetail(id, message string) string {
	return "##vso[task.logdetail id=" + escapeProperty(id) + ";type=command;name=command;]" + escapeData(message)
}

// escapeData and escapeProperty are taskcommand.ts escapedata and escape.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%AZP25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%AZP25", "\r", "%0D", "\n", "%0A", "]", "%5D", ";", "%3B").Replace(s)
}

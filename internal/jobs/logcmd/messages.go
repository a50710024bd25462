package logcmd

import "strings"

// The official agent's texts around logging commands
// (src/Misc/layoutbin/en-US/strings.json), for the job runner to report the
// same way. Lines and data can hold secrets: mask before reporting.

// UnknownAreaWarning is the warning for a command whose area has no
// extension (CommandNotFound); the line is otherwise ignored.
func UnknownAreaWarning(area string) string {
	return "Cannot find command extension for ##vso[" + area + ".command]. " +
		"Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"
}

// UnknownEventError is the error for an event its area does not have
// (CommandNotFound2); the step's command result becomes Failed. The official
// text names the extension's own (lower-case) area and the event as written.
func UnknownEventError(area, event string) string {
	a := strings.ToLower(area)
	return "##vso[" + a + "." + event + "] is not a recognized command for " + a +
		" command extension. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)."
}

// NotAllowedWarning is the warning for a command refused in restricted mode
// (CommandNotAllowed); the command is skipped.
func NotAllowedWarning(area, event string) string {
	return "##vso[" + area + "." + event + "] is not allowed in this step due to policy restrictions. " +
		"Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"
}

// ProcessFailedError is the error for a command that failed while being
// processed (CommandProcessFailed), followed in the official log by the
// failure itself; the step's command result becomes Failed.
func ProcessFailedError(line string) string {
	return "Unable to process command '" + line + "' successfully. " +
		"Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"
}

// NotSupportedError is the error for an area that does not serve the job's
// host type (CommandNotSupported), e.g. "Build".
func NotSupportedError(area, hostType string) string {
	return area + " commands are not supported for " + hostType +
		" flow. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"
}

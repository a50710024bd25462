//go:build !linux

package listener

// killChildren is a no-op where /proc is not available; the job runner's
// own escalation ends the step's processes.
func killChildren() int { return 0 }

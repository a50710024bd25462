package main

import (
	"errors"
	"io"
)

// cmdExec runs a pipeline locally through the emulator.
func cmdExec(sig *signals, args []string, stdout, stderr io.Writer) error {
	return errors.New("exec: not yet available")
}

package main

import (
	"context"
	"errors"
	"io"

	"github.com/goagent-dev/goagent/internal/devserver"
)

// cmdDevserver runs the Azure DevOps emulator alone.
func cmdDevserver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := devserver.Main(ctx, args, stdout)
	if errors.Is(err, devserver.ErrUsage) {
		return usageError{err}
	}
	return err
}

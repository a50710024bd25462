package main

import (
	"context"
	"errors"
	"io"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/webui"
)

// cmdDevserver runs the Azure DevOps emulator alone.
func cmdDevserver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := devserver.Main(ctx, args, stdout, func(ctx context.Context, s *devserver.Server, addr string) (string, error) {
		ui, err := webui.New(s, webui.Options{})
		if err != nil {
			return "", err
		}
		context.AfterFunc(ctx, func() { ui.Close() })
		return ui.Serve(ctx, addr)
	})
	if errors.Is(err, devserver.ErrUsage) {
		return usageError{err}
	}
	return err
}

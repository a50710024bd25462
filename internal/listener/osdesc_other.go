//go:build !linux

package listener

import (
	"runtime"

	"github.com/goagent-dev/goagent/internal/wire"
)

func osDescription() string { return wire.AgentOS() + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")" }

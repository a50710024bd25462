//go:build !linux

package listener

import "runtime"

func osDescription() string { return osName() + " (" + runtime.GOOS + "/" + runtime.GOARCH + ")" }

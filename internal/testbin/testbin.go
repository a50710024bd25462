// Package testbin builds the goagent binary for tests that run it as a
// process (end-to-end suites, the pipeline corpus, the empty-root test): a
// static binary, built the way the Makefile builds it.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Main builds goagent into a temporary directory, sets *binary to its path,
// runs the tests and exits with their status. Call it from TestMain.
func Main(run func() int, binary *string, version string) {
	dir, err := os.MkdirTemp("", "goagent-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "build goagent:", err)
		os.Exit(1)
	}
	path, err := Build(dir, version)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	*binary = path
	code := run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Build compiles ./cmd/goagent with CGO_ENABLED=0 and -trimpath into dir and
// returns the binary's path; version is stamped as main.version.
func Build(dir, version string) (string, error) {
	out := filepath.Join(dir, "goagent")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version+" -X main.commit="+version, "-o", out, "github.com/goagent-dev/goagent/cmd/goagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build ./cmd/goagent: %v\n%s", err, b)
	}
	return out, nil
}

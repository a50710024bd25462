//go:build !race

package jobs_test

// largeOutputBytes is what the step of TestEmulatorLargeOutput prints: 200 MB.
const largeOutputBytes = 200 << 20

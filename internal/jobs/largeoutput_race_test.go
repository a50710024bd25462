//go:build race

package jobs_test

// largeOutputBytes: the race detector makes the agent several times slower,
// so under -race the step prints 16 MB (two log pages); the full 200 MB runs
// without it.
const largeOutputBytes = 16 << 20

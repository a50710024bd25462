//go:build race

package report

// The race detector makes every write several times slower; the memory
// bound is checked on a tenth of the output.
const memTestLines = 200_000

//go:build !race

package report

// memTestLines: about 150 MB of page files (the step log and the job log).
const memTestLines = 2_000_000

package bench

import "strings"

// profileNote is what a profile showed for a metric that missed its goal.
// The notes are not measured by the run that prints them: each says when and
// how it was obtained, and is printed only while its metric still misses.
// Update or delete a note when the code it describes changes.
type profileNote struct {
	metric string // a prefix of the metric's name
	text   string
}

const profiled = "Profiled on 2026-11-22, 2 cores, with `perf record -g` on an unstripped build of the binary and with `go test -bench … -cpuprofile` in this package (each note says on which code)"

var profileNotes = []profileNote{
	{
		metric: "log throughput: 1,000,000 lines (97 MB), 50 secrets, fast producer",
		text: "Profiled again after the rework of the output path (commit f70d8a7: lines handled a read at a time with one lock, " +
			"one timestamp and one feed enqueue; page text formatted once for the step's and the job's log; the feed queue's " +
			"text in reused chunks; the pipe read with poll(2)), which took this figure from 9.5× to about 4×. " +
			"`go test -bench StepOutput` here: the runner alone (reading the pipe, splitting lines, logging commands, masking 50 " +
			"secrets, no reporting) handles about 270 MB/s while awk prints; that is already about 1.4× of awk's own time for the " +
			"same lines, so the ratio cannot reach 1.5× while those run on the reading goroutine. Of the runner's CPU: ~40% " +
			"reading the pipe (syscalls), ~20% masking (the literal scan, the URL-credential and regex passes), ~15% GC. The rest " +
			"of the step's time is the reporting: two page files written, the feed, and 8 MiB pages uploaded over HTTPS while " +
			"the step runs, on the second core that the emulator (decrypting and storing the uploads) and awk share. What " +
			"remains: mask and report on a goroutine of their own so that reading, masking and writing overlap on machines with " +
			"more cores; skip the URL-credential and regex passes for lines without their trigger bytes.",
	},
	{
		metric: "checkout, go-git",
		text: "Profiled again after the rework of steps/checkout (2026-11-22, in-process with `go test -cpuprofile` running the step " +
			"against this benchmark's repository over loopback HTTP, 2 cores). Before it, about 60% of the agent's CPU was go-git's " +
			"`Worktree.Checkout` (an Lstat of every path and its parents, the pack file reopened for every object, blobs inflated " +
			"on one goroutine) and most of the rest go-git's pack parser, which inflates every fetched object twice. Now a first " +
			"checkout writes the commit's tree into the empty worktree itself (steps/checkout/fresh.go: one worker per core, the " +
			"index written once; anything unusual goes back to `Worktree.Checkout`), the storage keeps its pack files open, and " +
			"fetched packs are indexed in one pass (steps/checkout/packindex.go). Of the agent's CPU: ~60% writing the files, two " +
			"thirds of that inflating blobs through go-git's packfile reader (`Packfile.GetByOffset`, whose scanner reads byte by " +
			"byte), the rest file system calls; ~23% indexing the pack (inflating and hashing every object). What remains: read " +
			"the blobs straight from the pack at the offsets the indexer already knows, and resolve deltas on more than one core.",
	},
}

// notesFor returns the profile notes of the metrics that missed their goal.
func notesFor(missed []row) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range missed {
		if r.Met != metNo {
			continue
		}
		for _, n := range profileNotes {
			if strings.HasPrefix(r.Metric, n.metric) && !seen[n.metric] {
				seen[n.metric] = true
				out = append(out, "- **"+n.metric+"…**: "+n.text)
			}
		}
	}
	if len(out) > 0 {
		out = append([]string{profiled + ":", ""}, out...)
	}
	return out
}

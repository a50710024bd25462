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

const profiled = "Profiled on 2026-11-22 (commit 4f05779 and its working tree), 2 cores, with `perf record -g` on an unstripped build of the binary and with `go test -bench StepOutput -cpuprofile` in this package"

var profileNotes = []profileNote{
	{
		metric: "log throughput: 1,000,000 lines (97 MB), 50 secrets, fast producer",
		text: "A step's output is handled on one goroutine (steps/proc → jobs.lineWriter → stepRun.processLine → console.write). " +
			"Of the agent's CPU: 39% `report.(*logs).write` (a timestamp formatted for every line by `time.Time.AppendFormat`, 13%; " +
			"every line written to two page files, the step's and the job's, 12%; the live feed, 6%), 20% masking " +
			"(`mask.findLiterals`, 17%), 15% the HTTPS upload, ~8% GC. Masking alone already takes about 1.6× bash's whole " +
			"run (see its section), so with masking on the reading goroutine ≤ 1.5× is out of reach on 2 cores. What remains: " +
			"format the timestamp once per millisecond rather than per line (jobs/report/pages.go, logs.write), and hand masked " +
			"lines to the page writer on another goroutine so that masking and writing overlap.",
	},
	{
		metric: "log throughput: 1,000,000 lines (97 MB), 50 secrets, slow producer",
		text: "bash's printf makes one write(2) per line, so the agent reads one line per wake-up: its CPU time for the same " +
			"bytes triples against the fast producer, and over half of it is the Go scheduler parking on and polling the pipe " +
			"(`runtime.findRunnable`, `runtime.netpoll`); the line handling itself costs what it does for the fast producer. " +
			"A reader that does nothing (`cat`) already costs this producer 1.1–1.5× its /dev/null time here, and goagent " +
			"landed at 1.06–1.21× of that. What could remain: batch lines per wake-up, e.g. after a short read wait briefly " +
			"for more before handing the chunk on (steps/proc, outputs.start), trading a fraction of a millisecond of console " +
			"latency for fewer wake-ups.",
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

// Package webui serves a live web view of the runs of a local Azure DevOps
// emulator (internal/devserver): the runs list, each run's jobs and their
// timelines (steps with state, result and duration), the selected step's
// console as lines arrive, issues, and the summary of a finished run.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary: no build
// step, nothing fetched from the network (a Content-Security-Policy forbids
// it). It talks to the server over one WebSocket at /ws. The server never
// sees a secret in clear: console lines, issues and logs are what the agent
// posted, masked before they left it, and the server adds nothing.
//
// # WebSocket protocol (version 1)
//
// Every frame is a text frame holding one JSON object with a "type". The
// client sends one kind of frame:
//
//	{"type":"watch","run":"<plan id>","step":"<record id>","after":120,"gen":"<gen>"}
//
// It names the run whose timeline it wants (optional: without it the client
// only gets the runs list), the step whose console it wants (optional), the
// number of the last console line it already has (after, 0 for none) and the
// console generation that number belongs to (gen, from the last "lines"
// message; empty trusts after as is). A watch replaces the previous one. A
// client sends it after connecting and whenever the user picks another run
// or step; after a reconnect it sends the same watch with its after and gen
// and resumes exactly where it was: nothing duplicated, nothing lost.
//
// Console lines are numbered 1, 2, … in the order the emulator stored them
// for the step, which is the order of job.Feed(stepID). The feed's own
// startLine is not used as the number: the agent numbers feed lines as its
// log pages count them (a ##[endgroup] shares the next line's number, a
// message with newlines takes several), so those numbers are neither unique
// nor contiguous.
//
// The server sends:
//
//	{"type":"hello","protocol":1,"server":"<instance id>"}      first, once
//	{"type":"runs","runs":[Run…]}                                 the whole list: after hello, a watch or a resync
//	{"type":"run","run":Run}                                      a run's summary changed
//	{"type":"snapshot","id":"<plan id>","run":Run|null,"jobs":[Job…]}
//	                                                              the watched run, each Job with its records
//	                                                              (null run: not known yet; it follows when it is)
//	{"type":"job","run":"<plan id>","job":Job}                    a job of the watched run changed state
//	{"type":"record","run":"<plan id>","job":"<job id>","record":Record}
//	                                                              a timeline record of the watched run changed
//	{"type":"lines","run":"<plan id>","step":"<record id>","gen":"<gen>","first":121,"lines":["…"],"reset":false}
//	                                                              console lines first, first+1, … of the watched step
//	{"type":"resync","reason":"…"}                                the client fell behind: its pending updates were
//	                                                              dropped; "runs" and "snapshot" follow and replace
//	                                                              what it has (console lines are not affected)
//	{"type":"error","error":"…"}                                  a frame the server could not use; the connection stays
//
// "lines" messages of a step are contiguous: the first one after a watch
// starts at after+1, each next one where the previous ended. "reset":true
// (with first 1) means the console was rebuilt (the client's gen is stale,
// e.g. after a server restart, or the server re-read the emulator after
// losing events): the client drops the lines it has for the step.
//
// Flow control: console lines are never queued per subscriber; the server
// keeps one copy of each step's console and each connection a cursor into
// it, so a slow client only gets bigger batches later. Timeline and run
// updates go through a bounded queue per connection (Options.QueueLimit);
// when it is full the queue is dropped and the client gets "resync" and a
// fresh snapshot. Nothing a client does can block the emulator or the agent:
// the hub reads the emulator's event stream into its own model and never
// waits on a connection; a connection whose writes stall for
// Options.WriteTimeout is closed (the client reconnects and resumes).
//
// Security: the server listens on 127.0.0.1 by default. WebSocket upgrades
// are accepted without an Origin header (non-browser clients), from the
// page's own origin, or from a loopback origin; any other origin gets 403.
// Every request must name a Host that is an IP address, localhost, or one of
// Options.AllowedHosts, which keeps DNS-rebinding pages out.
package webui

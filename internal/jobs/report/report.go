// Package report is the job runner's Reporter over the job's own REST
// connection: timeline records, the live console feed, paged log upload,
// attachments and the JobCompleted event (worker.md §7, §8.1).
//
// It follows the official agent's JobServerQueue and PagingLogger
// (microsoft/azure-pipelines-agent src/Microsoft.VisualStudio.Services.Agent/
// JobServerQueue.cs, Logging.cs): three queues, each drained by its own
// goroutine — console lines every 500 ms (1 s after the first 30 ticks),
// timeline records every 500 ms, files as they come. Log lines are spooled to
// page files on disk and uploaded a page at a time, so memory does not grow
// with the size of a job's output.
package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/jobs"
)

// Defaults, from JobServerQueue.cs and Logging.cs unless noted.
const (
	DefaultPageSize             = 8 << 20 // PagingLogger.PageSize
	DefaultFeedInterval         = time.Second
	DefaultTimelineInterval     = 500 * time.Millisecond
	DefaultRetryDelay           = time.Second // goagent's choice: the agent re-sends on the next tick
	DefaultCompletionRetryDelay = 5 * time.Second
	completionAttempts          = 5 // JobRunner.CompleteJobAsync
)

// Errors Finish wraps, so the caller can tell why the job must fail.
var (
	// ErrOutputVariables: timeline records carrying output variables never
	// reached the service; downstream jobs would read wrong outputs, so the
	// job fails (JobServerQueue: "OutputVariablePublishFailed").
	ErrOutputVariables = errors.New("Failed to publish output variables.")
	// ErrNotCompleted: the JobCompleted plan event was not delivered.
	ErrNotCompleted = errors.New("the JobCompleted event was not delivered")
	// ErrFinished is returned by a second Finish.
	ErrFinished = errors.New("reporter already finished")
)

// Options configure a Reporter. Plan, JobID and PagesDir are required.
type Options struct {
	Plan         *azdo.Plan
	JobID        string // the Job record's id; the feed is posted to it, with stepId per line
	RequestID    int64
	PlanVersion  int           // >= 8: Finish raises JobCompleted; below, the listener finishes the request
	PagesDir     string        // log pages are spooled here (the official agent: _diag/pages)
	FeedInterval time.Duration // console feed cadence after the first 30 ticks; default 1 s
	Logger       *slog.Logger
	Clock        func() time.Time // log line timestamps; default time.Now

	// Knobs for tests; zero values take the defaults above.
	PageSize             int           // bytes per log page
	TimelineInterval     time.Duration // timeline record cadence
	RetryDelay           time.Duration // first back-off for feed, timeline and log page retries
	CompletionRetryDelay time.Duration // between JobCompleted attempts
}

// Reporter implements jobs.Reporter over HTTP. Create it with New.
type Reporter struct {
	o     Options
	plan  *azdo.Plan
	log   *slog.Logger
	now   func() time.Time
	jobID string

	ctx    context.Context // background work; ends with New's ctx or Finish's deadline
	cancel context.CancelFunc

	finished atomic.Bool

	logs    logs
	feed    feed
	uploads uploads
	tl      timeline
	details detailTimelines // steps' detail timelines (detail.go)
	flushMu sync.Mutex      // one timeline flush at a time

	feedDone, upDone, tlDone chan struct{} // goroutine exits
	stopFeed, stopUp, stopTL chan struct{} // Finish's signals to drain and stop
}

var _ jobs.Reporter = (*Reporter)(nil)

// New starts the reporter's goroutines. ctx bounds them: it must outlive
// Finish (do not pass the job's cancellation context — a canceled job is still
// reported). Finish stops them.
func New(ctx context.Context, o Options) (*Reporter, error) {
	r, err := newReporter(ctx, o)
	if err != nil {
		return nil, err
	}
	r.start()
	return r, nil
}

// newReporter builds a Reporter without starting its goroutines (tests drive
// the queues by hand).
func newReporter(ctx context.Context, o Options) (*Reporter, error) {
	if o.Plan == nil || o.Plan.Client == nil {
		return nil, errors.New("new job reporter: no plan connection (Options.Plan)")
	}
	if _, err := uuid.Parse(o.JobID); err != nil {
		return nil, fmt.Errorf("new job reporter: job id %q is not a GUID: %w", o.JobID, err)
	}
	if o.PagesDir == "" {
		return nil, errors.New("new job reporter: no directory for log pages (Options.PagesDir, e.g. _diag/pages)")
	}
	if err := os.MkdirAll(o.PagesDir, 0o700); err != nil {
		return nil, fmt.Errorf("new job reporter: create log page directory: %w", err)
	}
	if o.FeedInterval <= 0 {
		o.FeedInterval = DefaultFeedInterval
	}
	if o.PageSize <= 0 {
		o.PageSize = DefaultPageSize
	}
	if o.TimelineInterval <= 0 {
		o.TimelineInterval = DefaultTimelineInterval
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.CompletionRetryDelay <= 0 {
		o.CompletionRetryDelay = DefaultCompletionRetryDelay
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	r := &Reporter{
		o: o, plan: o.Plan, log: o.Logger.With("job", o.JobID), now: o.Clock, jobID: o.JobID,
		feedDone: make(chan struct{}), upDone: make(chan struct{}), tlDone: make(chan struct{}),
		stopFeed: make(chan struct{}), stopUp: make(chan struct{}), stopTL: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.logs.init()
	r.feed.init(o.FeedInterval)
	r.uploads.init()
	r.tl.init()
	return r, nil
}

func (r *Reporter) start() {
	go r.feedLoop()
	go r.uploadLoop()
	go r.timelineLoop()
}

// SetFeedInterval changes the console feed cadence (JobMetadataUpdate's
// PostLinesFrequencyMillis) and runs the feed at once, as
// JobServerQueue.UpdateWebConsoleLineRate does.
func (r *Reporter) SetFeedInterval(d time.Duration) {
	if d <= 0 {
		return
	}
	r.feed.interval.Store(int64(d))
	r.feed.wakeUp()
}

// UpdateRecord queues the record's full state. A completed record's log page
// is closed and queued for upload, and the console feed is drained, as
// ExecutionContext.Complete does.
func (r *Reporter) UpdateRecord(rec jobs.Record) {
	if r.finished.Load() {
		r.log.Warn("timeline record update after Finish dropped", "record", rec.ID)
		return
	}
	if _, err := uuid.Parse(rec.ID); err != nil {
		r.log.Warn("timeline record with a non-GUID id dropped", "record", rec.ID)
		return
	}
	if rec.Details != "" {
		if _, err := uuid.Parse(rec.Details); err == nil {
			r.details.named(rec.Details)
		}
	}
	r.tl.update(cloneRecord(rec))
	if rec.State == jobs.StateCompleted {
		r.logs.end(r, rec.ID)
		r.feed.requestDrain()
	}
}

// WriteLine appends a line to the record's log (and the job's log for a
// step) and queues it for the live console.
func (r *Reporter) WriteLine(recordID, line string) {
	r.WriteLines(recordID, []string{line})
}

// WriteLines is WriteLine for each line in order, with one lock, one
// timestamp and one feed enqueue for all of them.
func (r *Reporter) WriteLines(recordID string, lines []string) {
	if len(lines) == 0 {
		return
	}
	if r.finished.Load() {
		r.log.Debug("log lines after Finish dropped", "record", recordID, "lines", len(lines))
		return
	}
	r.logs.write(r, recordID, lines)
}

// Attach queues a file upload as a record attachment. The file is opened now,
// so that it survives a cleanup of its directory before the upload.
func (r *Reporter) Attach(recordID, attachmentType, name, path string) {
	if r.finished.Load() {
		r.log.Warn("attachment after Finish dropped", "record", recordID, "type", attachmentType, "name", name)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		r.log.Warn("attachment not uploaded: cannot open the file", "record", recordID, "type", attachmentType, "name", name, "error", err)
		return
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		r.log.Warn("attachment not uploaded: not a regular file", "record", recordID, "type", attachmentType, "name", name, "path", path)
		return
	}
	r.uploads.push(upload{recordID: recordID, attType: attachmentType, attName: name, file: f, size: fi.Size()})
}

// Finish drains the queues in the official shutdown order (console, files,
// timeline), then for plan version >= 8 raises JobCompleted. Everything is
// bounded by ctx; no goroutine of the reporter survives it. The error wraps
// ErrOutputVariables and/or ErrNotCompleted; what is best effort (console
// lines, log pages, attachments, records without variables) is logged, not
// returned.
func (r *Reporter) Finish(ctx context.Context, c jobs.Completion) error {
	if r.finished.Swap(true) {
		return ErrFinished
	}
	stop := context.AfterFunc(ctx, r.cancel)
	defer stop()
	defer r.cancel()

	r.logs.endAll(r)
	close(r.stopFeed)
	close(r.stopUp)
	<-r.feedDone
	<-r.upDone
	close(r.stopTL)
	<-r.tlDone

	var errs []error
	if err := r.finalTimelineFlush(); err != nil {
		errs = append(errs, err)
	}
	r.uploads.discard()
	r.logDropped()

	if r.o.PlanVersion >= 8 {
		result := c.Result
		if result == "" {
			result = jobs.ResultSucceeded
		}
		if len(errs) > 0 {
			result = mergeFailed(result)
		}
		if err := r.raiseCompleted(ctx, result, c.AgentShuttingDown); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("finish job %s: %w", r.jobID, errors.Join(errs...))
}

// mergeFailed is TaskResultUtil.MergeTaskResults(result, Failed): canceled,
// skipped and abandoned stay, anything else becomes failed.
func mergeFailed(result string) string {
	switch result {
	case jobs.ResultCanceled, jobs.ResultSkipped, jobs.ResultAbandoned:
		return result
	}
	return jobs.ResultFailed
}

func (r *Reporter) logDropped() {
	f := r.feed.stats()
	if f.dropped > 0 || f.failed > 0 {
		r.log.Info("live console lines not delivered (best effort; the logs have them)", "skipped", f.dropped, "failed", f.failed)
	}
	if n := r.uploads.failedPages.Load(); n > 0 {
		r.log.Warn("log pages not uploaded; they are kept on disk", "pages", n, "dir", r.o.PagesDir)
	}
	if n := r.uploads.failedAttachments.Load(); n > 0 {
		r.log.Warn("attachments not uploaded", "count", n)
	}
}

// backoff is base doubled per failure, capped at 30 s.
func backoff(base time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// wake is a non-blocking signal on a 1-buffered channel.
func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

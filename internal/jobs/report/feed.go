package report

import (
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/goagent-dev/goagent/internal/pause"
	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// Live console feed constants (JobServerQueue.ProcessWebConsoleLinesQueueAsync).
const (
	aggressiveFeedInterval = 500 * time.Millisecond
	aggressiveFeedTicks    = 30
	maxFeedLinesPerTick    = 500
	maxFeedBatch           = 100
	drainFeedBatches       = 2 // when draining, only the newest 2 batches per step
	maxFeedLineUnits       = 1024
	// feedQueueCap bounds the queue; the official queue is unbounded, but
	// memory must not grow with output. When a step writes faster than the
	// feed posts, the oldest queued lines are skipped: the feed is best effort
	// and a drain would skip them anyway.
	feedQueueCap = 5000
)

// feedLine is a console line taken from the queue to be posted.
type feedLine struct {
	step string
	line string
	num  int64 // the line's number in that record's log
}

// queuedLine is a console line in the queue; its text is in a chunk.
type queuedLine struct {
	step   string
	chunk  *feedChunk
	off, n int32 // the text is chunk.buf[off : off+n]
	num    int64
}

// The queue copies the lines' text into chunks of feedChunkSize bytes,
// reused once every line in them has left the queue. The queue must not
// keep the callers' strings (a line may share memory with a large buffer),
// and most lines of a step printing fast leave it unposted, skipped at the
// cap: copying them into reused memory costs the garbage collector nothing.
const (
	feedChunkSize  = 64 << 10
	feedFreeChunks = 2 // empty chunks kept for reuse
)

type feedChunk struct {
	buf  []byte
	refs int // queued lines in it
}

type feed struct {
	mu        sync.Mutex
	q         []queuedLine
	head      int
	cur       *feedChunk // where new lines are copied
	free      []*feedChunk
	seq       int64 // sequence number of q[head]: lines ever dequeued or skipped
	drainTo   int64 // a drain covers the lines before this sequence number
	delivered bool  // a batch has reached the service (JobServerQueue._firstConsoleOutputs)
	dropped   int64
	failed    int64

	interval atomic.Int64
	wake     chan struct{}
}

type feedStats struct{ dropped, failed int64 }

func (f *feed) init(interval time.Duration) {
	f.interval.Store(int64(interval))
	f.wake = make(chan struct{}, 1)
}

func (f *feed) wakeUp() { wake(f.wake) }

func (f *feed) stats() feedStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return feedStats{dropped: f.dropped, failed: f.failed}
}

// push queues lines with their numbers in the record's log. Called with the
// log lock held, so queue order is log order.
func (f *feed) push(step string, lines []string, nums []int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wasEmpty := len(f.q) == f.head
	if skip := len(lines) - feedQueueCap; skip > 0 {
		// Only the newest lines of the batch would stay queued.
		f.skip(len(f.q) - f.head)
		f.seq += int64(skip)
		f.dropped += int64(skip)
		lines, nums = lines[skip:], nums[skip:]
	}
	for i, l := range lines {
		keep, cut := feedCut(l)
		n := len(keep)
		if cut {
			n += len(feedEllipsis)
		}
		c := f.room(n)
		off := len(c.buf)
		c.buf = append(c.buf, keep...)
		if cut {
			c.buf = append(c.buf, feedEllipsis...)
		}
		c.refs++
		f.q = append(f.q, queuedLine{step: step, chunk: c, off: int32(off), n: int32(n), num: nums[i]})
	}
	if n := len(f.q) - f.head; n > feedQueueCap {
		f.skip(n - feedQueueCap)
	}
	if f.head > 1024 && f.head*2 > len(f.q) {
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
	if !f.delivered && wasEmpty && len(f.q) > f.head {
		// The first line of the job goes out at once and alone.
		wake(f.wake)
	}
}

// room returns the chunk to copy n bytes into (a line the feed posts is at
// most 1024 UTF-16 units and "...", well under a chunk).
func (f *feed) room(n int) *feedChunk {
	if c := f.cur; c != nil && len(c.buf)+n <= cap(c.buf) {
		return c
	}
	old := f.cur
	if k := len(f.free); k > 0 {
		f.cur = f.free[k-1]
		f.free[k-1] = nil
		f.free = f.free[:k-1]
	} else {
		f.cur = &feedChunk{buf: make([]byte, 0, max(feedChunkSize, n))}
	}
	if old != nil && old.refs == 0 {
		f.recycle(old)
	}
	return f.cur
}

// release notes that a line left the queue.
func (f *feed) release(q queuedLine) {
	c := q.chunk
	c.refs--
	if c.refs == 0 && c != f.cur {
		f.recycle(c)
	}
}

func (f *feed) recycle(c *feedChunk) {
	c.buf = c.buf[:0]
	if len(f.free) < feedFreeChunks && cap(c.buf) == feedChunkSize {
		f.free = append(f.free, c)
	}
}

// skip drops the n oldest queued lines.
func (f *feed) skip(n int) {
	for _, q := range f.q[f.head : f.head+n] {
		f.release(q)
	}
	clear(f.q[f.head : f.head+n])
	f.head += n
	f.seq += int64(n)
	f.dropped += int64(n)
}

// requestDrain marks everything queued so far for the next tick, whole
// (ExecutionContext.Complete sets ForceDrainWebConsoleQueue). Lines queued
// after the mark — the next step's — are not part of the drain: the official
// flag also catches them when they pile up before the tick, and then skips
// all but their newest 200.
func (f *feed) requestDrain() {
	f.mu.Lock()
	f.drainTo = f.seq + int64(len(f.q)-f.head)
	f.mu.Unlock()
	wake(f.wake)
}

// take dequeues one tick's lines: the first line alone until a post has
// succeeded; when draining, everything up to the drain mark (all of it for
// the final drain); else at most maxFeedLinesPerTick.
func (f *feed) take(final bool) ([]feedLine, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.q) - f.head
	drain := final || f.drainTo > f.seq
	switch {
	case !f.delivered:
		n = min(n, 1)
	case final:
	case drain:
		n = int(f.drainTo - f.seq)
	default:
		n = min(n, maxFeedLinesPerTick)
	}
	out := make([]feedLine, n)
	for i, q := range f.q[f.head : f.head+n] {
		out[i] = feedLine{step: q.step, line: string(q.chunk.buf[q.off : q.off+q.n]), num: q.num}
		f.release(q)
	}
	clear(f.q[f.head : f.head+n])
	f.head += n
	f.seq += int64(n)
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
	}
	return out, drain
}

func (r *Reporter) feedLoop() {
	defer close(r.feedDone)
	ticks := 0
	for {
		t := time.NewTimer(feedDelay(ticks, time.Duration(r.feed.interval.Load())))
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-r.stopFeed:
			t.Stop()
			r.feedTick(true)
			return
		case <-r.feed.wake:
		case <-t.C:
		}
		t.Stop()
		ticks++
		r.feedTick(false)
	}
}

// feedDelay is the wait before the next tick: 500 ms for the first 30 ticks
// (or the configured interval when shorter), then the configured interval.
func feedDelay(ticks int, interval time.Duration) time.Duration {
	if ticks < aggressiveFeedTicks {
		return min(interval, aggressiveFeedInterval)
	}
	return interval
}

// feedTick posts one tick's lines, grouped per step in batches of at most
// maxFeedBatch. A failed batch is tried once more, then dropped: console
// lines are time sensitive and the log has them. Nothing is re-queued, so
// nothing is posted twice or out of order.
func (r *Reporter) feedTick(final bool) {
	lines, drain := r.feed.take(final)
	if len(lines) == 0 {
		return
	}
	var steps []string
	byStep := map[string][][]feedLine{}
	for _, l := range lines {
		bs, ok := byStep[l.step]
		if !ok {
			steps = append(steps, l.step)
		}
		if len(bs) == 0 || len(bs[len(bs)-1]) == maxFeedBatch {
			bs = append(bs, make([]feedLine, 0, maxFeedBatch))
		}
		bs[len(bs)-1] = append(bs[len(bs)-1], l)
		byStep[l.step] = bs
	}
	for _, step := range steps {
		batches := byStep[step]
		if drain && len(batches) > drainFeedBatches {
			skip := batches[:len(batches)-drainFeedBatches]
			n := 0
			for _, b := range skip {
				n += len(b)
			}
			r.feed.mu.Lock()
			r.feed.dropped += int64(n)
			r.feed.mu.Unlock()
			batches = batches[len(batches)-drainFeedBatches:]
		}
		stepID, err := uuid.Parse(step)
		if err != nil {
			r.log.Warn("console lines of a record with a non-GUID id dropped", "record", step)
			continue
		}
		for _, b := range batches {
			r.postFeed(stepID, b)
		}
	}
}

func (r *Reporter) postFeed(stepID uuid.UUID, b []feedLine) {
	vals := make([]string, len(b))
	for i, l := range b {
		vals[i] = l.line
	}
	count := len(vals)
	start := uint64(b[0].num)
	w := taskagent.TimelineRecordFeedLinesWrapper{Count: &count, Value: &vals, StepId: &stepID, StartLine: &start}
	for attempt := range 2 {
		if attempt > 0 && pause.Sleep(r.ctx, r.o.RetryDelay) != nil {
			break
		}
		err := r.plan.AppendFeed(r.ctx, r.jobID, w)
		if err == nil {
			r.feed.mu.Lock()
			r.feed.delivered = true
			r.feed.mu.Unlock()
			return
		}
		r.log.Debug("console lines not posted", "step", stepID, "startLine", start, "attempt", attempt+1, "error", err)
		if r.ctx.Err() != nil || tokenRejected(err) {
			break
		}
	}
	r.feed.mu.Lock()
	r.feed.failed += int64(len(b))
	r.feed.mu.Unlock()
}

const feedEllipsis = "..."

// feedCut is how much of a line the feed posts: lines longer than 1024 UTF-16
// code units (.NET string length) are cut to 1024 units and get "..." (the
// ellipsis result), as JobServerQueue does. Where the cut would split a
// surrogate pair, .NET leaves half a pair; a Go string cannot hold one, so
// the whole character is left out.
func feedCut(s string) (keep string, ellipsis bool) {
	if len(s) <= maxFeedLineUnits { // bytes >= UTF-16 units
		return s, false
	}
	units := 0
	for i, r := range s {
		n := 1
		if r >= 0x10000 && r != utf8.RuneError {
			n = 2
		}
		if units+n > maxFeedLineUnits {
			return s[:i], true
		}
		units += n
	}
	return s, false
}

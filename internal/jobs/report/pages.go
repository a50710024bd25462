package report

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/pause"
)

const (
	// timestampLayout is .NET's DateTime.ToString("O") for a UTC time:
	// seven fractional digits, always written, and Z (PagingLogger.Write).
	timestampLayout = "2006-01-02T15:04:05.0000000Z"
	groupStartTag   = "##[group]"
	groupEndTag     = "##[endgroup]"
	// pageUploadAttempts: a page whose upload fails is uploaded again to a
	// new log (the official agent drops it at the first failure).
	pageUploadAttempts = 3
)

// logs spools every record's log lines to page files (PagingLogger): one
// logger per record, pages of PageSize bytes, each page uploaded as a log of
// its own when full or when its record completes.
type logs struct {
	mu    sync.Mutex
	byID  map[string]*pageLog
	stamp stamp
	b     batch // scratch, reused under mu
}

type pageLog struct {
	recordID string
	pageID   string
	pages    int
	f        *os.File
	w        *bufio.Writer
	path     string
	size     int
	total    int64 // lines written, counted as PagingLogger.TotalLines
	group    bool  // a ##[group] is open
	broken   bool  // the current page could not be written
	warned   bool  // a write problem was logged
}

func (l *logs) init() { l.byID = map[string]*pageLog{} }

func (l *logs) get(id string) *pageLog {
	pl := l.byID[id]
	if pl == nil {
		pl = &pageLog{recordID: id, pageID: uuid.NewString()}
		l.byID[id] = pl
	}
	return pl
}

// maxBatchText bounds the formatted text of one batch: a call with more lines
// is written in several batches, so the scratch buffer stays small.
const maxBatchText = 64 << 10

// write appends lines to the record's log and, for a step, to the job's log,
// then queues them for the live console with their numbers in the record's
// log. The lines of one call share a timestamp, and are formatted once for
// both logs.
func (l *logs) write(r *Reporter, recordID string, lines []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.finished.Load() { // checked under the lock: Finish's endAll may have run
		return
	}
	pl := l.byID[recordID]
	if pl == nil {
		if _, err := uuid.Parse(recordID); err != nil {
			r.log.Warn("log line for a record with a non-GUID id dropped", "record", recordID)
			return
		}
		pl = l.get(recordID)
	}
	var job *pageLog
	if recordID != r.jobID {
		job = l.get(r.jobID)
	}
	ts := l.stamp.format(r.now())
	b := &l.b
	for len(lines) > 0 {
		n := b.format(ts, lines, maxBatchText)
		pl.writeBatch(r, lines[:n], b, true)
		if job != nil {
			job.writeBatch(r, lines[:n], b, false)
		}
		r.feed.push(recordID, lines[:n], b.nums)
		lines = lines[n:]
	}
	b.reset()
}

// end closes the record's current page and queues it for upload.
func (l *logs) end(r *Reporter, recordID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pl := l.byID[recordID]; pl != nil {
		pl.endPage(r)
	}
}

// endAll closes every open page, the job's last: its log ends after its steps'.
func (l *logs) endAll(r *Reporter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]string, 0, len(l.byID))
	for id := range l.byID {
		if id != r.jobID {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		l.byID[id].endPage(r)
	}
	if pl := l.byID[r.jobID]; pl != nil {
		pl.endPage(r)
	}
}

// batch is lines formatted for the page files: "<timestamp> <line>\n" each.
type batch struct {
	text []byte
	meta []lineMeta
	nums []int64 // the lines' numbers in the record's log
}

type lineMeta struct {
	end int  // end of the line's text in batch.text
	nl  int  // newlines inside the line: each counts as a line
	tag bool // contains "##[": may open or close a group
}

// format formats lines from the first until the text reaches max bytes (at
// least one line) and returns how many it took.
func (b *batch) format(ts []byte, lines []string, max int) int {
	b.text, b.meta, b.nums = b.text[:0], b.meta[:0], b.nums[:0]
	n := 0
	for _, line := range lines {
		if n > 0 && len(b.text) >= max {
			break
		}
		b.text = append(b.text, ts...)
		b.text = append(b.text, ' ')
		b.text = append(b.text, line...)
		b.text = append(b.text, '\n')
		m := lineMeta{end: len(b.text), tag: strings.Contains(line, "##[")}
		if strings.IndexByte(line, '\n') >= 0 {
			m.nl = strings.Count(line, "\n")
		}
		b.meta = append(b.meta, m)
		n++
	}
	return n
}

// reset lets go of a buffer grown by a very long line.
func (b *batch) reset() {
	if cap(b.text) > 2*maxBatchText {
		b.text = nil
	}
}

// writeBatch appends the batch's lines to the log, numbering them into
// b.nums when number is set. Like PagingLogger, a message with embedded
// newlines counts as that many lines, and a ##[endgroup] closing an open
// ##[group] counts as none (the web console hides it), so the next line gets
// its number too. Consecutive lines of a page go to the file in one write.
func (pl *pageLog) writeBatch(r *Reporter, lines []string, b *batch, number bool) {
	run, start := -1, 0 // run: start of the bytes not yet written to the page
	for i, m := range b.meta {
		from := start
		start = m.end
		if number {
			b.nums = append(b.nums, pl.total+1)
		}
		if m.tag {
			pl.groupTags(lines[i])
		}
		pl.total += 1 + int64(m.nl)

		if pl.w == nil && !pl.openPage(r) {
			continue
		}
		if pl.broken {
			continue
		}
		if run < 0 {
			run = from
		}
		pl.size += m.end - from
		if pl.size >= r.o.PageSize {
			pl.put(r, b.text[run:m.end])
			run = -1
			pl.endPage(r)
		}
	}
	if run >= 0 {
		pl.put(r, b.text[run:start])
	}
}

func (pl *pageLog) groupTags(msg string) {
	lower := strings.ToLower(msg)
	if strings.Contains(lower, groupStartTag) {
		pl.group = true
	}
	if pl.group && strings.Contains(lower, groupEndTag) {
		pl.group = false
		pl.total--
	}
}

// put writes formatted lines to the current page.
func (pl *pageLog) put(r *Reporter, p []byte) {
	if _, err := pl.w.Write(p); err != nil {
		pl.broken = true
		pl.warned = true
		r.log.Warn("log page not writable; lines are missing from the uploaded log", "record", pl.recordID, "page", pl.path, "error", err)
	}
}

// stamp formats log line timestamps, reusing the date and time of day while
// the second stays the same: only the seven fractional digits change.
type stamp struct {
	sec int64
	buf []byte
}

// format returns t as timestampLayout; the result is valid until the next call.
func (s *stamp) format(t time.Time) []byte {
	t = t.UTC()
	if sec := t.Unix(); s.buf == nil || sec != s.sec {
		s.buf = t.AppendFormat(s.buf[:0], timestampLayout)
		s.sec = sec
		if len(s.buf) != len(timestampLayout) { // a year outside 0000–9999
			s.buf = nil
			return t.AppendFormat(nil, timestampLayout)
		}
		return s.buf
	}
	frac := t.Nanosecond() / 100
	for i := len(timestampLayout) - 2; i >= len(timestampLayout)-8; i-- {
		s.buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	return s.buf
}

// openPage starts the next page file; pages are created on first write, so
// an ended log that gets no more lines uploads no empty page.
func (pl *pageLog) openPage(r *Reporter) bool {
	pl.pages++
	pl.path = filepath.Join(r.o.PagesDir, fmt.Sprintf("%s_%d.log", pl.pageID, pl.pages))
	f, err := os.OpenFile(pl.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		// The next write tries a new page; say so once per log.
		if !pl.warned {
			pl.warned = true
			r.log.Warn("log page not created; lines are missing from the uploaded log", "record", pl.recordID, "error", err)
		}
		return false
	}
	pl.f, pl.w, pl.size, pl.broken = f, bufio.NewWriterSize(f, 64<<10), 0, false
	return true
}

func (pl *pageLog) endPage(r *Reporter) {
	if pl.w == nil {
		return
	}
	err := pl.w.Flush()
	if cerr := pl.f.Close(); err == nil {
		err = cerr
	}
	path, size, broken := pl.path, pl.size, pl.broken
	pl.f, pl.w, pl.size, pl.broken = nil, nil, 0, false
	if err != nil || broken {
		r.log.Warn("log page not uploaded: it could not be written", "record", pl.recordID, "page", path, "error", err)
		r.uploads.failedPages.Add(1)
		return
	}
	r.uploads.push(upload{recordID: pl.recordID, path: path, size: int64(size)})
}

// upload is a log page (path) or an attachment (file).
type upload struct {
	recordID         string
	path             string
	file             *os.File
	size             int64
	attType, attName string
}

type uploads struct {
	mu   sync.Mutex
	q    []upload
	wake chan struct{}

	failedPages, failedAttachments atomic.Int64
}

func (u *uploads) init() { u.wake = make(chan struct{}, 1) }

func (u *uploads) push(it upload) {
	u.mu.Lock()
	u.q = append(u.q, it)
	u.mu.Unlock()
	wake(u.wake)
}

func (u *uploads) pop() (upload, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.q) == 0 {
		return upload{}, false
	}
	it := u.q[0]
	u.q[0] = upload{}
	u.q = u.q[1:]
	return it, true
}

// discard gives up on what is still queued (Finish ran out of time).
func (u *uploads) discard() {
	for {
		it, ok := u.pop()
		if !ok {
			return
		}
		if it.file != nil {
			it.file.Close()
			u.failedAttachments.Add(1)
		} else {
			u.failedPages.Add(1)
		}
	}
}

// uploadLoop uploads files one at a time in queue order (a record's pages
// must arrive in order; one 8 MiB body in flight keeps memory flat).
func (r *Reporter) uploadLoop() {
	defer close(r.upDone)
	for {
		for {
			if r.ctx.Err() != nil {
				return
			}
			it, ok := r.uploads.pop()
			if !ok {
				break
			}
			r.upload(it)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-r.uploads.wake:
		case <-r.stopUp:
			for r.ctx.Err() == nil {
				it, ok := r.uploads.pop()
				if !ok {
					return
				}
				r.upload(it)
			}
			return
		}
	}
}

func (r *Reporter) upload(it upload) {
	if it.file != nil {
		r.uploadAttachment(it)
		return
	}
	r.uploadPage(it)
}

// uploadPage creates a log and appends the page to it, then queues the
// record update that points the record at that log (JobServerQueue.UploadFile).
// An append is not idempotent — if it failed after the service stored it,
// appending again would duplicate the page — so a failed page is uploaded
// again to a new log; the abandoned log is never linked to the record.
func (r *Reporter) uploadPage(it upload) {
	f, err := os.Open(it.path)
	if err != nil {
		r.uploads.failedPages.Add(1)
		r.log.Warn("log page not uploaded: cannot read it", "record", it.recordID, "error", err)
		return
	}
	defer f.Close()
	var lastErr error
	for attempt := range pageUploadAttempts {
		if attempt > 0 && pause.Sleep(r.ctx, backoff(r.o.RetryDelay, attempt)) != nil {
			break
		}
		var tl *logRef
		tl, lastErr = r.sendPage(it, f)
		if lastErr == nil {
			r.tl.linkLog(it.recordID, *tl)
			f.Close()
			if err := os.Remove(it.path); err != nil {
				r.log.Debug("uploaded log page not removed", "page", it.path, "error", err)
			}
			return
		}
		r.log.Debug("log page upload failed", "record", it.recordID, "attempt", attempt+1, "error", lastErr)
		if r.ctx.Err() != nil || !azdo.IsTransient(lastErr) {
			break
		}
	}
	r.uploads.failedPages.Add(1)
	r.log.Warn("log page not uploaded; it is kept on disk", "record", it.recordID, "page", it.path, "error", lastErr)
}

func (r *Reporter) sendPage(it upload, f *os.File) (*logRef, error) {
	tl, err := r.plan.CreateLog(r.ctx, `logs\`+it.recordID)
	if err != nil {
		return nil, fmt.Errorf("create log for record %s: %w", it.recordID, err)
	}
	if tl.Id == nil {
		return nil, fmt.Errorf("create log for record %s: %w", it.recordID, errors.New("the service returned no log id"))
	}
	if _, err := r.plan.AppendLogContent(r.ctx, *tl.Id, f, it.size); err != nil {
		return nil, fmt.Errorf("append %d bytes to log %d of record %s: %w", it.size, *tl.Id, it.recordID, err)
	}
	ref := &logRef{id: *tl.Id}
	if tl.Location != nil {
		ref.location = *tl.Location
	}
	return ref, nil
}

// uploadAttachment PUTs the file; best effort, as in the official agent (the
// client retries a PUT on transient failures).
func (r *Reporter) uploadAttachment(it upload) {
	defer it.file.Close()
	// The service attaches files to records it knows: a record created in
	// this timeline tick must reach it first.
	if !r.tl.onService(it.recordID) {
		if err := r.flushTimeline(maxPatchesPerTick); err != nil {
			r.log.Debug("timeline not updated before an attachment", "record", it.recordID, "error", err)
		}
	}
	if _, err := r.plan.CreateAttachment(r.ctx, it.recordID, it.attType, it.attName, it.file, it.size); err != nil {
		r.uploads.failedAttachments.Add(1)
		r.log.Warn("attachment not uploaded", "record", it.recordID, "type", it.attType, "name", it.attName, "error", err)
	}
}

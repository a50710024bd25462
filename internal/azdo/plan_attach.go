package azdo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Plan calls whose body is a file. Send reads an io.Reader body into memory,
// which is wrong for log pages (8 MiB each) and attachments (any size); these
// stream the body from an io.ReaderAt instead, so that a retry can replay it
// and memory does not grow with the file.

// AppendLogContent appends size bytes read from content to log logID. Not
// retried by the client: an append that reached the server before the
// connection dropped would duplicate its lines, so callers upload the page to
// a new log instead (see internal/jobs/report).
func (p *Plan) AppendLogContent(ctx context.Context, logID int, content io.ReaderAt, size int64) (*taskagent.TaskLog, error) {
	var out taskagent.TaskLog
	_, err := p.Client.sendReaderAt(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationLogs, APIVersion: wire.APITask,
		RouteValues: p.values("logId", strconv.Itoa(logID)),
		ContentType: "application/octet-stream", NoRetry: true,
	}, content, size, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateAttachment uploads size bytes from content as attachment type/name of
// a timeline record (PUT, so a retry replaces rather than duplicates).
func (p *Plan) CreateAttachment(ctx context.Context, recordID, attachmentType, name string, content io.ReaderAt, size int64) (*taskagent.TaskAttachment, error) {
	var out taskagent.TaskAttachment
	_, err := p.Client.sendReaderAt(ctx, Request{
		Method: http.MethodPut, Location: wire.LocationAttachments, APIVersion: wire.APITask,
		RouteValues: p.values("timelineId", p.TimelineID, "recordId", recordID, "type", attachmentType, "name", name),
		ContentType: "application/octet-stream",
	}, content, size, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// sendReaderAt is Send for a raw body of size bytes at content, read afresh
// for every attempt. The retry, 401 re-acquire and header rules are Send's.
func (c *Client) sendReaderAt(ctx context.Context, req Request, content io.ReaderAt, size int64, out any) (*Response, error) {
	target, version, err := c.resolve(ctx, req)
	if err != nil {
		return nil, err
	}
	contentType := req.ContentType
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	retryable := !req.NoRetry && (req.Retry || req.Method != http.MethodPost)
	attempts := 1
	if retryable {
		attempts += c.retries
	}
	refreshed := false
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			delay := c.delay(attempt, lastErr)
			c.log.Debug("retrying request", "method", req.Method, "url", redactURL(target), "attempt", attempt+1, "delay", delay, "error", lastErr)
			if err := sleep(ctx, delay); err != nil {
				return nil, lastErr
			}
		}
		resp, err := c.doReaderAt(ctx, req, target, version, content, size, contentType, refreshed)
		if err == nil {
			defer resp.Body.Close()
			return c.decode(req, target, resp, out)
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized && !refreshed {
			refreshed = true
			attempt--
			lastErr = err
			continue
		}
		lastErr = err
		if ctx.Err() != nil || !isRetryable(err) {
			return nil, err
		}
	}
	return nil, lastErr
}

func (c *Client) doReaderAt(ctx context.Context, req Request, target, version string, content io.ReaderAt, size int64, contentType string, refresh bool) (*http.Response, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	hreq, err := http.NewRequestWithContext(rctx, req.Method, target, io.NewSectionReader(content, 0, size))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("build request %s %s: %w", req.Method, redactURL(target), err)
	}
	hreq.ContentLength = size
	hreq.GetBody = func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(content, 0, size)), nil
	}
	if size == 0 {
		hreq.Body = http.NoBody
	}
	accept := "application/json"
	if version != "" {
		accept += "; api-version=" + version
	}
	hreq.Header.Set("Accept", accept)
	hreq.Header.Set("Content-Type", contentType)
	hreq.Header.Set("User-Agent", c.userAgent)
	hreq.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	hreq.Header.Set("X-TFS-Session", c.session)
	hreq.Header.Set("X-VSS-E2EID", uuid.NewString())
	hreq.Header.Set("Accept-Language", "en-US")
	if c.tokens != nil {
		tok, err := c.tokens.Token(ctx, refresh)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s %s: get credential: %w", req.Method, redactURL(target), err)
		}
		hreq.Header.Set("Authorization", tok.Header())
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		cancel()
		return nil, &netError{op: req.Method + " " + redactURL(target), err: stripURL(err)}
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	e := newError(req.Method, redactURL(target), resp.StatusCode, data)
	if resp.StatusCode == http.StatusUnauthorized && e.Message == "" {
		e.Message = "the credential was rejected"
	}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if s, err := strconv.Atoi(ra); err == nil {
			return nil, &retryAfter{err: e, after: time.Duration(s) * time.Second}
		}
	}
	return nil, e
}

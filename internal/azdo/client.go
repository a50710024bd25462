// Package azdo is goagent's REST plumbing for Azure DevOps: base URL handling,
// connection data, resource locations and api-version negotiation, the VSS
// headers, authentication from a TokenSource on every request, timeouts,
// retries with jittered backoff and typed errors.
//
// azure-devops-go-api v7 provides the model types used here, but its Connection
// carries a static auth string, keeps a package-global location cache and
// session id, never retries, and requests other api-versions than the official
// agent; so every call goes through this Client instead (see
// ../shared/research/ecosystem.md §1a).
package azdo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Defaults mirror the official agent's knobs (listener.md §1.8, §8).
const (
	DefaultTimeout = 100 * time.Second // VSTS_HTTP_TIMEOUT default
	DefaultRetries = 3                 // VSTS_HTTP_RETRY default
)

// Options configure a Client. Zero values take the defaults.
type Options struct {
	HTTPClient *http.Client // shares the transport (proxy, CAs); Timeout is ignored
	UserAgent  string
	Timeout    time.Duration // per request
	Retries    int           // retries after the first attempt, for retryable calls
	// Backoff is the first retry delay; it doubles per attempt with ±25 %
	// jitter, capped at MaxBackoff. The .NET handler waits at least 10 s; goagent
	// starts lower so that a brief 5xx blip does not stall a job.
	Backoff    time.Duration
	MaxBackoff time.Duration
	Locations  *Locations // shared cache; nil = private
	Logger     *slog.Logger
}

// Client talks to one Azure DevOps organization or collection.
type Client struct {
	base      *url.URL // always ends in "/"
	tokens    TokenSource
	http      *http.Client
	userAgent string
	session   string
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	maxBack   time.Duration
	locs      *Locations
	log       *slog.Logger
}

// New returns a client for baseURL (e.g. https://dev.azure.com/org, or an
// on-premises collection URL with a path) authenticating with tokens.
func New(baseURL string, tokens TokenSource, opts Options) (*Client, error) {
	u, err := ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		base:      u,
		tokens:    tokens,
		http:      opts.HTTPClient,
		userAgent: opts.UserAgent,
		session:   uuid.NewString(),
		timeout:   opts.Timeout,
		retries:   opts.Retries,
		backoff:   opts.Backoff,
		maxBack:   opts.MaxBackoff,
		locs:      opts.Locations,
		log:       opts.Logger,
	}
	if c.http == nil {
		t, err := NewTransport(TransportOptions{})
		if err != nil {
			return nil, err
		}
		c.http = &http.Client{Transport: t}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.retries < 0 {
		c.retries = 0
	} else if opts.Retries == 0 {
		c.retries = DefaultRetries
	}
	if c.backoff <= 0 {
		c.backoff = time.Second
	}
	if c.maxBack <= 0 {
		c.maxBack = 30 * time.Second
	}
	if c.locs == nil {
		c.locs = NewLocations()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.userAgent == "" {
		c.userAgent = "goagent"
	}
	return c, nil
}

// ParseBaseURL validates an organization/collection URL and normalises it to
// end in "/", keeping any path (https://tfs/tfs/DefaultCollection/).
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("server URL %q: %w", s, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("server URL %q: scheme must be https (or http), e.g. https://dev.azure.com/ORG", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server URL %q: no host, e.g. https://dev.azure.com/ORG", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("server URL %q: credentials do not belong in the URL; use --token or an identity", u.Redacted())
	}
	u.RawQuery, u.Fragment = "", ""
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawPath = ""
	return u, nil
}

// BaseURL returns the normalised base URL (ending in "/").
func (c *Client) BaseURL() string { return c.base.String() }

// WithTokens returns a copy of c that authenticates with another source but
// shares transport, session id and location cache.
func (c *Client) WithTokens(ts TokenSource) *Client {
	cp := *c
	cp.tokens = ts
	return &cp
}

// Request describes one REST call.
type Request struct {
	Method      string
	Location    string            // location GUID; empty when Path is set
	Path        string            // path relative to the base URL, for fixed routes
	RouteValues map[string]string // filled into the location's route template
	Query       url.Values
	APIVersion  string // requested; negotiated against the location
	Body        any    // JSON-encoded unless it is []byte or io.Reader
	ContentType string // for raw bodies; default application/octet-stream
	Timeout     time.Duration
	// Retry: GET/PUT/PATCH/DELETE/OPTIONS/HEAD are retried on connection errors
	// and 5xx/429; a POST only when Retry is set, since it may not be idempotent.
	Retry   bool
	NoRetry bool // never retry (long polls handle their own errors)
}

// Response is what Send returns besides the decoded body.
type Response struct {
	StatusCode int
	Header     http.Header
}

// Send performs req and decodes a 2xx JSON body into out (when out is non-nil
// and there is a body). It resolves the route, negotiates the api-version,
// adds the VSS headers and auth, re-acquires the token once on 401, and retries
// retryable failures with jittered backoff.
func (c *Client) Send(ctx context.Context, req Request, out any) (*Response, error) {
	target, version, err := c.resolve(ctx, req)
	if err != nil {
		return nil, err
	}
	var body []byte
	var contentType string
	switch b := req.Body.(type) {
	case nil:
	case []byte:
		body, contentType = b, req.ContentType
	case io.Reader:
		if body, err = io.ReadAll(b); err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		contentType = req.ContentType
	default:
		if body, err = json.Marshal(b); err != nil {
			return nil, fmt.Errorf("encode request body for %s: %w", redactURL(target), err)
		}
		contentType = "application/json; charset=utf-8"
		if version != "" {
			contentType += "; api-version=" + version
		}
	}
	if req.Body != nil && contentType == "" {
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
		resp, err := c.do(ctx, req, target, version, body, contentType, refreshed)
		if err == nil {
			defer resp.Body.Close()
			return c.decode(req, target, resp, out)
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized && !refreshed {
			// One re-acquire and retry, never a loop.
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

func (c *Client) do(ctx context.Context, req Request, target, version string, body []byte, contentType string, refresh bool) (*http.Response, error) {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(rctx, req.Method, target, rd)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("build request %s %s: %w", req.Method, redactURL(target), err)
	}
	accept := "application/json"
	if version != "" {
		accept += "; api-version=" + version
	}
	hreq.Header.Set("Accept", accept)
	if contentType != "" {
		hreq.Header.Set("Content-Type", contentType)
	}
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

func (c *Client) decode(req Request, target string, resp *http.Response, out any) (*Response, error) {
	r := &Response{StatusCode: resp.StatusCode, Header: resp.Header}
	if out == nil || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusAccepted {
		io.Copy(io.Discard, resp.Body)
		return r, nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, &netError{op: req.Method + " " + redactURL(target), err: fmt.Errorf("read response: %w", err)}
	}
	data = trimBOM(data)
	if len(bytes.TrimSpace(data)) == 0 {
		return r, nil
	}
	if w, ok := out.(*[]byte); ok {
		*w = data
		return r, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return r, fmt.Errorf("%s %s: decode %d response: %w", req.Method, redactURL(target), resp.StatusCode, err)
	}
	return r, nil
}

// resolve turns a Request into an absolute URL and the api-version to send.
func (c *Client) resolve(ctx context.Context, req Request) (string, string, error) {
	var rel string
	version := req.APIVersion
	if req.Location != "" {
		locs, err := c.locs.get(ctx, c.base.String(), c.fetchLocations)
		if err != nil {
			return "", "", err
		}
		loc, ok := locs[strings.ToLower(req.Location)]
		if !ok {
			return "", "", fmt.Errorf("%w: %s at %s (is this an Azure DevOps organization URL?)", ErrLocationNotFound, req.Location, c.base.Redacted())
		}
		rel = expandRoute(loc, req.RouteValues)
		if version != "" {
			if version, err = negotiate(loc, version); err != nil {
				return "", "", err
			}
		}
	} else {
		rel = strings.TrimPrefix(req.Path, "/")
	}
	u, err := c.base.Parse(escapeRel(rel))
	if err != nil {
		return "", "", fmt.Errorf("build URL for %q: %w", rel, err)
	}
	if len(req.Query) > 0 {
		u.RawQuery = req.Query.Encode()
	}
	return u.String(), version, nil
}

// escapeRel keeps a relative path from being read as a scheme ("a:b/…").
func escapeRel(rel string) string {
	if i := strings.IndexByte(rel, ':'); i >= 0 && !strings.Contains(rel[:i], "/") {
		return "./" + rel
	}
	return rel
}

// fetchLocations reads OPTIONS {base}/_apis/.
func (c *Client) fetchLocations(ctx context.Context) ([]ResourceLocation, error) {
	var out struct {
		Count int                `json:"count"`
		Value []ResourceLocation `json:"value"`
	}
	if _, err := c.Send(ctx, Request{Method: http.MethodOptions, Path: "_apis/"}, &out); err != nil {
		return nil, fmt.Errorf("discover resource locations at %s: %w", c.base.Redacted(), err)
	}
	return out.Value, nil
}

// delay is the wait before retry number attempt (1-based).
func (c *Client) delay(attempt int, err error) time.Duration {
	var ra *retryAfter
	if errors.As(err, &ra) && ra.after > 0 {
		return min(ra.after, 5*time.Minute)
	}
	d := c.backoff << (attempt - 1)
	if d > c.maxBack || d <= 0 {
		d = c.maxBack
	}
	return Jitter(d, 0.25)
}

// Jitter returns d randomly spread by ±frac.
func Jitter(d time.Duration, frac float64) time.Duration {
	span := int64(float64(d) * frac * 2)
	if span <= 0 {
		return d
	}
	n, err := rand.Int(rand.Reader, big.NewInt(span))
	if err != nil {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(n.Int64())
}

// RandomBetween returns a random duration in [lo, hi], as the .NET agent's
// BackoffTimerHelper.GetRandomBackoff does.
func RandomBetween(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo)))
	if err != nil {
		return lo
	}
	return lo + time.Duration(n.Int64())
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// isRetryable: connection errors, timeouts of a single attempt, 5xx and 429.
func isRetryable(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.StatusCode {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// IsTransient reports whether err is a connection failure or a 5xx/429 that a
// caller may simply try again later.
func IsTransient(err error) bool { return isRetryable(err) }

// netError is a failure to get any HTTP answer.
type netError struct {
	op  string
	err error
}

func (e *netError) Error() string { return e.op + ": " + e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

type retryAfter struct {
	err   *Error
	after time.Duration
}

func (r *retryAfter) Error() string { return r.err.Error() }
func (r *retryAfter) Unwrap() error { return r.err }

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// redactURL drops the query string: it can carry session ids and tokens.
func redactURL(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i]
	}
	return s
}

// stripURL removes the request URL that net/http puts into *url.Error, which
// would repeat the query string; the op already names the URL.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		var op *net.OpError
		if errors.As(ue.Err, &op) {
			return op
		}
		return ue.Err
	}
	return err
}

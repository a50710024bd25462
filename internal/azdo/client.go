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
	"crypto/tls"
	"crypto/x509"
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

	"github.com/goagent-dev/goagent/internal/pause"
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
	sleep     func(context.Context, time.Duration) error // waits between retries
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
		sleep:     pause.Sleep,
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
// end in "/", keeping any path (https://tfs/tfs/DefaultCollection/). Its
// errors never repeat credentials embedded in s.
func ParseBaseURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	shown := redactUserinfo(s)
	const example = "e.g. https://dev.azure.com/ORG or https://server/tfs/COLLECTION"
	if s == "" {
		return nil, fmt.Errorf("server URL is empty: set it to the organization or collection URL, %s", example)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error repeats the whole URL
		}
		return nil, fmt.Errorf("server URL %q: %w; expected %s", shown, err, example)
	}
	if u.User != nil {
		return nil, fmt.Errorf("server URL %q: credentials do not belong in the URL; remove them and pass the token in AZP_TOKEN (or use an identity)", shown)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("server URL %q: the scheme must be https (or http), %s", shown, example)
	}
	if u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("server URL %q: no host, %s", shown, example)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawPath = ""
	return u, nil
}

// redactUserinfo hides whatever precedes the last "@" of the authority of a
// URL that may not even parse: a PAT is often pasted as the user name.
func redactUserinfo(s string) string {
	rest, prefix := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return s
	}
	return prefix + "***" + rest[at:]
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
	// Body is JSON-encoded unless it is []byte, an io.Reader (read into
	// memory once) or a ReaderAtBody (streamed, and replayed on a retry).
	Body        any
	ContentType string // for raw bodies; default application/octet-stream
	Timeout     time.Duration
	// Retry: GET/PUT/PATCH/DELETE/OPTIONS/HEAD are retried on connection errors
	// and 5xx/429; a POST only when Retry is set, since it may not be idempotent.
	Retry   bool
	NoRetry bool // never retry (long polls handle their own errors)
}

// ReaderAtBody is a raw request body of Size bytes read from R. It is read
// afresh for every attempt, so a retry replays it and memory does not grow
// with its size (log pages, attachments).
type ReaderAtBody struct {
	R    io.ReaderAt
	Size int64
}

// Response is what Send returns besides the decoded body.
type Response struct {
	StatusCode int
	Header     http.Header
}

// payload is a request body that every attempt can open again.
type payload struct {
	open        func() io.Reader // nil: no body
	size        int64
	contentType string
}

func (c *Client) payload(req Request, target string, version *apiVersion) (payload, error) {
	var p payload
	var data []byte
	switch b := req.Body.(type) {
	case nil:
		return p, nil
	case ReaderAtBody:
		if b.R == nil || b.Size < 0 {
			return p, fmt.Errorf("%s %s: invalid request body (reader %v, size %d)", req.Method, redactURL(target), b.R != nil, b.Size)
		}
		p.open = func() io.Reader { return io.NewSectionReader(b.R, 0, b.Size) }
		p.size, p.contentType = b.Size, req.ContentType
	case []byte:
		data, p.contentType = b, req.ContentType
	case io.Reader:
		var err error
		if data, err = io.ReadAll(b); err != nil {
			return p, fmt.Errorf("%s %s: read request body: %w", req.Method, redactURL(target), err)
		}
		p.contentType = req.ContentType
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			return p, fmt.Errorf("%s %s: encode request body: %w", req.Method, redactURL(target), err)
		}
		p.contentType = "application/json; charset=utf-8"
		if version != nil {
			p.contentType += "; api-version=" + version.String()
		}
	}
	if p.open == nil {
		p.open = func() io.Reader { return bytes.NewReader(data) }
		p.size = int64(len(data))
	}
	if p.contentType == "" {
		p.contentType = "application/octet-stream"
	}
	// The .NET client puts the api-version on every content type that lacks
	// one, raw log and attachment uploads included (VssHttpClientBase).
	if version != nil && !strings.Contains(p.contentType, "api-version") {
		p.contentType += "; api-version=" + version.String()
	}
	return p, nil
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
	p, err := c.payload(req, target, version)
	if err != nil {
		return nil, err
	}
	retryable := !req.NoRetry && (req.Retry || req.Method != http.MethodPost)
	attempts := 1
	if retryable {
		attempts += c.retries
	}
	refresh, reacquired := false, false
	for attempt := 1; ; {
		resp, err := c.do(ctx, req, target, version, p, refresh)
		refresh = false
		if err == nil {
			defer resp.Body.Close()
			return c.decode(req, target, resp, out)
		}
		if ctx.Err() != nil {
			return nil, err
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusUnauthorized && c.tokens != nil && !reacquired {
			// The token may have expired or been revoked since the source
			// cached it: re-acquire once and try again at once, never a loop.
			// The server refused the request, so even a POST is safe to repeat.
			reacquired, refresh = true, true
			continue
		}
		if !isRetryable(err) {
			return nil, err
		}
		if attempt >= attempts {
			if attempts > 1 {
				return nil, fmt.Errorf("%w (gave up after %d attempts)", err, attempts)
			}
			return nil, err
		}
		delay := c.delay(attempt, err)
		c.log.Debug("retrying request", "method", req.Method, "url", redactURL(target), "attempt", attempt+1, "delay", delay, "error", err)
		if serr := c.sleep(ctx, delay); serr != nil {
			return nil, fmt.Errorf("%w; stopped retrying: %w", err, serr)
		}
		attempt++
	}
}

func (c *Client) do(ctx context.Context, req Request, target string, version *apiVersion, p payload, refresh bool) (*http.Response, error) {
	op := req.Method + " " + redactURL(target)
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = c.timeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	var body io.Reader
	if p.open != nil {
		body = p.open()
	}
	hreq, err := http.NewRequestWithContext(rctx, req.Method, target, body)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("build request %s: %w", op, err)
	}
	if p.open != nil {
		hreq.ContentLength = p.size
		hreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(p.open()), nil }
		if p.size == 0 {
			hreq.Body = http.NoBody
		}
		hreq.Header.Set("Content-Type", p.contentType)
	}
	accept := "application/json"
	if version != nil {
		accept += "; " + version.acceptParams()
	}
	e2e := uuid.NewString()
	hreq.Header.Set("Accept", accept)
	hreq.Header.Set("User-Agent", c.userAgent)
	hreq.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	hreq.Header.Set("X-TFS-Session", c.session)
	hreq.Header.Set("X-VSS-E2EID", e2e)
	hreq.Header.Set("Accept-Language", "en-US")
	var secret string
	if c.tokens != nil {
		tok, err := c.tokens.Token(ctx, refresh)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%s: get credential: %w", op, err)
		}
		hreq.Header.Set("Authorization", tok.Header())
		secret = tok.Value
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		cancel()
		if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s: %w", timeout, context.DeadlineExceeded)
		} else {
			err = stripURL(err)
		}
		c.log.Debug("request failed", "method", req.Method, "url", redactURL(target), "e2eid", e2e, "error", err)
		if isCertError(err) {
			// Retrying cannot fix trust; say what will.
			return nil, fmt.Errorf("%s: %w\n  cause: the server's TLS certificate is not trusted.\n  fix: if a proxy or your organization uses its own certificate authority, point SSL_CERT_FILE at a PEM bundle holding it (it is added to the built-in roots)", op, err)
		}
		return nil, &netError{op: op, err: err}
	}
	c.log.Debug("request", "method", req.Method, "url", redactURL(target), "status", resp.StatusCode, "e2eid", e2e, "refreshedToken", refresh)
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	e := newError(req.Method, redactURL(target), resp.StatusCode, resp.Header, data)
	if secret != "" {
		// A proxy or a debugging endpoint may echo the request back.
		e.Message = strings.ReplaceAll(e.Message, secret, "[redacted]")
	}
	if resp.StatusCode == http.StatusUnauthorized && e.Message == "" {
		e.Message = "the credential was rejected"
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return nil, &retryAfter{err: e, after: d}
	}
	return nil, e
}

// parseRetryAfter reads delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func (c *Client) decode(req Request, target string, resp *http.Response, out any) (*Response, error) {
	r := &Response{StatusCode: resp.StatusCode, Header: resp.Header}
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusAccepted {
		io.Copy(io.Discard, resp.Body)
		return r, nil
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, &netError{op: req.Method + " " + redactURL(target), err: fmt.Errorf("read response: %w", err)}
	}
	data = trimBOM(data)
	if w, ok := out.(*[]byte); ok {
		*w = data
		return r, nil
	}
	// Checked even when the caller wants no body: a web page is never the
	// service's answer, whatever the status.
	if isHTML(resp.Header.Get("Content-Type"), data) {
		e := &Error{Method: req.Method, URL: redactURL(target), StatusCode: resp.StatusCode, Message: htmlMessage(data)}
		if resp.StatusCode == http.StatusNonAuthoritativeInfo {
			// Azure DevOps answers a rejected credential with its sign-in
			// page and 203 when redirects are not suppressed.
			e.Kind = ErrUnauthorized
			e.Message = "the server answered with its sign-in page: the credential was not accepted; check the token and that it is for this organization"
		}
		return r, e
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return r, fmt.Errorf("%s %s: decode %d response: %w", req.Method, redactURL(target), resp.StatusCode, err)
	}
	return r, nil
}

// resolve turns a Request into an absolute URL and the api-version to send
// (nil: none, as for connectionData and OPTIONS).
func (c *Client) resolve(ctx context.Context, req Request) (string, *apiVersion, error) {
	var rel string
	var version *apiVersion
	if req.Location != "" {
		locs, err := c.locs.get(ctx, c.base.String(), c.fetchLocations)
		if err != nil {
			return "", nil, err
		}
		loc, ok := locs[strings.ToLower(req.Location)]
		if !ok {
			return "", nil, fmt.Errorf("%w: %s %s is not among the %d locations the server at %s lists; check that the URL is the organization or collection URL (https://dev.azure.com/ORG, https://server/tfs/COLLECTION), not a project URL, and that the server is Azure DevOps",
				ErrLocationNotFound, req.Method, req.Location, len(locs), c.base.Redacted())
		}
		if rel, err = expandRoute(loc, req.RouteValues); err != nil {
			return "", nil, fmt.Errorf("%s %s: %w", req.Method, c.base.Redacted(), err)
		}
		if req.APIVersion != "" {
			v, err := negotiate(loc, req.APIVersion)
			if err != nil {
				return "", nil, err
			}
			version = &v
		}
	} else {
		rel = strings.TrimPrefix(req.Path, "/")
		if req.APIVersion != "" {
			v, err := parseAPIVersion(req.APIVersion)
			if err != nil {
				return "", nil, err
			}
			version = &v
		}
	}
	u, err := joinPath(c.base, rel)
	if err != nil {
		return "", nil, fmt.Errorf("build URL for %q: %w", rel, err)
	}
	if len(req.Query) > 0 {
		u.RawQuery = req.Query.Encode()
	}
	return u.String(), version, nil
}

// joinPath appends the escaped relative path rel to base's path. It does not
// resolve rel as a URL reference: that would read "a:b" as a scheme, and an
// odd character in a template could make the reference absolute.
func joinPath(base *url.URL, rel string) (*url.URL, error) {
	raw := base.EscapedPath() + escapeStray(rel)
	p, err := url.PathUnescape(raw)
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path, u.RawPath = p, raw
	return &u, nil
}

// escapeStray percent-encodes the bytes that may not appear in an escaped
// path, and a "%" that starts no escape, leaving valid escapes alone.
func escapeStray(s string) string {
	const hex = "0123456789ABCDEF"
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
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
	if len(out.Value) == 0 {
		return nil, fmt.Errorf("discover resource locations at %s: %w: the server listed none; check that the URL is the organization or collection URL (https://dev.azure.com/ORG)", c.base.Redacted(), ErrLocationNotFound)
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

// isCertError reports a TLS certificate verification failure.
func isCertError(err error) bool {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var he x509.HostnameError
	var cv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he) || errors.As(err, &cv)
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

package devserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Options configure an emulator. Zero values take the defaults in brackets.
type Options struct {
	Addr      string   // listen address [127.0.0.1:0]
	Org       string   // organization name, the first path segment [goagent]
	Pools     []string // Automation pools [Default]
	PlainHTTP bool     // serve http:// instead of https://
	Dir       string   // where ca.pem is written [a temp dir removed by Close]

	PollHold           time.Duration // how long GET messages is held [50s]
	LockDuration       time.Duration // lockedUntil = renewal + this [10m]
	FirstRenewWindow   time.Duration // an assigned job must be renewed within this [5m]
	AgentTokenLifetime time.Duration // agent OAuth access token lifetime [1h]
	JobTokenGrace      time.Duration // job tokens stay valid this long after the job ends [0]
	SessionIdle        time.Duration // a session without polls expires after this [5m]
	ClockSkew          time.Duration // tolerance for JWT time claims [1m]
	CancelGrace        time.Duration // after a cancel timeout, wait this before forcing [1m]

	// SessionKeyBits is the AES key size of message encryption: 256 (default)
	// or 128. .NET's Aes.Create() defaults to 256 bits, which is what a
	// service built on it generates unless told otherwise.
	SessionKeyBits int
	// NoEncryption creates sessions without an encryptionKey, so messages
	// travel as plain JSON (listener.md §4.5 case 1).
	NoEncryption bool

	TenantID     string // Entra tenant of the organization [random GUID]
	MaxExchanges int    // recorder capacity, oldest dropped first [100000]
	MaxBody      int64  // request body limit [64 MiB]

	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Org == "" {
		o.Org = "goagent"
	}
	if len(o.Pools) == 0 {
		o.Pools = []string{"Default"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.PollHold, 50*time.Second)
	def(&o.LockDuration, 10*time.Minute)
	def(&o.FirstRenewWindow, 5*time.Minute)
	def(&o.AgentTokenLifetime, time.Hour)
	def(&o.SessionIdle, 5*time.Minute)
	def(&o.ClockSkew, time.Minute)
	def(&o.CancelGrace, time.Minute)
	if o.JobTokenGrace < 0 {
		o.JobTokenGrace = 0
	}
	if o.SessionKeyBits != 128 {
		o.SessionKeyBits = 256
	}
	if o.TenantID == "" {
		o.TenantID = newGUID()
	}
	if o.MaxExchanges <= 0 {
		o.MaxExchanges = 100000
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// tokenPath is the agent OAuth token endpoint, outside the organization as
// the real vstoken service is on its own host.
const tokenPath = "/_vstoken/oauth2/token"

// Server is a running emulator.
type Server struct {
	opts   Options
	log    *slog.Logger
	org    string
	origin string // scheme://host:port
	orgURL string // origin/org, no trailing slash
	caFile string
	dir    string
	ownDir bool

	instanceID, deploymentID, projectID, buildServiceID string

	locs []*location
	// signer signs the tokens the emulator mints. ES256 rather than the
	// service's RS256: the tokens are only ever looked up, never verified,
	// and RSA key generation can take seconds on a loaded machine.
	signer *ecdsa.PrivateKey
	// entraKey is the emulator's own stand-in for Entra (RS256, as Entra
	// signs), generated on first use for the same reason.
	entraOnce sync.Once
	entraKey  *rsa.PrivateKey
	entraErr  error

	ln        net.Listener
	hs        *http.Server
	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	rec    *Recorder
	faults *Faults

	mu            sync.Mutex
	users         []*userState
	admin         *userState
	entraKeys     []entraKey
	tokens        map[string]*issuedToken
	pools         []*poolState
	agentsByID    map[int]*agentState
	sessions      map[string]*sessionState
	jobs          map[string]*jobState
	jobsByRequest map[int64]*jobState
	plans         map[string]*planState
	seenJTI       map[string]time.Time
	nextAgentID   int
	nextMessageID int64
	nextRequestID int64
	violations    []string
	bugs          []string
	subs          map[*subscription]struct{}

	repos  repoTable  // repositories served at ORG/PROJECT/_git/NAME (repos.go)
	builds buildTable // the Build area (build.go)
}

// Start listens and serves until Close (or ctx ends).
func Start(ctx context.Context, o Options) (*Server, error) {
	o.defaults()
	if strings.ContainsAny(o.Org, "/?#% ") || strings.HasPrefix(o.Org, "_") {
		return nil, fmt.Errorf("start emulator: organization name %q must be one URL path segment not starting with '_'", o.Org)
	}
	s := &Server{
		opts: o, log: o.Logger, org: o.Org,
		instanceID: newGUID(), deploymentID: newGUID(), projectID: newGUID(), buildServiceID: newGUID(),
		locs:          newLocations(),
		closing:       make(chan struct{}),
		tokens:        map[string]*issuedToken{},
		agentsByID:    map[int]*agentState{},
		sessions:      map[string]*sessionState{},
		jobs:          map[string]*jobState{},
		jobsByRequest: map[int64]*jobState{},
		plans:         map[string]*planState{},
		seenJTI:       map[string]time.Time{},
		subs:          map[*subscription]struct{}{},
		nextAgentID:   1,
		nextMessageID: 1,
		nextRequestID: 1,
	}
	s.rec = newRecorder(o.MaxExchanges)
	s.faults = &Faults{}
	var err error
	if s.signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("start emulator: generate token signing key: %w", err)
	}
	for i, name := range o.Pools {
		if strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("start emulator: pool %d has an empty name", i+1)
		}
		s.pools = append(s.pools, &poolState{id: i + 1, name: name, created: time.Now().UTC()})
	}
	s.admin = &userState{User: User{Name: "Emulator Admin", PAT: newPAT(), InOrg: true, PoolAdmin: true, TenantID: o.TenantID}, identityID: newGUID()}
	s.users = append(s.users, s.admin)

	if o.Dir == "" {
		if s.dir, err = os.MkdirTemp("", "goagent-devserver-"); err != nil {
			return nil, fmt.Errorf("start emulator: create state dir: %w", err)
		}
		s.ownDir = true
	} else {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("start emulator: create state dir %s: %w", o.Dir, err)
		}
		s.dir = o.Dir
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.Addr)
	if err != nil {
		s.removeDir()
		return nil, fmt.Errorf("start emulator: listen on %s: %w", o.Addr, err)
	}
	scheme := "http"
	if !o.PlainHTTP {
		cfg, caFile, err := newTLS(s.dir)
		if err != nil {
			ln.Close()
			s.removeDir()
			return nil, fmt.Errorf("start emulator: %w", err)
		}
		s.caFile = caFile
		ln = tls.NewListener(ln, cfg)
		scheme = "https"
	}
	s.ln = ln
	s.origin = scheme + "://" + ln.Addr().String()
	s.orgURL = s.origin + "/" + s.org
	s.hs = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("emulator stopped serving", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.reaper()
	}()
	if ctx.Done() != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-ctx.Done():
				go s.Close()
			case <-s.closing:
			}
		}()
	}
	s.log.Info("emulator listening", "url", s.orgURL)
	return s, nil
}

// URL is the organization URL, https://127.0.0.1:PORT/ORG (no trailing slash).
func (s *Server) URL() string { return s.orgURL }

// TokenURL is the agent OAuth token endpoint (the agents' authorizationUrl).
func (s *Server) TokenURL() string { return s.origin + tokenPath }

// CAFile is the PEM file of the emulator's CA ("" with PlainHTTP).
func (s *Server) CAFile() string { return s.caFile }

// PAT returns a PAT of an organization member who administers every pool.
func (s *Server) PAT() string { return s.admin.PAT }

// Org is the organization name.
func (s *Server) Org() string { return s.org }

// ProjectID is the project id every plan's scopeIdentifier carries.
func (s *Server) ProjectID() string { return s.projectID }

// Done is closed when the server begins shutting down.
func (s *Server) Done() <-chan struct{} { return s.closing }

// Close stops serving, ends held polls, and waits for every goroutine the
// server started. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.hs.Shutdown(ctx); err != nil {
			s.hs.Close()
			s.closeErr = fmt.Errorf("close emulator: %w", err)
		}
		s.wg.Wait()
		s.mu.Lock()
		for sub := range s.subs {
			delete(s.subs, sub)
			close(sub.ch)
		}
		s.mu.Unlock()
		s.removeDir()
	})
	return s.closeErr
}

func (s *Server) removeDir() {
	if s.ownDir && s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// Violations lists protocol violations the emulator saw from clients: wrong
// token kinds, malformed bodies, bad record transitions, and so on. Tests of a
// well-behaved agent assert it is empty.
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// Bugs lists panics the emulator recovered from: defects of the emulator.
func (s *Server) Bugs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bugs...)
}

// violation records a protocol violation; s.mu must be held.
func (s *Server) violation(job *jobState, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.violations = append(s.violations, msg)
	if job != nil {
		job.violations = append(job.violations, msg)
	}
	s.log.Warn("protocol violation", "detail", msg)
}

// request is one call being served.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	body   []byte
	loc    *location
	vals   map[string]string
	p      *principal
	ver    apiVersion
	now    time.Time
	ex     *Exchange
	ctx    context.Context
	record func() // records the exchange (idempotent)
}

// ServeHTTP serves one request: record it, recover from panics, apply faults,
// authenticate, check the api-version and dispatch.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ex := &Exchange{Time: start, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, RequestHeader: redactHeader(r.Header)}
	cw := &captureWriter{ResponseWriter: w, limit: maxRecordedBody}
	recorded := false
	record := func() {
		if recorded {
			return
		}
		recorded = true
		ex.Duration = time.Since(start)
		if ex.Status == 0 && !ex.Dropped {
			ex.Status = cw.status
		}
		ex.ResponseBody = cw.buf.Bytes()
		if ex.Resource == "token" {
			ex.ResponseBody = redactTokenResponse(ex.ResponseBody)
		}
		s.rec.add(ex)
	}
	// Answers are flushed after ServeHTTP returns, so recording here happens
	// before the client sees the answer; a dropped connection records first.
	defer record()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			stack := string(debug.Stack())
			s.mu.Lock()
			s.bugs = append(s.bugs, fmt.Sprintf("panic serving %s %s: %v\n%s", r.Method, r.URL.Path, v, stack))
			s.mu.Unlock()
			s.log.Error("emulator bug: panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
			if !cw.wrote {
				writeVSSError(cw, http.StatusInternalServerError, exService, "Internal error in the emulator (recorded as a bug).")
			}
		}
	}()

	body, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBody+1))
	if err != nil {
		ex.RequestBody = body
		writeVSSError(cw, http.StatusBadRequest, exArgument, "The request body could not be read.")
		return
	}
	ex.RequestBody = truncate(body, maxRecordedBody)
	req := &request{w: cw, r: r, body: body, now: time.Now(), ex: ex, ctx: r.Context(), record: record}
	s.serve(req)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append([]byte(nil), b[:n]...)
	}
	return b
}

func (s *Server) serve(q *request) {
	r := q.r
	path := r.URL.EscapedPath()
	if path == tokenPath {
		q.ex.Resource = "token"
		if s.applyFault(q) {
			return
		}
		s.handleToken(q)
		return
	}
	if path == "/_signin" {
		q.ex.Resource = "signin"
		q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
		q.w.WriteHeader(http.StatusOK)
		io.WriteString(q.w, "<html><head><title>Azure DevOps Services | Sign In</title></head><body>Sign in (emulator)</body></html>")
		return
	}
	segs, ok := splitPath(path)
	if !ok || len(segs) == 0 || !strings.EqualFold(segs[0], s.org) {
		q.ex.Resource = "unknown"
		http.NotFound(q.w, r)
		return
	}
	segs = segs[1:]
	if isGitRoute(segs) {
		s.serveGit(q, segs)
		return
	}
	switch {
	case len(segs) == 1 && strings.EqualFold(segs[0], "_apis") && r.Method == http.MethodOptions:
		q.ex.Resource = "options"
	case len(segs) == 2 && strings.EqualFold(segs[0], "_apis") && strings.EqualFold(segs[1], "connectionData"):
		q.ex.Resource = "connectionData"
	default:
		q.loc, q.vals = s.route(segs)
		if q.loc == nil {
			q.ex.Resource = "unknown"
		} else {
			q.ex.Resource = q.loc.ResourceName
		}
	}
	if s.applyFault(q) {
		return
	}
	if len(q.body) > int(s.opts.MaxBody) {
		writeVSSError(q.w, http.StatusRequestEntityTooLarge, exTooLarge, fmt.Sprintf("The request body is larger than %d bytes.", s.opts.MaxBody))
		return
	}

	s.mu.Lock()
	p, fail := s.authenticate(r, q.now)
	if fail != nil {
		s.noteAuthFailure(q, fail)
	}
	s.mu.Unlock()
	if fail != nil {
		s.writeAuthFailure(q.w, r, fail)
		return
	}
	q.p = p
	var aerr *apiError
	switch q.ex.Resource {
	case "options":
		s.handleOptions(q.w, r)
		return
	case "connectionData":
		aerr = s.handleConnectionData(q.w, r, p)
	case "unknown":
		aerr = notFound(exResourceNotFound, "The requested resource %s was not found; no API route of this organization matches it.", r.URL.Path)
	default:
		q.ver, aerr = checkVersion(r, q.loc)
		if aerr == nil {
			aerr = s.dispatch(q)
		}
	}
	if aerr != nil {
		if aerr.status == http.StatusBadRequest && (aerr.typeKey == exArgument || aerr.typeKey == exArgumentNull) {
			s.mu.Lock()
			s.violation(nil, "%s %s: 400 %s", r.Method, r.URL.Path, aerr.message)
			s.mu.Unlock()
		}
		writeVSSError(q.w, aerr.status, aerr.typeKey, aerr.message)
	}
}

// noteAuthFailure records authentication failures that mean a client bug.
// s.mu must be held.
func (s *Server) noteAuthFailure(q *request, f *authFailure) {
	q.ex.AuthFailure = f.reason
	if !strings.EqualFold(q.r.Header.Get("X-TFS-FedAuthRedirect"), "Suppress") && f.status == http.StatusUnauthorized {
		s.violation(nil, "%s %s without X-TFS-FedAuthRedirect: Suppress was redirected to sign-in (%s)", q.r.Method, q.r.URL.Path, f.reason)
	}
}

// dispatch sends a routed request to its handler.
func (s *Server) dispatch(q *request) *apiError {
	switch q.loc.ResourceName {
	case "pools":
		return s.handlePools(q)
	case "agents":
		return s.handleAgents(q)
	case "updates":
		return s.handleUpdates(q)
	case "sessions":
		return s.handleSessions(q)
	case "messages":
		return s.handleMessages(q)
	case "jobrequests":
		return s.handleJobRequests(q)
	case "events", "timelines", "records", "feed", "logs", "attachments":
		return s.handlePlan(q)
	case "builds", "tags":
		return s.handleBuild(q)
	}
	return notFound(exResourceNotFound, "No handler for %s.", q.loc.ResourceName)
}

func methodNotAllowed(r *http.Request) *apiError {
	return errf(http.StatusMethodNotAllowed, exService, "The requested resource does not support http method '%s'.", r.Method)
}

// decodeJSON decodes a JSON request body strictly enough to catch malformed
// input (the service's formatter fails such requests with 400).
func decodeJSON(q *request, out any) *apiError {
	b := bytes.TrimSpace(trimBOM(q.body))
	if len(b) == 0 {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. The request body is empty.")
	}
	if ct := q.r.Header.Get("Content-Type"); ct != "" && !strings.Contains(strings.ToLower(ct), "json") {
		return errf(http.StatusUnsupportedMediaType, exService, "The request entity's media type '%s' is not supported for this resource.", ct)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(out); err != nil {
		return badRequest("The request body is not valid JSON for this resource: %s", jsonErr(err))
	}
	if d.More() {
		return badRequest("The request body has trailing data after the JSON value.")
	}
	return nil
}

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q cannot hold a JSON %s", te.Field, te.Value)
	}
	return "cannot be decoded"
}

func trimBOM(b []byte) []byte {
	return bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF})
}

// writeJSON writes a 2xx JSON answer.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, version string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode response: %v", err))
	}
	ct := "application/json; charset=utf-8"
	if version != "" {
		ct += "; api-version=" + version
	}
	w.Header().Set("Content-Type", ct)
	if r != nil {
		if sid := r.Header.Get("X-TFS-Session"); sid != "" {
			w.Header().Set("X-TFS-Session", sid)
		}
		if e := r.Header.Get("X-VSS-E2EID"); e != "" {
			w.Header().Set("X-VSS-E2EID", e)
		}
	}
	w.WriteHeader(status)
	w.Write(b)
}

// reply writes v with the request's negotiated version.
func (q *request) reply(status int, v any) {
	writeJSON(q.w, q.r, status, q.ver.String(), v)
}

func (q *request) noContent() {
	q.w.WriteHeader(http.StatusNoContent)
}

// collectionBody is the {"count","value"} wrapper of every list.
type collectionBody[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

func collection[T any](v []T) collectionBody[T] {
	if v == nil {
		v = []T{}
	}
	return collectionBody[T]{Count: len(v), Value: v}
}

// Package gitserver serves bare git repositories over git's smart HTTP
// protocol, for tests and for the local Azure DevOps emulator: the real
// `git http-backend` runs behind net/http/cgi, so clients (the git CLI and
// go-git) talk to exactly what a git host speaks. The server can demand the
// Authorization header a test dictates (bearer and/or basic, as Azure Repos
// accepts them), records every request, and lets a test hold a request to
// exercise cancellation. Helpers in repo.go build repositories with commits,
// branches, tags and submodules using the git CLI.
package gitserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Credential is one Authorization header value the server accepts.
type Credential struct {
	Scheme string // "Bearer" or "Basic"; compared case-insensitively
	Value  string // what follows the scheme, compared exactly
}

// Bearer accepts "Authorization: Bearer <token>".
func Bearer(token string) Credential { return Credential{Scheme: "Bearer", Value: token} }

// Basic accepts "Authorization: Basic base64(user:password)".
func Basic(user, password string) Credential {
	return Credential{Scheme: "Basic", Value: basicValue(user, password)}
}

// String is the header value, e.g. "Bearer abc".
func (c Credential) String() string { return c.Scheme + " " + c.Value }

func (c Credential) matches(header string) bool {
	scheme, value, ok := strings.Cut(strings.TrimSpace(header), " ")
	return ok && strings.EqualFold(scheme, c.Scheme) && strings.TrimSpace(value) == c.Value
}

// Request is what the server saw of one request.
type Request struct {
	Method        string
	Path          string // URL path, e.g. /app.git/info/refs
	Query         string // raw query, e.g. service=git-upload-pack
	Authorization string // the raw header (tests compare it with the expected credential)
	UserAgent     string
	GitProtocol   string // the Git-Protocol header ("version=2" when the client asked for v2)
	Status        int    // status the server answered with
}

// Options configure a Handler.
type Options struct {
	// Root is the directory holding the bare repositories; a request for
	// /a/b.git/info/refs serves Root/a/b.git.
	Root string
	// Git is the git binary; default: "git" on PATH.
	Git string
	// Credentials are the accepted Authorization values; none means anonymous
	// access is allowed. SetCredentials changes them later.
	Credentials []Credential
	// DenySHA1InWant stops the server from advertising
	// allow-reachable-sha1-in-want / allow-tip-sha1-in-want, i.e. from
	// honouring fetches of a commit by id over protocol v0 (go-git). By
	// default they are allowed, as the agent's fetch-by-commit needs.
	DenySHA1InWant bool
	// Logger receives diagnostics (http-backend's stderr); default slog.Default.
	Logger *slog.Logger
}

// Handler is the smart-HTTP handler. It is safe for concurrent use.
type Handler struct {
	root   string
	cgi    *cgi.Handler
	logger *slog.Logger

	mu         sync.Mutex
	creds      []Credential
	reqs       []Request
	before     func(*http.Request)
	failN      int
	failStatus int
}

// NewHandler checks that git http-backend is usable and returns the handler.
func NewHandler(opts Options) (*Handler, error) {
	if opts.Root == "" {
		return nil, errors.New("gitserver: Options.Root is required")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("gitserver: resolve root %s: %w", opts.Root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("gitserver: root %s is not a directory", root)
	}
	gitBin := opts.Git
	if gitBin == "" {
		gitBin = "git"
	}
	gitPath, err := exec.LookPath(gitBin)
	if err != nil {
		return nil, fmt.Errorf("gitserver: find git: %w", err)
	}
	backend, args, err := httpBackend(gitPath)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	allow := "true"
	if opts.DenySHA1InWant {
		allow = "false"
	}
	env := []string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		// Isolate the backend from the host's configuration.
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"HOME=" + root,
		"XDG_CONFIG_HOME=" + root,
		"GIT_CONFIG_COUNT=3",
		"GIT_CONFIG_KEY_0=uploadpack.allowReachableSHA1InWant",
		"GIT_CONFIG_VALUE_0=" + allow,
		"GIT_CONFIG_KEY_1=uploadpack.allowTipSHA1InWant",
		"GIT_CONFIG_VALUE_1=" + allow,
		// Partial clone (fetchFilter), as Azure Repos and GitHub allow it.
		"GIT_CONFIG_KEY_2=uploadpack.allowFilter",
		"GIT_CONFIG_VALUE_2=true",
	}
	h := &Handler{
		root:   root,
		logger: logger,
		creds:  append([]Credential(nil), opts.Credentials...),
	}
	h.cgi = &cgi.Handler{
		Path:       backend,
		Args:       args,
		Env:        env,
		InheritEnv: []string{"PATH"},
		Stderr:     logWriter{logger},
	}
	return h, nil
}

// httpBackend finds git-http-backend under `git --exec-path`, or falls back
// to running it as `git http-backend`.
func httpBackend(gitPath string) (string, []string, error) {
	out, err := exec.Command(gitPath, "--exec-path").Output()
	if err != nil {
		return "", nil, fmt.Errorf("gitserver: git --exec-path: %w", err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p, nil, nil
	}
	return gitPath, []string{"http-backend"}, nil
}

// Root is the directory the handler serves.
func (h *Handler) Root() string { return h.root }

// SetCredentials replaces the accepted credentials; none allows anonymous access.
func (h *Handler) SetCredentials(creds ...Credential) {
	h.mu.Lock()
	h.creds = append([]Credential(nil), creds...)
	h.mu.Unlock()
}

// SetBefore installs a function called for every request before it is
// served (after it is recorded); a test can block in it to hold a fetch
// mid-flight. nil removes it.
func (h *Handler) SetBefore(f func(*http.Request)) {
	h.mu.Lock()
	h.before = f
	h.mu.Unlock()
}

// FailNext answers the next n requests with status instead of serving
// them (after recording them, before authentication): a transient server
// fault for exercising retries.
func (h *Handler) FailNext(n, status int) {
	h.mu.Lock()
	h.failN, h.failStatus = n, status
	h.mu.Unlock()
}

// Requests returns a copy of the requests seen so far.
func (h *Handler) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.reqs...)
}

// ResetRequests forgets the recorded requests.
func (h *Handler) ResetRequests() {
	h.mu.Lock()
	h.reqs = nil
	h.mu.Unlock()
}

// ServeHTTP authenticates the request and hands it to git http-backend.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	creds := h.creds
	before := h.before
	fail := 0
	if h.failN > 0 {
		h.failN--
		fail = h.failStatus
	}
	idx := len(h.reqs)
	h.reqs = append(h.reqs, Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		Query:         r.URL.RawQuery,
		Authorization: r.Header.Get("Authorization"),
		UserAgent:     r.UserAgent(),
		GitProtocol:   r.Header.Get("Git-Protocol"),
	})
	h.mu.Unlock()

	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		h.mu.Lock()
		if idx < len(h.reqs) {
			h.reqs[idx].Status = rec.status()
		}
		h.mu.Unlock()
	}()

	if before != nil {
		before(r)
		if r.Context().Err() != nil {
			return
		}
	}
	if fail != 0 {
		http.Error(rec, "injected failure", fail)
		return
	}
	if !authorized(creds, r.Header.Get("Authorization")) {
		rec.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
		http.Error(rec, "authentication required", http.StatusUnauthorized)
		return
	}
	// Only fetches are served: this server never accepts pushes over HTTP.
	if strings.Contains(r.URL.RawQuery, "git-receive-pack") || strings.HasSuffix(r.URL.Path, "/git-receive-pack") {
		http.Error(rec, "push is not supported", http.StatusForbidden)
		return
	}
	h.cgi.ServeHTTP(rec, r)
}

func authorized(creds []Credential, header string) bool {
	if len(creds) == 0 {
		return true
	}
	for _, c := range creds {
		if c.matches(header) {
			return true
		}
	}
	return false
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	w.l.Debug("git http-backend", "stderr", strings.TrimSpace(string(b)))
	return len(b), nil
}

// Server is a Handler listening on 127.0.0.1.
type Server struct {
	*Handler
	// URL is the base URL, e.g. http://127.0.0.1:41234 (no trailing slash).
	URL string

	srv *http.Server
	ln  net.Listener
}

// Start serves opts.Root on a free loopback port.
func Start(opts Options) (*Server, error) {
	h, err := NewHandler(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("gitserver: listen on loopback: %w", err)
	}
	s := &Server{
		Handler: h,
		URL:     "http://" + ln.Addr().String(),
		srv:     &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		ln:      ln,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.logger.Warn("gitserver stopped", "err", err)
		}
	}()
	return s, nil
}

// RepoURL is the clone URL of the repository at name (relative to Root).
func (s *Server) RepoURL(name string) string {
	return s.URL + "/" + strings.TrimPrefix(filepath.ToSlash(name), "/")
}

// Close stops the server and drops open connections.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}

package webui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/goagent-dev/goagent/internal/devserver"
)

//go:embed static
var static embed.FS

// DefaultAddr is where Serve listens when given no address: loopback only,
// a free port.
const DefaultAddr = "127.0.0.1:0"

// Options tune a UI. Zero values take the defaults in brackets.
type Options struct {
	Logger *slog.Logger
	// QueueLimit is how many timeline and run updates may wait for one
	// connection; past it the connection is told to resync [256].
	QueueLimit int
	// EventBuffer is the buffer of the emulator subscription [16384]. The
	// emulator drops events rather than wait; the UI then re-reads its state.
	EventBuffer int
	// MaxLines is the most console lines in one message [500].
	MaxLines int
	// WriteTimeout closes a connection whose writes stall this long [30s].
	WriteTimeout time.Duration
	// PingInterval is how often idle connections are pinged; one that does
	// not answer within two intervals is closed [20s].
	PingInterval time.Duration
	// MaxFrame is the largest client frame accepted; a longer one closes the
	// connection [16 KiB].
	MaxFrame int64
	// AllowedHosts are host names accepted in the Host header besides IP
	// addresses and localhost, e.g. the machine's name when the UI listens
	// on all interfaces.
	AllowedHosts []string
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.QueueLimit, 256)
	def(&o.EventBuffer, 16384)
	def(&o.MaxLines, 500)
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 20 * time.Second
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 16 << 10
	}
}

// UI is the live web view of one emulator.
type UI struct {
	opts     Options
	log      *slog.Logger
	hub      *hub
	upgrader websocket.Upgrader
	handler  http.Handler

	ctx       context.Context // ends with Close: stops the hub and every connection
	cancel    context.CancelFunc
	hubDone   <-chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // servers and connections
	mu        sync.Mutex
	closed    bool // guards wg.Add against Close's Wait
	servers   []*http.Server
}

// New follows srv's events from now on, after loading what srv already
// has. Call it before queueing jobs to see them from the start (a later call
// still shows everything; see recover). Close releases it.
func New(srv *devserver.Server, opts Options) (*UI, error) {
	if srv == nil {
		return nil, errors.New("web UI: no emulator to show")
	}
	opts.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	u := &UI{opts: opts, log: opts.Logger, hub: newHub(srv, opts), ctx: ctx, cancel: cancel}
	u.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   4 << 10,
		WriteBufferSize:  16 << 10,
		CheckOrigin:      originAllowed,
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("web UI: embedded assets: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, assets, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /ws", u.serveWS)
	mux.HandleFunc("GET /api/jobs/{job}/logs/{record}", u.serveLog)
	u.handler = u.guard(mux)
	u.hubDone = u.hub.start(ctx)
	return u, nil
}

// Handler serves the page, its assets, the WebSocket (/ws) and raw logs
// (/api/jobs/{job}/logs/{record}).
func (u *UI) Handler() http.Handler { return u.handler }

// Serve listens on addr (DefaultAddr when empty) and serves the UI until
// ctx ends or Close is called. It returns the page's URL at once.
func (u *UI) Serve(ctx context.Context, addr string) (string, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("web UI: listen on %s: %w (pick another address with --ui-addr)", addr, err)
	}
	return u.ServeListener(ctx, ln), nil
}

// ServeListener serves the UI on ln until ctx ends or Close is called and
// returns the page's URL.
func (u *UI) ServeListener(ctx context.Context, ln net.Listener) string {
	hs := &http.Server{
		Handler:           u.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(u.log.Handler(), slog.LevelDebug),
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		ln.Close()
		return pageURL(ln.Addr())
	}
	u.servers = append(u.servers, hs)
	u.wg.Add(2)
	u.mu.Unlock()
	go func() {
		defer u.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			u.log.Warn("web UI: server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	go func() {
		defer u.wg.Done()
		select {
		case <-ctx.Done():
		case <-u.ctx.Done():
		}
		hs.Close()
	}()
	return pageURL(ln.Addr())
}

// pageURL is the address a browser on this machine can open: a wildcard
// bind is reached through loopback.
func pageURL(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Close stops following the emulator, closes every connection and server,
// and waits for them.
func (u *UI) Close() error {
	u.closeOnce.Do(func() {
		u.cancel()
		u.mu.Lock()
		u.closed = true
		servers := u.servers
		u.mu.Unlock()
		for _, hs := range servers {
			hs.Close()
		}
		<-u.hubDone
		u.wg.Wait()
	})
	return nil
}

// guard rejects requests whose Host is a name this UI does not answer to:
// a DNS-rebinding page on another site would otherwise be same-origin with
// the UI and could read it.
func (u *UI) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, u.opts.AllowedHosts) {
			http.Error(w, fmt.Sprintf("web UI: host %q is not allowed: open the page by IP address or localhost (names are refused to keep DNS-rebinding sites out)", clip(r.Host)), http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

func hostAllowed(hostport string, allowed []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(host, strings.TrimSuffix(a, ".")) {
			return true
		}
	}
	return false
}

// originAllowed accepts WebSocket upgrades without an Origin (not a
// browser), from the page's own origin, and from loopback origins.
func originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o, err := url.Parse(origin)
	if err != nil || o.Host == "" || (o.Scheme != "http" && o.Scheme != "https") {
		return false
	}
	if strings.EqualFold(o.Host, r.Host) {
		return true
	}
	h := strings.ToLower(o.Hostname())
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (u *UI) serveLog(w http.ResponseWriter, r *http.Request) {
	jobID, recID := strings.ToLower(r.PathValue("job")), strings.ToLower(r.PathValue("record"))
	u.hub.mu.Lock()
	j := u.hub.jobs[jobID]
	known := j != nil && j.records[recID] != nil
	u.hub.mu.Unlock()
	if !known {
		http.Error(w, "web UI: no such job or record", http.StatusNotFound)
		return
	}
	lines := j.h.LogLines(recID)
	if lines == nil {
		http.Error(w, "web UI: the agent has not uploaded this record's log yet (it does when the step ends)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

func (u *UI) serveWS(w http.ResponseWriter, r *http.Request) {
	if !originAllowed(r) {
		u.log.Debug("web UI: WebSocket from a foreign origin refused", "origin", clip(r.Header.Get("Origin")))
		http.Error(w, "web UI: WebSocket connections are accepted from this page's origin or loopback only", http.StatusForbidden)
		return
	}
	conn, err := u.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		conn.Close()
		return
	}
	u.wg.Add(1)
	u.mu.Unlock()
	go func() {
		defer u.wg.Done()
		u.session(conn)
	}()
}

// session runs one connection: a reader applying the client's frames and
// this goroutine writing what the hub hands it.
func (u *UI) session(conn *websocket.Conn) {
	defer conn.Close()
	s := u.hub.attach()
	defer u.hub.detach(s)
	ctx, cancel := context.WithCancel(u.ctx)
	defer cancel()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer cancel()
		u.read(conn, s)
	}()
	err := u.write(ctx, conn, s)
	if err != nil {
		u.log.Debug("web UI: connection closed", "remote", conn.RemoteAddr().String(), "error", err)
	}
	if u.ctx.Err() != nil {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server closing"), time.Now().Add(time.Second))
	}
	conn.Close()
	<-readDone
}

func (u *UI) read(conn *websocket.Conn, s *subscriber) {
	conn.SetReadLimit(u.opts.MaxFrame)
	deadline := func() { conn.SetReadDeadline(time.Now().Add(2 * u.opts.PingInterval)) }
	deadline()
	conn.SetPongHandler(func(string) error { deadline(); return nil })
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		deadline()
		if kind != websocket.TextMessage {
			u.hub.fail(s, errors.New("binary frames are not part of the protocol: send JSON text frames"))
			continue
		}
		w, err := decodeFrame(data)
		if err != nil {
			u.hub.fail(s, err)
			continue
		}
		u.hub.watch(s, w)
	}
}

func (u *UI) write(ctx context.Context, conn *websocket.Conn, s *subscriber) error {
	ping := time.NewTicker(u.opts.PingInterval)
	defer ping.Stop()
	send := func(b []byte) error {
		conn.SetWriteDeadline(time.Now().Add(u.opts.WriteTimeout))
		return conn.WriteMessage(websocket.TextMessage, b)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(u.opts.WriteTimeout)); err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		case <-s.notify:
		}
		for {
			b := u.hub.take(s)
			for _, m := range b.msgs {
				if err := send(m); err != nil {
					return err
				}
			}
			if b.lines != nil {
				if err := send(encode(b.lines)); err != nil {
					return err
				}
			}
			if !b.more || ctx.Err() != nil {
				break
			}
		}
	}
}

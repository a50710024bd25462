package devserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxRecordedBody bounds each recorded body; log pages can be large.
const maxRecordedBody = 16 << 20

// Exchange is one recorded request and its answer. Authorization headers are
// reduced to "<scheme> sha256:<first 8 hex>" and the access_token of token
// responses to its hash, so what the recorder holds is not a credential; every
// other byte is kept as it went over the wire, for tests to grep for leaks.
type Exchange struct {
	Time          time.Time
	Duration      time.Duration
	Method        string
	Path          string
	Query         string
	Resource      string // "messages", "records", "token", "connectionData", …
	Status        int    // 0 when the connection was dropped
	Dropped       bool
	Fault         string // the injected fault, if any
	AuthFailure   string // why authentication failed, if it did
	RequestHeader http.Header
	RequestBody   []byte
	ResponseBody  []byte
}

// Recorder keeps the most recent exchanges.
type Recorder struct {
	mu    sync.Mutex
	max   int
	items []*Exchange
	total int
}

func newRecorder(max int) *Recorder { return &Recorder{max: max} }

func (r *Recorder) add(e *Exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	if len(r.items) >= r.max {
		copy(r.items, r.items[1:])
		r.items = r.items[:len(r.items)-1]
	}
	r.items = append(r.items, e)
}

// Exchanges returns copies of the recorded exchanges, oldest first.
func (r *Recorder) Exchanges() []Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Exchange, len(r.items))
	for i, e := range r.items {
		out[i] = *e
		out[i].RequestHeader = e.RequestHeader.Clone()
	}
	return out
}

// Total counts every exchange ever recorded, including those dropped for space.
func (r *Recorder) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Reset forgets the recorded exchanges.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = nil
}

// Recorder returns the exchange recorder.
func (s *Server) Recorder() *Recorder { return s.rec }

// redactHeader copies h with credentials reduced to a short hash.
func redactHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, name := range []string{"Authorization", "Proxy-Authorization"} {
		vals := out.Values(name)
		if len(vals) == 0 {
			continue
		}
		red := make([]string, len(vals))
		for i, v := range vals {
			scheme, cred, ok := strings.Cut(v, " ")
			if !ok {
				scheme, cred = "", v
			}
			red[i] = strings.TrimSpace(scheme + " " + shortHash(cred))
		}
		out[http.CanonicalHeaderKey(name)] = red
	}
	return out
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// redactTokenResponse replaces access_token in a token endpoint answer.
func redactTokenResponse(b []byte) []byte {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	if t, ok := m["access_token"].(string); ok {
		m["access_token"] = shortHash(t)
		if out, err := json.Marshal(m); err == nil {
			return out
		}
	}
	return b
}

// captureWriter keeps a copy of what a handler writes.
type captureWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	buf    bytes.Buffer
	limit  int
}

func (c *captureWriter) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote = true
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if room := c.limit - c.buf.Len(); room > 0 {
		if len(b) > room {
			c.buf.Write(b[:room])
		} else {
			c.buf.Write(b)
		}
	}
	return c.ResponseWriter.Write(b)
}

func (c *captureWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(c.ResponseWriter).Hijack()
}

func (c *captureWriter) Flush() {
	http.NewResponseController(c.ResponseWriter).Flush()
}

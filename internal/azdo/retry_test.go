package azdo

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/pause"
)

func TestRetries(t *testing.T) {
	get := getThing("x")
	post := Request{Method: http.MethodPost, Location: thingsLoc, RouteValues: map[string]string{"path": "x"}, Body: map[string]int{"a": 1}}
	with := func(r Request, f func(*Request)) Request { f(&r); return r }
	const drop = -1 // hang up without an answer
	for _, tc := range []struct {
		name     string
		req      Request
		answers  []int // per attempt; the last repeats
		attempts int
		ok       bool
	}{
		{"GET 503 then ok", get, []int{503, 503, 200}, 3, true},
		{"GET 500 exhausts", get, []int{500}, 4, false},
		{"GET 502", get, []int{502, 200}, 2, true},
		{"GET 504", get, []int{504, 200}, 2, true},
		{"GET 429", get, []int{429, 200}, 2, true},
		{"GET dropped connection", get, []int{drop, drop, 200}, 3, true},
		{"GET 400 not retried", get, []int{400, 200}, 1, false},
		{"GET 403 not retried", get, []int{403, 200}, 1, false},
		{"GET 404 not retried", get, []int{404, 200}, 1, false},
		{"GET 409 not retried", get, []int{409, 200}, 1, false},
		{"GET 501 not retried", get, []int{501, 200}, 1, false},
		{"PUT 503", with(get, func(r *Request) { r.Method = http.MethodPut; r.Body = 1 }), []int{503, 200}, 2, true},
		{"PATCH 503", with(get, func(r *Request) { r.Method = http.MethodPatch; r.Body = 1 }), []int{503, 200}, 2, true},
		{"DELETE 503", with(get, func(r *Request) { r.Method = http.MethodDelete }), []int{503, 200}, 2, true},
		{"POST 503 not retried", post, []int{503, 200}, 1, false},
		{"POST dropped not retried", post, []int{drop, 200}, 1, false},
		{"POST with Retry", with(post, func(r *Request) { r.Retry = true }), []int{503, drop, 200}, 3, true},
		{"GET NoRetry", with(get, func(r *Request) { r.NoRetry = true }), []int{503, 200}, 1, false},
		{"NoRetry beats Retry", with(post, func(r *Request) { r.Retry, r.NoRetry = true, true }), []int{503, 200}, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, "/org")
			f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
				switch st := tc.answers[min(s.Attempt, len(tc.answers))-1]; st {
				case drop:
					hangUp(w)
				default:
					writeJSON(w, st, map[string]any{"message": "answer " + strconv.Itoa(st)})
				}
			})
			// Without keep-alive, net/http cannot replay a GET on its own after
			// a dropped connection, so the fake counts the client's attempts.
			tr := f.srv.Client().Transport.(*http.Transport).Clone()
			tr.DisableKeepAlives = true
			c, sl := newClient(t, f, nil, Options{Retries: 3, HTTPClient: &http.Client{Transport: tr}})
			_, err := c.Send(testContext(t), tc.req, nil)
			if tc.ok != (err == nil) {
				t.Fatalf("error %v", err)
			}
			reqs := f.requests()
			if len(reqs) != tc.attempts {
				t.Fatalf("%d attempts, want %d", len(reqs), tc.attempts)
			}
			if n := len(sl.all()); n != tc.attempts-1 {
				t.Errorf("%d waits between %d attempts", n, tc.attempts)
			}
			for i, r := range reqs[1:] {
				if string(r.Body) != string(reqs[0].Body) {
					t.Errorf("attempt %d sent body %q, the first %q", i+2, r.Body, reqs[0].Body)
				}
			}
			if !tc.ok && tc.attempts == 4 && !strings.Contains(err.Error(), "gave up after 4 attempts") {
				t.Errorf("error %q does not say it gave up", err)
			}
		})
	}
}

// Delays double from Backoff with ±25 % jitter up to MaxBackoff.
func TestBackoffDelays(t *testing.T) {
	f := newFake(t, "/org")
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) { w.WriteHeader(http.StatusBadGateway) })
	c, sl := newClient(t, f, nil, Options{Retries: 5, Backoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	if _, err := c.Send(testContext(t), getThing("x"), nil); err == nil {
		t.Fatal("no error")
	}
	base := []time.Duration{100, 200, 300, 300, 300}
	got := sl.all()
	if len(got) != len(base) {
		t.Fatalf("%d delays, want %d", len(got), len(base))
	}
	for i, d := range got {
		b := base[i] * time.Millisecond
		if d < b*3/4 || d > b*5/4 {
			t.Errorf("delay %d = %s, want %s ±25%%", i+1, d, b)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{"0", 0},
		{"86400", 5 * time.Minute}, // capped
		{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 5 * time.Minute},
	} {
		f := newFake(t, "/org")
		f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
			if s.Attempt == 1 {
				w.Header().Set("Retry-After", tc.header)
				vssError(w, http.StatusTooManyRequests, "RequestBlockedException", "slow down")
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{})
		})
		c, sl := newClient(t, f, nil, Options{Backoff: time.Hour, MaxBackoff: time.Hour})
		if _, err := c.Send(testContext(t), getThing("x"), nil); err != nil {
			t.Fatal(err)
		}
		got := sl.all()
		if tc.want == 0 {
			// "0" means no wait from the server: the normal backoff applies.
			if len(got) != 1 || got[0] < 45*time.Minute {
				t.Errorf("Retry-After %q: delays %v, want the backoff", tc.header, got)
			}
			continue
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("Retry-After %q: delays %v, want [%s]", tc.header, got, tc.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 8, 11, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"120", 2 * time.Minute, true},
		{" 3 ", 3 * time.Second, true},
		{"Mon, 11 Aug 2025 09:00:30 GMT", 30 * time.Second, true},
		{"Mon, 11 Aug 2025 08:00:00 GMT", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
		{"99999999999999999999", 0, false},
	} {
		d, ok := parseRetryAfter(tc.v, now)
		if d != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.v, d, ok, tc.want, tc.ok)
		}
	}
}

func TestJitterAndRandomBetween(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 500 {
		d := Jitter(time.Second, 0.25)
		if d < 750*time.Millisecond || d > 1250*time.Millisecond {
			t.Fatalf("Jitter(1s, 0.25) = %s", d)
		}
		seen[d] = true
		r := RandomBetween(5*time.Second, 15*time.Second)
		if r < 5*time.Second || r > 15*time.Second {
			t.Fatalf("RandomBetween(5s, 15s) = %s", r)
		}
	}
	if len(seen) < 100 {
		t.Fatalf("Jitter gave only %d distinct values in 500 draws", len(seen))
	}
	if d := Jitter(0, 0.25); d != 0 {
		t.Fatalf("Jitter(0) = %s", d)
	}
	if d := RandomBetween(time.Second, time.Second); d != time.Second {
		t.Fatalf("RandomBetween(1s, 1s) = %s", d)
	}
}

// Cancelling the context ends a retry wait at once, and an attempt in flight.
func TestCancelStopsRetrying(t *testing.T) {
	t.Run("during the wait", func(t *testing.T) {
		f := newFake(t, "/org")
		ctx, cancel := context.WithCancel(testContext(t))
		f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) { w.WriteHeader(http.StatusServiceUnavailable) })
		c, _ := newClient(t, f, nil, Options{Backoff: time.Hour, MaxBackoff: time.Hour})
		// Really wait an hour, so that only the cancellation can end it.
		c.sleep = func(ctx context.Context, d time.Duration) error {
			cancel()
			return pause.Sleep(ctx, d)
		}
		err := sendWithin(t, c, ctx, getThing("x"))
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "503") {
			t.Fatalf("error %v", err)
		}
		if n := len(f.requests()); n != 1 {
			t.Fatalf("%d attempts", n)
		}
	})
	t.Run("during the request", func(t *testing.T) {
		f := newFake(t, "/org")
		ctx, cancel := context.WithCancel(testContext(t))
		f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
			cancel()
			<-r.Context().Done()
		})
		c, sl := newClient(t, f, nil, Options{})
		err := sendWithin(t, c, ctx, getThing("x"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
		if n := len(f.requests()); n != 1 || len(sl.all()) != 0 {
			t.Fatalf("%d attempts, %d waits", n, len(sl.all()))
		}
	})
}

// sendWithin fails the test when Send does not return in 20 s.
func sendWithin(t *testing.T, c *Client, ctx context.Context, req Request) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, req, nil)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Send did not return after its context was cancelled")
		return nil
	}
}

func TestPerRequestTimeout(t *testing.T) {
	f := newFake(t, "/org")
	// Never answer: wait for the client to give up, then drop the connection
	// (returning would send a 200 that a slow client could still read).
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) { <-r.Context().Done(); hangUp(w) })
	c, sl := newClient(t, f, nil, Options{Timeout: 100 * time.Millisecond, Retries: 2})
	_, err := c.Send(testContext(t), getThing("x"), nil)
	if !errors.Is(err, context.DeadlineExceeded) || !IsTransient(err) {
		t.Fatalf("error %v", err)
	}
	if !strings.Contains(err.Error(), "no answer within 100ms") || !strings.Contains(err.Error(), "/org/_apis/test/things/x") {
		t.Errorf("error %q does not say what timed out", err)
	}
	if n := len(f.requests()); n != 3 || len(sl.all()) != 2 {
		t.Errorf("%d attempts, %d waits; a timed-out GET is retried", n, len(sl.all()))
	}
}

// A long poll gets its own, longer timeout: the server holds it well past the
// client's default and it still succeeds.
func TestLongPollTimeout(t *testing.T) {
	f := newFake(t, "/org")
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	f.setHandler(func(w http.ResponseWriter, r *http.Request, s seen) {
		entered <- struct{}{}
		select {
		case <-release:
			w.WriteHeader(http.StatusAccepted)
		case <-r.Context().Done():
		}
	})
	c, _ := newClient(t, f, nil, Options{Timeout: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		msg, err := c.GetMessage(testContext(t), 1, "s", -1, 20*time.Second)
		if err == nil && msg != nil {
			err = errors.New("a message from an empty queue")
		}
		done <- err
	}()
	<-entered
	time.Sleep(300 * time.Millisecond) // six default timeouts
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("long poll: %v", err)
	}
}

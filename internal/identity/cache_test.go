package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
)

// counter issues numbered tokens living for lifetime on clk.
type counter struct {
	clk      *clock
	lifetime time.Duration
	n        atomic.Int32
	forced   atomic.Int32
	fail     atomic.Bool
	gate     chan struct{} // when set, fetches wait for it
}

func (c *counter) fetch(ctx context.Context, force bool) (fetched, error) {
	if c.gate != nil {
		<-c.gate
	}
	n := c.n.Add(1)
	if force {
		c.forced.Add(1)
	}
	if c.fail.Load() {
		return fetched{}, errors.New("endpoint down")
	}
	return fetched{tok: azdo.Token{Scheme: "Bearer", Value: fmt.Sprintf("tok-%d", n), ExpiresOn: c.clk.Now().Add(c.lifetime)}}, nil
}

func TestCacheRefreshesBeforeExpiry(t *testing.T) {
	tests := []struct {
		lifetime, stillCached, due time.Duration
	}{
		{time.Hour, 54 * time.Minute, 55*time.Minute + time.Second},                    // margin 5 min
		{10 * time.Minute, 8*time.Minute + 59*time.Second, 9 * time.Minute},            // margin 10 %
		{20 * time.Second, 17 * time.Second, 18 * time.Second},                         // margin 10 %
		{24 * time.Hour, 23*time.Hour + 54*time.Minute, 23*time.Hour + 55*time.Minute}, // margin 5 min
	}
	for _, tt := range tests {
		t.Run(tt.lifetime.String(), func(t *testing.T) {
			clk := newClock()
			c := &counter{clk: clk, lifetime: tt.lifetime}
			src := newCachedSource("test", c.fetch, slog.New(slog.DiscardHandler), clk.Now)
			get := func() string {
				tok, err := src.Token(context.Background(), false)
				if err != nil {
					t.Fatal(err)
				}
				return tok.Value
			}
			start := clk.Now()
			if get() != "tok-1" {
				t.Fatal("first")
			}
			clk.Advance(tt.stillCached - clk.Now().Sub(start))
			if v := get(); v != "tok-1" {
				t.Fatalf("at %v got %s, want the cached token", tt.stillCached, v)
			}
			clk.Advance(tt.due - clk.Now().Sub(start))
			if v := get(); v != "tok-2" {
				t.Fatalf("at %v got %s, want a new token", tt.due, v)
			}
		})
	}
}

func TestCacheRefreshOnFromIssuer(t *testing.T) {
	clk := newClock()
	n := 0
	src := newCachedSource("test", func(context.Context, bool) (fetched, error) {
		n++
		now := clk.Now()
		return fetched{tok: azdo.Token{Value: fmt.Sprint(n), ExpiresOn: now.Add(24 * time.Hour)}, refreshOn: now.Add(12 * time.Hour)}, nil
	}, slog.New(slog.DiscardHandler), clk.Now)
	src.Token(context.Background(), false)
	clk.Advance(12*time.Hour - time.Second)
	src.Token(context.Background(), false)
	clk.Advance(2 * time.Second)
	src.Token(context.Background(), false)
	if n != 2 {
		t.Fatalf("%d fetches, want 2 (refreshOn honoured)", n)
	}
}

func TestCacheForcedRefresh(t *testing.T) {
	clk := newClock()
	c := &counter{clk: clk, lifetime: time.Hour}
	src := newCachedSource("test", c.fetch, slog.New(slog.DiscardHandler), clk.Now)
	src.Token(context.Background(), false)
	tok, _ := src.Token(context.Background(), true)
	if tok.Value != "tok-2" || c.forced.Load() != 1 {
		t.Fatalf("forced refresh gave %s (forced %d)", tok.Value, c.forced.Load())
	}
	if tok, _ := src.Token(context.Background(), false); tok.Value != "tok-2" {
		t.Fatal("the forced token should be cached")
	}
}

func TestCacheKeepsValidTokenWhileRefreshFails(t *testing.T) {
	clk := newClock()
	c := &counter{clk: clk, lifetime: time.Hour}
	log, buf := captureLogger()
	src := newCachedSource("test", c.fetch, log, clk.Now)
	src.Token(context.Background(), false)
	c.fail.Store(true)
	clk.Advance(56 * time.Minute)
	tok, err := src.Token(context.Background(), false)
	if err != nil || tok.Value != "tok-1" {
		t.Fatalf("got %v %v, want the still valid token", tok.Value, err)
	}
	if !strings.Contains(buf.String(), "token refresh failed") {
		t.Fatalf("not logged: %s", buf.String())
	}
	// No new attempt right away…
	src.Token(context.Background(), false)
	if c.n.Load() != 2 {
		t.Fatalf("%d fetches, want 2", c.n.Load())
	}
	// …but after the pause, and a forced refresh fails loudly.
	clk.Advance(retryAfterFailure)
	src.Token(context.Background(), false)
	if c.n.Load() != 3 {
		t.Fatalf("%d fetches, want 3", c.n.Load())
	}
	if _, err := src.Token(context.Background(), true); err == nil {
		t.Fatal("forced refresh must not fall back to the rejected token")
	}
	// Once expired, the failure surfaces.
	clk.Advance(5 * time.Minute)
	if _, err := src.Token(context.Background(), false); err == nil {
		t.Fatal("expired token served")
	}
}

func TestCacheSameTokenBackDoesNotHammer(t *testing.T) {
	clk := newClock()
	calls := 0
	exp := clk.Now().Add(time.Hour)
	src := newCachedSource("test", func(context.Context, bool) (fetched, error) {
		calls++
		return fetched{tok: azdo.Token{Value: "same", ExpiresOn: exp}, obtained: exp.Add(-time.Hour)}, nil
	}, slog.New(slog.DiscardHandler), clk.Now)
	src.Token(context.Background(), false)
	clk.Advance(58 * time.Minute) // due; the issuer's own cache keeps answering the same token
	for range 5 {
		src.Token(context.Background(), false)
	}
	if calls != 2 {
		t.Fatalf("%d fetches, want 2", calls)
	}
	clk.Advance(31 * time.Second)
	src.Token(context.Background(), false)
	if calls != 3 {
		t.Fatalf("%d fetches, want 3", calls)
	}
}

func TestCacheCollapsesConcurrentFetches(t *testing.T) {
	for _, refresh := range []bool{false, true} {
		t.Run(fmt.Sprint("refresh=", refresh), func(t *testing.T) {
			clk := newClock()
			c := &counter{clk: clk, lifetime: time.Hour, gate: make(chan struct{})}
			src := newCachedSource("test", c.fetch, slog.New(slog.DiscardHandler), clk.Now)
			const callers = 16
			var started, done sync.WaitGroup
			started.Add(callers)
			done.Add(callers)
			values := make(chan string, callers)
			for range callers {
				go func() {
					defer done.Done()
					started.Done()
					tok, err := src.Token(context.Background(), refresh)
					if err != nil {
						t.Error(err)
					}
					values <- tok.Value
				}()
			}
			started.Wait()
			// Give the callers a moment to reach the in-flight fetch; the
			// assertion below holds however long this takes.
			time.Sleep(50 * time.Millisecond)
			close(c.gate)
			done.Wait()
			close(values)
			for v := range values {
				if v != "tok-1" {
					t.Fatalf("caller got %s", v)
				}
			}
			if n := c.n.Load(); n != 1 {
				t.Fatalf("%d fetches for %d concurrent callers, want 1", n, callers)
			}
		})
	}
}

func TestCacheCallerCancelDoesNotFailOthers(t *testing.T) {
	clk := newClock()
	c := &counter{clk: clk, lifetime: time.Hour, gate: make(chan struct{})}
	src := newCachedSource("test", c.fetch, slog.New(slog.DiscardHandler), clk.Now)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := src.Token(ctx, false); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	close(c.gate)
	tok, err := src.Token(context.Background(), false)
	if err != nil || tok.Value != "tok-1" {
		t.Fatalf("other caller: %v %v", tok.Value, err)
	}
}

package identity

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/goagent-dev/goagent/internal/azdo"
)

// Refresh timing. maxMargin equals MSAL's own expiry margin (a cached token
// with less than five minutes left counts as expired), so when goagent decides
// a token is due, azidentity agrees and fetches a new one instead of handing
// back its cached copy.
const (
	maxMargin = 5 * time.Minute
	// fetchTimeout bounds one acquisition (IMDS retries alone can take ~1 min).
	fetchTimeout = 2 * time.Minute
	// retryAfterFailure spaces proactive refresh attempts while the cached
	// token is still usable and the endpoint is failing.
	retryAfterFailure = 15 * time.Second
)

// fetched is one acquired token with the time it should be replaced.
type fetched struct {
	tok       azdo.Token
	obtained  time.Time
	refreshOn time.Time // from the issuer (MSAL's RefreshOn), zero when none
}

// refreshAt is when a token should be replaced: a margin before expiry of
// min(5 min, 10 % of its lifetime), or earlier if the issuer said so.
func (f fetched) refreshAt() time.Time {
	if f.tok.ExpiresOn.IsZero() {
		return time.Time{}
	}
	margin := f.tok.ExpiresOn.Sub(f.obtained) / 10
	if margin > maxMargin {
		margin = maxMargin
	}
	if margin < 0 {
		margin = 0
	}
	at := f.tok.ExpiresOn.Add(-margin)
	if !f.refreshOn.IsZero() && f.refreshOn.Before(at) {
		at = f.refreshOn
	}
	return at
}

// fetchFunc acquires a token. force is true after a 401: the implementation
// must not answer from any cache.
type fetchFunc func(ctx context.Context, force bool) (fetched, error)

// cachedSource is the azdo.TokenSource shared by every credential that issues
// expiring tokens: it caches, refreshes before expiry, collapses concurrent
// acquisitions into one, and keeps serving a still-valid token while a
// proactive refresh fails.
type cachedSource struct {
	kind  string
	fetch fetchFunc
	log   *slog.Logger
	now   func() time.Time

	group singleflight.Group

	mu      sync.Mutex
	cur     fetched
	have    bool
	nextTry time.Time // no proactive refresh before this
}

func newCachedSource(kind string, fetch fetchFunc, log *slog.Logger, now func() time.Time) *cachedSource {
	if now == nil {
		now = time.Now
	}
	return &cachedSource{kind: kind, fetch: fetch, log: log, now: now}
}

// Token implements azdo.TokenSource.
func (c *cachedSource) Token(ctx context.Context, refresh bool) (azdo.Token, error) {
	if !refresh {
		if tok, ok := c.cached(); ok {
			return tok, nil
		}
	}
	key := "refresh"
	if refresh {
		key = "force"
	}
	// The acquisition runs detached from the first caller's context so that
	// a caller giving up does not fail the others waiting on the same fetch.
	ch := c.group.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		return c.acquire(fctx, refresh)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return azdo.Token{}, r.Err
		}
		return r.Val.(azdo.Token), nil
	case <-ctx.Done():
		return azdo.Token{}, fmt.Errorf("get %s token: %w", c.kind, ctx.Err())
	}
}

// cached returns the current token when it is not yet due for refresh, or
// when it is due but a recent attempt failed (or returned the same token) and
// it is still valid.
func (c *cachedSource) cached() (azdo.Token, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.have {
		return azdo.Token{}, false
	}
	now := c.now()
	at := c.cur.refreshAt()
	if at.IsZero() || now.Before(at) {
		return c.cur.tok, true
	}
	if now.Before(c.nextTry) && now.Before(c.cur.tok.ExpiresOn) {
		return c.cur.tok, true
	}
	return azdo.Token{}, false
}

func (c *cachedSource) acquire(ctx context.Context, force bool) (azdo.Token, error) {
	f, err := c.fetch(ctx, force)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if err != nil {
		if !force && c.have && now.Before(c.cur.tok.ExpiresOn) {
			// The token in hand still works; a failing endpoint should not
			// stop the agent before it has to.
			c.nextTry = now.Add(retryAfterFailure)
			c.log.Warn("token refresh failed; using the current token until it expires",
				"credential", c.kind, "expires", c.cur.tok.ExpiresOn.UTC().Format(time.RFC3339), "error", err)
			return c.cur.tok, nil
		}
		return azdo.Token{}, err
	}
	if f.obtained.IsZero() {
		f.obtained = now
	}
	same := c.have && f.tok == c.cur.tok
	c.cur, c.have = f, true
	c.nextTry = time.Time{}
	if at := f.refreshAt(); !at.IsZero() && !now.Before(at) {
		// The issuer handed back a token that is already due (an endpoint
		// with its own cache does that): use it, but do not ask again on
		// every request.
		wait := f.tok.ExpiresOn.Sub(now) / 2
		if wait > 30*time.Second {
			wait = 30 * time.Second
		}
		c.nextTry = now.Add(wait)
	}
	c.log.Debug("acquired token", "credential", c.kind, "forced", force, "unchanged", same,
		"expires", expiryAttr(f.tok.ExpiresOn))
	return f.tok, nil
}

func expiryAttr(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format(time.RFC3339)
}

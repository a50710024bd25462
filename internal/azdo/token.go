package azdo

import (
	"context"
	"time"
)

// Token is the credential for one Authorization header: "Scheme Value".
type Token struct {
	Scheme    string // "Basic" or "Bearer"
	Value     string
	ExpiresOn time.Time // zero when unknown (PATs)
}

// Header is the Authorization header value. It must never be logged.
func (t Token) Header() string { return t.Scheme + " " + t.Value }

// TokenSource supplies the credential for each request, so a refreshed token
// is always the one used. refresh is true after the service answered 401 to
// the previous token: the source must then acquire a new one rather than
// return its cache.
type TokenSource interface {
	Token(ctx context.Context, refresh bool) (Token, error)
}

// StaticToken is a TokenSource that never changes (tests, a job's own token).
type StaticToken Token

// Token returns the static token.
func (s StaticToken) Token(context.Context, bool) (Token, error) { return Token(s), nil }

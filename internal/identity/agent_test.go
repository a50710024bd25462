package identity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

type agentFixture struct {
	srv  *identitytest.AgentOAuth
	data CredentialData
}

// registered registers Key(0) with a fake token endpoint, as registration does.
func registered(t *testing.T) agentFixture {
	t.Helper()
	srv := identitytest.NewAgentOAuth(t)
	pk := PublicKey(identitytest.Key(0))
	id := srv.Register(*pk.Exponent, *pk.Modulus)
	return agentFixture{srv: srv, data: CredentialData{ClientID: id, AuthorizationURL: srv.AuthorizationURL()}}
}

func (f agentFixture) credential(t *testing.T, key int, data CredentialData, opts AgentCredentialOptions) *AgentCredential {
	t.Helper()
	if opts.HTTPClient == nil {
		opts.HTTPClient = f.srv.Client()
	}
	opts.retryDelay = time.Millisecond
	c, err := NewAgentCredential(identitytest.Key(key), data, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgentCredentialWireForm(t *testing.T) {
	f := registered(t)
	c := f.credential(t, 0, f.data, AgentCredentialOptions{UserAgent: "VstsAgentCore-linux-x64/4.0.0 goagent"})
	tok, err := c.Token(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := f.srv.Valid(tok.Value); !ok || id != f.data.ClientID || tok.Scheme != "Bearer" {
		t.Fatalf("token not accepted (%s, %v)", id, ok)
	}
	req := f.srv.LastRequest()
	if req.ContentType != "application/x-www-form-urlencoded" || req.Accept != "application/json" || req.UserAgent != "VstsAgentCore-linux-x64/4.0.0 goagent" {
		t.Fatalf("headers %+v", req)
	}
	want := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
	}
	if !reflect.DeepEqual(req.Form, want) {
		t.Fatalf("form %v (besides client_assertion), want %v — no client_id", req.Form, want)
	}
	if !reflect.DeepEqual(req.Header, map[string]any{"typ": "JWT", "alg": "RS256"}) {
		t.Fatalf("JWT header %v", req.Header)
	}
	var names []string
	for k := range req.Claims {
		names = append(names, k)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{"aud", "exp", "iss", "jti", "nbf", "sub"}) {
		t.Fatalf("claims %v", names)
	}
	if req.Claims["aud"] != f.data.AuthorizationURL || req.Claims["iss"] != f.data.ClientID || req.Claims["sub"] != f.data.ClientID {
		t.Fatalf("claims %v", req.Claims)
	}
	if !strings.Contains(c.Describe(), f.data.ClientID) {
		t.Fatal(c.Describe())
	}
}

func TestAgentCredentialRejections(t *testing.T) {
	tests := []struct {
		name     string
		key      int
		data     func(f agentFixture) CredentialData
		skew     time.Duration
		is       error
		contains string
	}{
		{"wrong key", 1, func(f agentFixture) CredentialData { return f.data }, 0, ErrAgentCredentialRejected, "signature is invalid"},
		{"wrong audience", 0, func(f agentFixture) CredentialData {
			d := f.data
			d.OAuthEndpointURL, d.AuthorizationURL = d.AuthorizationURL, "https://vstoken.example/other"
			return d
		}, 0, ErrAgentCredentialRejected, "audience"},
		{"deleted agent", 0, func(f agentFixture) CredentialData {
			f.srv.Unregister(f.data.ClientID)
			return f.data
		}, 0, ErrAgentCredentialRejected, "register the agent again"},
		{"expired assertion (server clock ahead)", 0, func(f agentFixture) CredentialData { return f.data }, 10 * time.Minute, ErrClockSkew, "Current server time is"},
		{"assertion not yet valid (server clock behind)", 0, func(f agentFixture) CredentialData { return f.data }, -2 * time.Minute, ErrClockSkew, "not valid until"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := registered(t)
			f.srv.SetClockSkew(tt.skew)
			c := f.credential(t, tt.key, tt.data(f), AgentCredentialOptions{})
			_, err := c.Token(context.Background(), false)
			var oe *OAuthError
			if !errors.As(err, &oe) || !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.contains) {
				t.Fatalf("err = %v", err)
			}
			other := ErrClockSkew
			if tt.is == ErrClockSkew {
				other = ErrAgentCredentialRejected
			}
			if errors.Is(err, other) {
				t.Fatalf("err also matches %v", other)
			}
			if f.srv.Calls() != 1 {
				t.Fatalf("%d calls: rejections must not be retried", f.srv.Calls())
			}
		})
	}
}

func TestAgentCredentialBackdatedNotBefore(t *testing.T) {
	// A server clock 20 s behind ours still accepts the assertion.
	f := registered(t)
	f.srv.SetClockSkew(-20 * time.Second)
	if _, err := f.credential(t, 0, f.data, AgentCredentialOptions{}).Token(context.Background(), false); err != nil {
		t.Fatal(err)
	}
}

func TestAgentCredentialRetriesServerErrors(t *testing.T) {
	f := registered(t)
	f.srv.FailNext(2, http.StatusServiceUnavailable)
	c := f.credential(t, 0, f.data, AgentCredentialOptions{})
	if _, err := c.Token(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if f.srv.Calls() != 3 {
		t.Fatalf("%d calls, want 3", f.srv.Calls())
	}
	f.srv.FailNext(5, http.StatusInternalServerError)
	if _, err := c.Token(context.Background(), true); err == nil || !strings.Contains(err.Error(), "500 server_error") {
		t.Fatalf("err = %v", err)
	}
	if f.srv.Calls() != 6 {
		t.Fatalf("%d calls, want 6 (3 attempts)", f.srv.Calls())
	}
}

func TestAgentCredentialRefresh(t *testing.T) {
	f := registered(t)
	clk := newClock()
	c := f.credential(t, 0, f.data, AgentCredentialOptions{now: clk.Now})
	get := func(refresh bool) string {
		t.Helper()
		tok, err := c.Token(context.Background(), refresh)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Value
	}
	// DefaultLifetime 4 min → refresh 24 s before expiry.
	a := get(false)
	clk.Advance(3 * time.Minute)
	f.srv.SetClockSkew(3 * time.Minute) // the server's clock moves with ours
	if get(false) != a || f.srv.Calls() != 1 {
		t.Fatal("refreshed too early")
	}
	clk.Advance(40 * time.Second)
	f.srv.SetClockSkew(3*time.Minute + 40*time.Second)
	b := get(false)
	if b == a || f.srv.Calls() != 2 {
		t.Fatal("not refreshed before expiry")
	}
	if get(true) == b || f.srv.Calls() != 3 {
		t.Fatal("forced refresh did not fetch a new token")
	}
}

func TestAgentCredentialConcurrentCallersShareOneRequest(t *testing.T) {
	f := registered(t)
	c := f.credential(t, 0, f.data, AgentCredentialOptions{})
	var wg sync.WaitGroup
	tokens := make([]string, 12)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := c.Token(context.Background(), false)
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok.Value
		}()
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Fatal("callers got different tokens")
		}
	}
	if f.srv.Calls() != 1 {
		t.Fatalf("%d token requests for concurrent callers, want 1", f.srv.Calls())
	}
}

func TestAgentCredentialExpiresInFallbacks(t *testing.T) {
	now := time.Unix(1750000000, 0)
	for raw, want := range map[string]time.Time{
		`3600`:   now.Add(time.Hour),
		`"3600"`: now.Add(time.Hour),
		`0`:      {},
		`"x"`:    {},
		``:       {},
	} {
		if got := expiresIn([]byte(raw), now); !got.Equal(want) {
			t.Errorf("expires_in %s: %v, want %v", raw, got, want)
		}
	}
}

func TestNewAgentCredentialValidates(t *testing.T) {
	key := identitytest.Key(0)
	for name, d := range map[string]CredentialData{
		"no client id": {AuthorizationURL: "https://a/token"},
		"no url":       {ClientID: "c"},
		"bad url":      {ClientID: "c", AuthorizationURL: "ftp://a/token"},
	} {
		if _, err := NewAgentCredential(key, d, AgentCredentialOptions{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewAgentCredential(nil, CredentialData{ClientID: "c", AuthorizationURL: "https://a"}, AgentCredentialOptions{}); err == nil {
		t.Error("accepted a nil key")
	}
}

func TestOAuthErrorString(t *testing.T) {
	e := &OAuthError{Endpoint: "https://x/token", StatusCode: 400, Code: "invalid_client", Description: "The bearer token expired on 2025-01-01T00:00:00Z. Current server time is 2025-01-01T00:10:00Z."}
	if !errors.Is(e, ErrClockSkew) || errors.Is(e, ErrAgentCredentialRejected) || !strings.Contains(e.Error(), "synchronise it") {
		t.Fatal(e.Error())
	}
	wrapped := fmt.Errorf("create session: %w", e)
	if !errors.Is(wrapped, ErrClockSkew) {
		t.Fatal("wrapping lost the kind")
	}
}

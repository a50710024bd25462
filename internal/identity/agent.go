package identity

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
)

// ErrClockSkew matches (errors.Is) a token endpoint's refusal because the
// local clock and the server's disagree: the description then contains
// "Current server time is" (VssOAuthTokenProvider; the official listener
// retries such failures for up to 30 minutes).
var ErrClockSkew = errors.New("the local clock is skewed against the server's")

// ErrAgentCredentialRejected matches a token endpoint's refusal of the
// agent's key or client id (invalid_client, unauthorized_client,
// invalid_grant): the registration is gone or the key does not match it.
var ErrAgentCredentialRejected = errors.New("the service rejected the agent's credential")

// OAuthError is a token endpoint's error answer.
type OAuthError struct {
	Endpoint    string // the token URL without query
	StatusCode  int
	Code        string // "error"
	Description string // "error_description"
}

func (e *OAuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "get agent access token from %s: %d", e.Endpoint, e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	switch {
	case e.Is(ErrClockSkew):
		b.WriteString(" — the local clock is wrong: synchronise it (NTP) and start again")
	case e.Is(ErrAgentCredentialRejected):
		b.WriteString(" — the agent's registration no longer accepts this key: it was probably deleted from the pool; register the agent again")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrClockSkew) and errors.Is(err,
// ErrAgentCredentialRejected) work.
func (e *OAuthError) Is(target error) bool {
	switch target {
	case ErrClockSkew:
		return strings.Contains(e.Description, "Current server time is")
	case ErrAgentCredentialRejected:
		switch e.Code {
		case "invalid_client", "unauthorized_client", "invalid_grant":
			return !strings.Contains(e.Description, "Current server time is")
		}
		return e.Code == "" && e.StatusCode == http.StatusUnauthorized
	}
	return false
}

// AgentCredentialOptions configure NewAgentCredential.
type AgentCredentialOptions struct {
	HTTPClient *http.Client // nil: http.DefaultClient
	UserAgent  string       // the agent's User-Agent, as on every other call
	Logger     *slog.Logger

	now        func() time.Time // tests
	retryDelay time.Duration    // tests; 0 means the default
}

// AgentCredential is the agent's own credential after registration: a JWT
// client assertion signed with the agent's key, exchanged at the token
// endpoint for an access token (listener.md §2.3). It is an azdo.TokenSource.
type AgentCredential struct {
	key    *rsa.PrivateKey
	data   CredentialData
	client *http.Client
	ua     string
	now    func() time.Time
	delay  time.Duration
	cache  *cachedSource
}

// NewAgentCredential builds the credential from the key and the registration's
// clientId and authorizationUrl.
func NewAgentCredential(key *rsa.PrivateKey, data CredentialData, opts AgentCredentialOptions) (*AgentCredential, error) {
	if key == nil || key.N.BitLen() < keyBits {
		return nil, fmt.Errorf("agent credential: an RSA key of at least %d bits is required", keyBits)
	}
	if data.ClientID == "" || data.AuthorizationURL == "" {
		return nil, errors.New("agent credential: clientId and authorizationUrl are required (register the agent)")
	}
	u, err := url.Parse(data.TokenEndpoint())
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("agent credential: token endpoint %q is not an http(s) URL", data.TokenEndpoint())
	}
	a := &AgentCredential{key: key, data: data, client: opts.HTTPClient, ua: opts.UserAgent, now: opts.now, delay: opts.retryDelay}
	if a.client == nil {
		a.client = http.DefaultClient
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.delay == 0 {
		a.delay = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a.cache = newCachedSource(KindAgentOAuth, a.fetch, log, a.now)
	return a, nil
}

// Token implements azdo.TokenSource.
func (a *AgentCredential) Token(ctx context.Context, refresh bool) (azdo.Token, error) {
	return a.cache.Token(ctx, refresh)
}

// Source wraps the credential as a Source of kind KindAgentOAuth.
func (a *AgentCredential) Source() *Source {
	return &Source{TokenSource: a, Kind: KindAgentOAuth, describe: a.Describe}
}

// Describe names the credential for logs and `goagent check`.
func (a *AgentCredential) Describe() string {
	return fmt.Sprintf("agent credential (client id %s, token endpoint %s)", a.data.ClientID, redactURL(a.data.TokenEndpoint()))
}

// tokenAttempts: the official token client retries 500 and 429 answers.
const tokenAttempts = 3

func (a *AgentCredential) fetch(ctx context.Context, _ bool) (fetched, error) {
	// Every request carries a fresh assertion (new jti, new lifetime), so a
	// forced refresh needs nothing special.
	var last error
	for attempt := 0; attempt < tokenAttempts; attempt++ {
		if attempt > 0 {
			wait := a.delay << (attempt - 1)
			var ra *retryAfterError
			if errors.As(last, &ra) && ra.after > wait {
				wait = min(ra.after, 30*time.Second)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fetched{}, last
			case <-t.C:
			}
		}
		f, retry, err := a.request(ctx)
		if err == nil {
			return f, nil
		}
		last = err
		if !retry {
			break
		}
	}
	return fetched{}, last
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// tokenResponse is VssOAuthTokenResponse.
type tokenResponse struct {
	AccessToken string          `json:"access_token"`
	TokenType   string          `json:"token_type"`
	ExpiresIn   json.RawMessage `json:"expires_in"`
	Error       string          `json:"error"`
	Description string          `json:"error_description"`
}

func (a *AgentCredential) request(ctx context.Context) (fetched, bool, error) {
	now := a.now()
	assertion, err := signAssertion(a.key, a.data.ClientID, a.data.AuthorizationURL, now)
	if err != nil {
		return fetched{}, false, err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	endpoint := a.data.TokenEndpoint()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fetched{}, false, fmt.Errorf("get agent access token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if a.ua != "" {
		req.Header.Set("User-Agent", a.ua)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL; keep the cause only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fetched{}, ctx.Err() == nil, fmt.Errorf("get agent access token from %s: %w", redactURL(endpoint), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fetched{}, true, fmt.Errorf("get agent access token from %s: read answer: %w", redactURL(endpoint), err)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(body, &tr)
	if resp.StatusCode == http.StatusOK && jsonErr == nil && tr.AccessToken != "" {
		exp := expiresIn(tr.ExpiresIn, now)
		if exp.IsZero() {
			if p, ok := decodeJWT(tr.AccessToken); ok {
				exp = p.time("exp")
			}
		}
		return fetched{tok: azdo.Token{Scheme: "Bearer", Value: tr.AccessToken, ExpiresOn: exp}, obtained: now}, false, nil
	}
	oe := &OAuthError{Endpoint: redactURL(endpoint), StatusCode: resp.StatusCode, Code: tr.Error, Description: summarize(redact(tr.Description, []string{assertion}))}
	if jsonErr != nil && oe.Description == "" {
		oe.Description = summarize(redact(string(body), []string{assertion}))
	}
	if resp.StatusCode == http.StatusOK && oe.Code == "" && oe.Description == "" {
		oe.Description = "the answer held no access_token"
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			return fetched{}, true, &retryAfterError{err: oe, after: time.Duration(s) * time.Second}
		}
		return fetched{}, true, oe
	}
	return fetched{}, false, oe
}

// expiresIn reads "expires_in" as a number or a numeric string.
func expiresIn(raw json.RawMessage, now time.Time) time.Time {
	if len(raw) == 0 {
		return time.Time{}
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return time.Time{}
		}
		n = json.Number(s)
	}
	secs, err := n.Float64()
	if err != nil || secs <= 0 {
		return time.Time{}
	}
	return now.Add(time.Duration(secs * float64(time.Second)))
}

// redactURL drops query and fragment, which may carry ids worth hiding.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

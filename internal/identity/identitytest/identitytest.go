// Package identitytest provides local fakes of the identity endpoints goagent
// talks to: a Microsoft Entra authority (client secret, certificate and
// workload identity), an Azure Container Apps / App Service managed identity
// endpoint, the Azure instance metadata service (IMDS) reached through a
// transport override, and the agent's own OAuth token endpoint. All listen on
// 127.0.0.1 over TLS (IMDS never listens: its requests are answered inside the
// RoundTripper), so tests never reach Azure.
//
// httptest servers share one certificate, so the Client of any fake reaches
// every other fake too.
package identitytest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// AzureDevOpsResource is the resource (audience) of Azure DevOps tokens.
const AzureDevOpsResource = "499b84ac-1321-427f-aa17-267ca6975798"

// DefaultLifetime is the lifetime of issued tokens unless SetLifetime says
// otherwise. It is shorter than MSAL's five-minute expiry margin, so
// azidentity never answers from its own cache and every acquisition reaches
// the fake — which also keeps MSAL's process-wide managed identity cache from
// leaking tokens between tests.
const DefaultLifetime = 4 * time.Minute

// Knobs are the behaviours every token-issuing fake shares.
type Knobs struct {
	mu         sync.Mutex
	lifetime   time.Duration
	failN      int
	failStatus int
	audience   string
	calls      int
	issued     []string
}

// SetLifetime sets the lifetime of tokens issued from now on.
func (k *Knobs) SetLifetime(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lifetime = d
}

// FailNext makes the next n token requests fail with the given status.
func (k *Knobs) FailNext(n, status int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failN, k.failStatus = n, status
}

// SetAudience makes issued tokens carry this audience whatever was asked for
// ("" restores the requested one).
func (k *Knobs) SetAudience(aud string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.audience = aud
}

// Calls is the number of token requests received (failed ones included).
func (k *Knobs) Calls() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// Issued returns every access token issued so far.
func (k *Knobs) Issued() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.issued...)
}

// begin counts a token request and reports an injected failure.
func (k *Knobs) begin() (status int, fail bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	if k.failN > 0 {
		k.failN--
		return k.failStatus, true
	}
	return 0, false
}

func (k *Knobs) settings() (time.Duration, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	lt := k.lifetime
	if lt == 0 {
		lt = DefaultLifetime
	}
	return lt, k.audience
}

func (k *Knobs) record(tok string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.issued = append(k.issued, tok)
}

// issuer signs the access tokens a fake hands out, so they are real JWTs
// whose claims goagent can read.
type issuer struct {
	key *rsa.PrivateKey
}

func newIssuer(testing.TB) issuer { return issuer{key: Key(2)} }

// Sign returns an RS256 JWT with the given claims.
func Sign(key *rsa.PrivateKey, header, claims map[string]any) string {
	if header == nil {
		header = map[string]any{"typ": "JWT", "alg": "RS256"}
	}
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic("identitytest: sign: " + err.Error())
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// FederatedToken returns a Kubernetes-style service account token (a JWT with
// audience api://AzureADTokenExchange) as workload identity projects it.
func FederatedToken(issuerURL, subject string, exp time.Time) string {
	return Sign(Key(1), map[string]any{"alg": "RS256", "kid": "sa-key"}, map[string]any{
		"aud":           []string{"api://AzureADTokenExchange"},
		"iss":           issuerURL,
		"sub":           subject,
		"exp":           exp.Unix(),
		"iat":           time.Now().Add(-time.Minute).Unix(),
		"nbf":           time.Now().Add(-time.Minute).Unix(),
		"kubernetes.io": map[string]any{"namespace": "agents", "serviceaccount": map[string]any{"name": "goagent"}},
	})
}

func (is issuer) accessToken(claims map[string]any) string {
	claims["uti"] = randomID()
	return Sign(is.key, map[string]any{"typ": "JWT", "alg": "RS256", "kid": "fake"}, claims)
}

// parsedJWT is a JWT split into its parts.
type parsedJWT struct {
	header, claims map[string]any
	input          string
	sig            []byte
}

func parseJWT(s string) (parsedJWT, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return parsedJWT{}, errors.New("not three segments")
	}
	var p parsedJWT
	for i, dst := range []*map[string]any{&p.header, &p.claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return parsedJWT{}, fmt.Errorf("segment %d: %w", i, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			return parsedJWT{}, fmt.Errorf("segment %d: %w", i, err)
		}
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return parsedJWT{}, fmt.Errorf("signature: %w", err)
	}
	p.input, p.sig = parts[0]+"."+parts[1], sig
	return p, nil
}

// verify checks an RS256 or PS256 signature.
func (p parsedJWT) verify(pub *rsa.PublicKey) error {
	sum := sha256.Sum256([]byte(p.input))
	switch p.header["alg"] {
	case "RS256":
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], p.sig)
	case "PS256":
		return rsa.VerifyPSS(pub, crypto.SHA256, sum[:], p.sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	}
	return fmt.Errorf("unsupported alg %v", p.header["alg"])
}

func (p parsedJWT) str(name string) string {
	s, _ := p.claims[name].(string)
	return s
}

func (p parsedJWT) time(name string) (time.Time, bool) {
	n, ok := p.claims[name].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	i, err := n.Int64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(i, 0), true
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// imdsHost is where IMDS lives; only Transport's interception ever sees it.
const imdsHost = "169.254.169.254"

// Transport wraps base (nil: a fresh http.Transport) so that requests to
// IMDS are answered by imds (or refused when imds is nil), requests to
// 127.0.0.1 and localhost go to base, and every other host is refused: a test
// cannot reach the network by mistake.
func Transport(base http.RoundTripper, imds *IMDS) http.RoundTripper {
	if base == nil {
		base = &http.Transport{}
	}
	return &guard{base: base, imds: imds}
}

type guard struct {
	base http.RoundTripper
	imds *IMDS
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	switch {
	case host == imdsHost && g.imds != nil:
		return g.imds.RoundTrip(req)
	case host == imdsHost:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("identitytest: IMDS is not reachable in this test (no route to host)")}
	case host == "127.0.0.1" || host == "localhost" || host == "::1":
		return g.base.RoundTrip(req)
	}
	return nil, fmt.Errorf("identitytest: refusing to reach %s outside the test", host)
}

// server starts a TLS server on 127.0.0.1 closed at the end of the test.
func server(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func clientFor(srv *httptest.Server, imds *IMDS) *http.Client {
	return &http.Client{Transport: Transport(srv.Client().Transport, imds), Timeout: 30 * time.Second}
}

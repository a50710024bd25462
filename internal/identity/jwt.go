package identity

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// jwtParts is a JSON Web Token decoded without verifying its signature: the
// agent only ever reads claims of tokens it was handed or was issued, to
// explain them (expiry, audience, tenant), never to trust them.
type jwtParts struct {
	Header map[string]any
	Claims map[string]any
}

// decodeJWT splits a compact JWS into header and claims. It reports false for
// anything that is not three base64url segments whose first two decode to
// JSON objects and whose header names an "alg" — which is how a PAT (one
// alphanumeric word) is told apart from an Entra bearer token.
func decodeJWT(s string) (jwtParts, bool) {
	segs := strings.Split(s, ".")
	if len(segs) != 3 || segs[0] == "" || segs[1] == "" {
		return jwtParts{}, false
	}
	var p jwtParts
	if !decodeSegment(segs[0], &p.Header) || !decodeSegment(segs[1], &p.Claims) {
		return jwtParts{}, false
	}
	if segs[2] != "" {
		if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(segs[2], "=")); err != nil {
			return jwtParts{}, false
		}
	}
	alg, ok := p.Header["alg"].(string)
	if !ok || alg == "" {
		return jwtParts{}, false
	}
	if typ, present := p.Header["typ"]; present {
		if _, ok := typ.(string); !ok {
			return jwtParts{}, false
		}
	}
	return p, true
}

func decodeSegment(seg string, out *map[string]any) bool {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil || *out == nil {
		return false
	}
	return !dec.More()
}

// str returns a string claim, or "" when absent or not a string.
func (p jwtParts) str(name string) string {
	s, _ := p.Claims[name].(string)
	return s
}

// audiences returns the "aud" claim, which RFC 7519 allows as a string or an
// array of strings.
func (p jwtParts) audiences() []string {
	switch v := p.Claims["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// time returns a NumericDate claim ("exp", "nbf", "iat"), zero when absent.
func (p jwtParts) time(name string) time.Time {
	switch v := p.Claims[name].(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return time.Unix(i, 0)
		}
		if f, err := v.Float64(); err == nil {
			return time.Unix(int64(f), 0)
		}
	case float64:
		return time.Unix(int64(v), 0)
	}
	return time.Time{}
}

// assertionClaims are the claims of the agent's client assertion, in the
// order the .NET JsonWebToken writes its payload. iat is deliberately absent:
// JsonWebToken.Create only writes it when a caller sets it, and the agent's
// VssOAuthJwtBearerAssertion never does (listener.md §2.3).
type assertionClaims struct {
	Subject   string `json:"sub"`
	TokenID   string `json:"jti"`
	Issuer    string `json:"iss"`
	Audience  string `json:"aud"`
	NotBefore int64  `json:"nbf"`
	Expires   int64  `json:"exp"`
}

// assertionLifetime is VssOAuthJwtBearerAssertion.BearerTokenLifetime.
const assertionLifetime = 5 * time.Minute

// assertionBackdate moves nbf into the past. The official client uses now;
// a server whose clock is a little behind ours would then answer "not valid
// until … Current server time is …" for the first seconds of every token.
// Thirty seconds is what the Go agent for the same protocol (github-act-runner)
// sends, and the service accepts it. exp stays nbf + 5 minutes, so the
// assertion's lifetime is exactly the official one: a service that checks the
// lifetime sees what the .NET agent sends.
const assertionBackdate = 30 * time.Second

// signAssertion builds the RS256 client assertion the agent presents to its
// token endpoint: header {"typ":"JWT","alg":"RS256"}, iss = sub = clientId,
// aud = the authorizationUrl the service returned at registration, a fresh
// jti, and a five-minute lifetime. Hand-rolled rather than golang-jwt because
// the exact header and claim set are the contract and there is nothing else to
// it.
func signAssertion(key *rsa.PrivateKey, clientID, audience string, now time.Time) (string, error) {
	header := []byte(`{"typ":"JWT","alg":"RS256"}`)
	claims, err := json.Marshal(assertionClaims{
		Subject:   clientID,
		TokenID:   uuid.NewString(),
		Issuer:    clientID,
		Audience:  audience,
		NotBefore: now.Add(-assertionBackdate).Unix(),
		Expires:   now.Add(-assertionBackdate + assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	signingInput := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

package devserver

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// jwtToken is a parsed compact JWS. Only what the emulator checks is kept.
type jwtToken struct {
	header  map[string]any
	claims  map[string]any
	signed  string // header.payload, the signing input
	sig     []byte
	rawHead []byte
}

var errNotJWT = errors.New("not a JWT")

// parseJWT splits and decodes a compact JWS without verifying it. Segments
// must be base64url without padding (RFC 7515 §2), as the .NET JsonWebToken
// writes them.
func parseJWT(s string) (*jwtToken, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, errNotJWT
	}
	head, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("JWT header: %w", err)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("JWT signature: %w", err)
	}
	t := &jwtToken{signed: parts[0] + "." + parts[1], sig: sig, rawHead: head}
	if err := decodeObject(head, &t.header); err != nil {
		return nil, fmt.Errorf("JWT header: %w", err)
	}
	if err := decodeObject(body, &t.claims); err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	return t, nil
}

func decodeObject(b []byte, out *map[string]any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(out); err != nil {
		return err
	}
	if *out == nil {
		return errors.New("not a JSON object")
	}
	if d.More() {
		return errors.New("trailing data")
	}
	return nil
}

// str returns a string claim ("" when absent or not a string).
func (t *jwtToken) str(name string) string {
	v, _ := t.claims[name].(string)
	return v
}

func (t *jwtToken) alg() string {
	v, _ := t.header["alg"].(string)
	return v
}

// numeric returns a NumericDate claim (RFC 7519 §2) as a time.
func (t *jwtToken) numeric(name string) (time.Time, bool) {
	n, ok := t.claims[name].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// audience reports whether aud (a string or an array of strings) contains want.
func (t *jwtToken) audience(want string) bool {
	switch v := t.claims["aud"].(type) {
	case string:
		return v == want
	case []any:
		for _, a := range v {
			if s, ok := a.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// verifyRS256 checks an RSASSA-PKCS1-v1_5 SHA-256 signature.
func (t *jwtToken) verifyRS256(pub *rsa.PublicKey) error {
	if t.alg() != "RS256" {
		return fmt.Errorf("JWT algorithm %q is not RS256", t.alg())
	}
	sum := sha256.Sum256([]byte(t.signed))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], t.sig)
}

// signES256 builds a compact JWS signed with an ECDSA P-256 key (RFC 7518
// §3.4: the signature is r||s, 32 bytes each).
func signES256(key *ecdsa.PrivateKey, header, claims map[string]any) (string, error) {
	in, err := signingInput(header, claims)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func signingInput(header, claims map[string]any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c), nil
}

// signRS256 builds a compact JWS signed with key.
func signRS256(key *rsa.PrivateKey, header, claims map[string]any) (string, error) {
	in, err := signingInput(header, claims)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

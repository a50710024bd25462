package identity

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestDecodeJWT(t *testing.T) {
	good := b64(`{"typ":"JWT","alg":"RS256"}`) + "." + b64(`{"aud":"a","exp":1700000000,"tid":"t"}`) + "." + b64("sig")
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"entra token", good, true},
		{"unsigned", b64(`{"alg":"none"}`) + "." + b64(`{"a":1}`) + ".", true},
		{"padded segments", b64(`{"alg":"RS256"}`) + "==." + b64(`{"a":1}`) + "." + b64("s"), true},
		{"pat", "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6", false},
		{"two segments", b64(`{"alg":"RS256"}`) + "." + b64(`{}`), false},
		{"four segments", good + ".x", false},
		{"header without alg", b64(`{"typ":"JWT"}`) + "." + b64(`{}`) + ".x", false},
		{"typ not a string", b64(`{"alg":"RS256","typ":1}`) + "." + b64(`{}`) + ".x", false},
		{"header not json", b64(`nope`) + "." + b64(`{}`) + ".x", false},
		{"claims an array", b64(`{"alg":"RS256"}`) + "." + b64(`[1]`) + ".x", false},
		{"trailing garbage", b64(`{"alg":"RS256"}`) + "." + b64(`{} {}`) + ".x", false},
		{"bad signature encoding", b64(`{"alg":"RS256"}`) + "." + b64(`{}`) + ".!!", false},
		{"dotted words", "a.b.c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := decodeJWT(tt.in); ok != tt.ok {
				t.Fatalf("decodeJWT = %v, want %v", ok, tt.ok)
			}
		})
	}
	p, _ := decodeJWT(good)
	if p.str("tid") != "t" || !p.time("exp").Equal(time.Unix(1700000000, 0)) || !reflect.DeepEqual(p.audiences(), []string{"a"}) {
		t.Fatalf("claims = %v", p.Claims)
	}
	arr, _ := decodeJWT(b64(`{"alg":"RS256"}`) + "." + b64(`{"aud":["x","y",3]}`) + ".")
	if !reflect.DeepEqual(arr.audiences(), []string{"x", "y"}) {
		t.Fatalf("audiences = %v", arr.audiences())
	}
}

func FuzzDecodeJWT(f *testing.F) {
	f.Add(b64(`{"typ":"JWT","alg":"RS256"}`) + "." + b64(`{"aud":["a"],"exp":1.5e9}`) + "." + b64("s"))
	f.Add("pat-value")
	f.Add("..")
	f.Add(b64(`{"alg":1}`) + "." + b64(`null`) + ".")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := decodeJWT(s)
		if !ok {
			return
		}
		if strings.Count(s, ".") != 2 || p.Header["alg"] == nil {
			t.Fatalf("accepted %q", s)
		}
		_ = p.audiences()
		_ = p.time("exp")
	})
}

func TestSignAssertion(t *testing.T) {
	key := identitytest.Key(0)
	now := time.Unix(1750000000, 0)
	a, err := signAssertion(key, "client-1", "https://vstoken.example/oauth2/token", now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		t.Fatalf("%d segments", len(parts))
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if string(header) != `{"typ":"JWT","alg":"RS256"}` {
		t.Fatalf("header = %s", header)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range claims {
		names = append(names, k)
	}
	sort.Strings(names)
	if want := []string{"aud", "exp", "iss", "jti", "nbf", "sub"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("claims %v, want %v (no iat)", names, want)
	}
	if claims["iss"] != "client-1" || claims["sub"] != "client-1" || claims["aud"] != "https://vstoken.example/oauth2/token" {
		t.Fatalf("claims = %v", claims)
	}
	if claims["nbf"].(float64) != float64(now.Add(-30*time.Second).Unix()) || claims["exp"].(float64) != float64(now.Add(-30*time.Second+5*time.Minute).Unix()) {
		t.Fatalf("nbf/exp = %v/%v", claims["nbf"], claims["exp"])
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	b, _ := signAssertion(key, "client-1", "aud", now)
	pb, _ := decodeJWT(b)
	pa, _ := decodeJWT(a)
	if pa.str("jti") == pb.str("jti") || len(pa.str("jti")) != 36 {
		t.Fatalf("jti not a fresh GUID: %q %q", pa.str("jti"), pb.str("jti"))
	}
}

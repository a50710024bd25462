package devserver_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
)

type oauthErr struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func TestTokenEndpointVerifiesTheAssertion(t *testing.T) {
	s := startServer(t, devserver.Options{AgentTokenLifetime: 10 * time.Minute})
	c := httpClient(t, s)
	r := register(t, s, c, 1, "oauth", loadKey(t, "agent1"))
	stranger := loadKey(t, "agent2")
	now := time.Now()
	form := func(edit func(url.Values)) []byte {
		v := url.Values{
			"grant_type":            {"client_credentials"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {assertion(t, r.Key, r.ClientID, r.AuthURL, nil)},
		}
		if edit != nil {
			edit(v)
		}
		return []byte(v.Encode())
	}
	withClaims := func(edit func(h, c map[string]any)) []byte {
		return form(func(v url.Values) { v.Set("client_assertion", assertion(t, r.Key, r.ClientID, r.AuthURL, edit)) })
	}
	cases := []struct {
		name   string
		body   []byte
		ct     string
		method string
		status int
		code   string
		desc   string
	}{
		{name: "wrong grant", body: form(func(v url.Values) { v.Set("grant_type", "password") }), status: 400, code: "unsupported_grant_type"},
		{name: "wrong assertion type", body: form(func(v url.Values) { v.Set("client_assertion_type", "saml") }), status: 400, code: "invalid_request"},
		{name: "no assertion", body: form(func(v url.Values) { v.Del("client_assertion") }), status: 400, code: "invalid_request"},
		{name: "not a JWT", body: form(func(v url.Values) { v.Set("client_assertion", "abc.def") }), status: 400, code: "invalid_client"},
		{name: "JSON body", body: []byte(`{"grant_type":"client_credentials"}`), ct: "application/json", status: 400, code: "invalid_request"},
		{name: "GET", method: "GET", status: 405, code: "invalid_request"},
		{name: "alg none", body: withClaims(func(h, c map[string]any) { h["alg"] = "none" }), status: 401, code: "invalid_client"},
		{name: "alg PS256", body: withClaims(func(h, c map[string]any) { h["alg"] = "PS256" }), status: 401, code: "invalid_client"},
		{name: "iss differs from sub", body: withClaims(func(h, c map[string]any) { c["sub"] = uuid.NewString() }), status: 401, code: "invalid_client"},
		{name: "unknown client", body: withClaims(func(h, c map[string]any) { id := uuid.NewString(); c["iss"], c["sub"] = id, id }), status: 401, code: "invalid_client"},
		{name: "signed by another key", body: form(func(v url.Values) {
			v.Set("client_assertion", assertion(t, stranger, r.ClientID, r.AuthURL, nil))
		}), status: 401, code: "invalid_client"},
		{name: "wrong audience", body: withClaims(func(h, c map[string]any) { c["aud"] = s.URL() }), status: 401, code: "invalid_client"},
		{name: "no jti", body: withClaims(func(h, c map[string]any) { c["jti"] = nil }), status: 400, code: "invalid_client"},
		{name: "no nbf", body: withClaims(func(h, c map[string]any) { c["nbf"] = nil }), status: 400, code: "invalid_client"},
		{name: "no exp", body: withClaims(func(h, c map[string]any) { c["exp"] = nil }), status: 400, code: "invalid_client"},
		{name: "expired", body: withClaims(func(h, c map[string]any) {
			c["nbf"], c["exp"] = now.Add(-20*time.Minute).Unix(), now.Add(-16*time.Minute).Unix()
		}), status: 400, code: "invalid_client", desc: "Current server time is"},
		{name: "not yet valid", body: withClaims(func(h, c map[string]any) {
			c["nbf"], c["exp"] = now.Add(20*time.Minute).Unix(), now.Add(24*time.Minute).Unix()
		}), status: 400, code: "invalid_client", desc: "Current server time is"},
		{name: "lifetime too long", body: withClaims(func(h, c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }), status: 400, code: "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.method
			if m == "" {
				m = "POST"
			}
			ct := tc.ct
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			a := do(t, c, call{method: m, url: r.AuthURL, version: "-", body: tc.body, contentType: ct})
			if a.status != tc.status {
				t.Fatalf("status %s, want %d", a, tc.status)
			}
			var e oauthErr
			if err := json.Unmarshal(a.body, &e); err != nil || e.Error != tc.code || e.Description == "" {
				t.Fatalf("OAuth error %s, want %s", a.body, tc.code)
			}
			if !strings.Contains(e.Description, tc.desc) {
				t.Fatalf("description %q lacks %q", e.Description, tc.desc)
			}
		})
	}
	t.Run("back-dated nbf and iat within the skew", func(t *testing.T) {
		a := tokenRequest(t, c, r.AuthURL, assertion(t, r.Key, r.ClientID, r.AuthURL, func(h, c map[string]any) {
			c["nbf"], c["iat"] = now.Add(-30*time.Second).Unix(), now.Add(-30*time.Second).Unix()
		}))
		if a.status != 200 {
			t.Fatalf("%s", a)
		}
		var tok struct {
			ExpiresIn int `json:"expires_in"`
		}
		decode(t, a, &tok)
		if tok.ExpiresIn != 600 {
			t.Fatalf("expires_in %d, want the configured 600", tok.ExpiresIn)
		}
	})
	t.Run("replayed assertion", func(t *testing.T) {
		jwt := assertion(t, r.Key, r.ClientID, r.AuthURL, nil)
		before := len(s.Violations())
		for i := 0; i < 2; i++ {
			if a := tokenRequest(t, c, r.AuthURL, jwt); a.status != 200 {
				t.Fatalf("%s", a)
			}
		}
		if v := s.Violations(); len(v) != before+1 || !strings.Contains(v[len(v)-1], "reused a client assertion") {
			t.Fatalf("replay not recorded: %q", v[before:])
		}
	})
}

func TestAgentTokenExpiryAndRevocation(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 20 * time.Millisecond})
	c := httpClient(t, s)
	a := newAgent(t, s, c, "expiring")
	a.openSession()
	if r := a.poll(-1); r.status != 202 && r.status != 200 {
		t.Fatalf("poll with a fresh token: %s", r)
	}
	s.ExpireAgentTokens()
	r := a.call("DELETE", "sessions/"+a.session, "5.1-preview.1", nil)
	if r.status != 401 || len(r.body) != 0 || !strings.Contains(strings.Join(r.header.Values("WWW-Authenticate"), " "), "Bearer") {
		t.Fatalf("expired token: %s", r)
	}
	a.token = agentToken(t, c, a.reg)
	if r := a.call("GET", "jobrequests", "5.1-preview.1", nil); r.status != 200 {
		t.Fatalf("refreshed token: %s", r)
	}

	if err := s.RevokeAgent(a.reg.ID); err != nil {
		t.Fatal(err)
	}
	wantError(t, a.call("GET", "jobrequests", "5.1-preview.1", nil), 400, "TaskAgentAccessTokenExpiredException")
	got := tokenRequest(t, c, a.reg.AuthURL, assertion(t, a.reg.Key, a.reg.ClientID, a.reg.AuthURL, nil))
	var e oauthErr
	if got.status != 401 || json.Unmarshal(got.body, &e) != nil || e.Error != "invalid_client" {
		t.Fatalf("token for a revoked agent: %s", got)
	}
	if err := s.RevokeAgent(999); err == nil {
		t.Fatal("revoking an unknown agent succeeded")
	}
}

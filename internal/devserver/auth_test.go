package devserver_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/devserver"
)

func TestRegistrationCredentials(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	outsider := "outsider-pat-0000000000000000000000000000000000000"
	reader := "reader-pat-00000000000000000000000000000000000000000"
	if err := s.AddUser(devserver.User{Name: "outsider", PAT: outsider}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(devserver.User{Name: "reader", PAT: reader, InOrg: true}); err != nil {
		t.Fatal(err)
	}
	pools := apiURL(s, "_apis/distributedtask/pools?poolName=Default")
	agents := apiURL(s, "_apis/distributedtask/pools/1/agents")
	addBody := mustJSON(t, map[string]any{"name": "a1", "authorization": map[string]any{"publicKey": publicKeyJSON(&newKey(t).PublicKey)}})

	t.Run("no credential", func(t *testing.T) {
		a := do(t, c, call{method: "GET", url: pools})
		if a.status != 401 || len(a.body) != 0 {
			t.Fatalf("%s", a)
		}
		if ch := strings.Join(a.header.Values("WWW-Authenticate"), ";"); !strings.Contains(ch, "Bearer authorization_uri=https://login.microsoftonline.com/"+s.TenantID()) || !strings.Contains(ch, "Basic") {
			t.Fatalf("challenges: %q", ch)
		}
	})
	t.Run("unknown PAT", func(t *testing.T) {
		if a := do(t, c, call{method: "GET", url: pools, auth: basic("nope")}); a.status != 401 || len(a.body) != 0 {
			t.Fatalf("%s", a)
		}
	})
	t.Run("Basic without password", func(t *testing.T) {
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(s.PAT()+":"))
		if a := do(t, c, call{method: "GET", url: pools, auth: auth}); a.status != 401 {
			t.Fatalf("%s", a)
		}
	})
	t.Run("PAT with any user name", func(t *testing.T) {
		auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+s.PAT()))
		if a := do(t, c, call{method: "GET", url: pools, auth: auth}); a.status != 200 {
			t.Fatalf("%s", a)
		}
	})
	t.Run("not a member", func(t *testing.T) {
		e := wantError(t, do(t, c, call{method: "GET", url: pools, auth: basic(outsider)}), 401, "UnauthorizedRequestException")
		if !strings.HasPrefix(e.Message, "TF400813:") {
			t.Fatalf("message %q", e.Message)
		}
	})
	t.Run("member without pool admin reads but cannot register", func(t *testing.T) {
		if a := do(t, c, call{method: "GET", url: pools, auth: basic(reader)}); a.status != 200 {
			t.Fatalf("read: %s", a)
		}
		wantError(t, do(t, c, call{method: "POST", url: agents, auth: basic(reader), body: addBody}), 403, "AccessDeniedException")
	})
	t.Run("sign-in redirect without FedAuthRedirect suppression", func(t *testing.T) {
		nr := &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		a := do(t, nr, call{method: "GET", url: pools, auth: basic("nope"), headers: map[string]string{"X-TFS-FedAuthRedirect": ""}})
		if a.status != http.StatusFound || a.header.Get("Location") == "" {
			t.Fatalf("%s", a)
		}
		if !strings.Contains(strings.Join(s.Violations(), "\n"), "X-TFS-FedAuthRedirect") {
			t.Fatal("the missing header was not recorded")
		}
	})
}

func TestEntraBearerRegistration(t *testing.T) {
	s := startServer(t, devserver.Options{})
	c := httpClient(t, s)
	admin, reader, outsider := uuid.NewString(), uuid.NewString(), uuid.NewString()
	for _, u := range []devserver.User{
		{Name: "sp-admin", ObjectID: admin, InOrg: true, PoolAdmin: true},
		{Name: "sp-reader", ObjectID: reader, InOrg: true},
		{Name: "sp-outsider", ObjectID: outsider},
	} {
		if err := s.AddUser(u); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := s.EntraToken(admin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	agents := apiURL(s, "_apis/distributedtask/pools/1/agents")
	body := mustJSON(t, map[string]any{"name": "sp-agent", "authorization": map[string]any{"publicKey": publicKeyJSON(&newKey(t).PublicKey)}})
	if a := do(t, c, call{method: "POST", url: agents, auth: bearer(tok), body: body}); a.status != 200 {
		t.Fatalf("register with an Entra token: %s", a)
	}
	rtok, _ := s.EntraToken(reader, time.Hour)
	wantError(t, do(t, c, call{method: "DELETE", url: agents + "/1", auth: bearer(rtok)}), 403, "AccessDeniedException")
	otok, _ := s.EntraToken(outsider, time.Hour)
	wantError(t, do(t, c, call{method: "GET", url: agents, auth: bearer(otok)}), 401, "UnauthorizedRequestException")

	// Tokens from another "Entra": trusted only once its key is.
	other := loadKey(t, "agent4")
	mint := func(claims map[string]any) string {
		now := time.Now()
		base := map[string]any{
			"aud": "499b84ac-1321-427f-aa17-267ca6975798", "iss": "https://login.microsoftonline.com/" + s.TenantID() + "/v2.0",
			"tid": s.TenantID(), "oid": admin, "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		for k, v := range claims {
			if v == nil {
				delete(base, k)
			} else {
				base[k] = v
			}
		}
		return signJWT(t, other, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "fake-entra"}, base)
	}
	good := mint(nil)
	if a := do(t, c, call{method: "GET", url: agents, auth: bearer(good)}); a.status != 401 {
		t.Fatalf("untrusted signer accepted: %s", a)
	}
	s.TrustEntraKey("fake-entra", &other.PublicKey)
	if a := do(t, c, call{method: "GET", url: agents, auth: bearer(good)}); a.status != 200 {
		t.Fatalf("trusted signer refused: %s", a)
	}
	for name, claims := range map[string]map[string]any{
		"wrong audience": {"aud": "https://management.azure.com"},
		"wrong issuer":   {"iss": "https://login.microsoftonline.com/" + uuid.NewString() + "/v2.0"},
		"expired":        {"exp": time.Now().Add(-time.Hour).Unix()},
		"not yet valid":  {"nbf": time.Now().Add(time.Hour).Unix()},
		"unknown oid":    {"oid": uuid.NewString()},
		"no exp":         {"exp": nil},
	} {
		if a := do(t, c, call{method: "GET", url: agents, auth: bearer(mint(claims))}); a.status != 401 {
			t.Errorf("%s: %s", name, a)
		}
	}
	tampered := good[:len(good)-4] + "AAAA"
	if a := do(t, c, call{method: "GET", url: agents, auth: bearer(tampered)}); a.status != 401 {
		t.Errorf("tampered signature: %s", a)
	}
}

// signJWT signs an RS256 compact JWS with test-side code.
func signJWT(t *testing.T, key *rsa.PrivateKey, h, c map[string]any) string {
	t.Helper()
	in := base64.RawURLEncoding.EncodeToString(mustJSON(t, h)) + "." + base64.RawURLEncoding.EncodeToString(mustJSON(t, c))
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestTokenKindPerRoute: each route family takes one kind of credential and
// answers the others as the service would, recording the misuse.
func TestTokenKindPerRoute(t *testing.T) {
	s := startServer(t, devserver.Options{PollHold: 50 * time.Millisecond})
	c := httpClient(t, s)
	a1 := newAgent(t, s, c, "kind-1")
	a2 := newAgent(t, s, c, "kind-2")
	a1.openSession()
	job, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := a1.takeJob()
	other, err := s.QueueJob(simpleJob(0), devserver.QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pat, agentTok, jobTok := basic(s.PAT()), bearer(a1.token), bearer(job.Token())
	cases := []struct {
		name    string
		k       call
		status  int
		typeKey string
	}{
		{"agent token on pools", call{method: "GET", url: apiURL(s, "_apis/distributedtask/pools"), auth: agentTok}, 403, "AccessDeniedException"},
		{"job token on agents", call{method: "GET", url: apiURL(s, "_apis/distributedtask/pools/1/agents"), auth: jobTok}, 403, "AccessDeniedException"},
		{"PAT on sessions", call{method: "POST", url: a1.pool("sessions"), auth: pat, body: mustJSON(t, map[string]any{"ownerName": "x", "agent": map[string]any{"id": a1.reg.ID}})}, 403, "AccessDeniedException"},
		{"job token on messages", call{method: "GET", url: a1.pool("messages?sessionId=" + a1.session), auth: jobTok}, 403, "AccessDeniedException"},
		{"PAT on job requests", call{method: "GET", url: a1.pool("jobrequests/1"), auth: pat}, 403, "AccessDeniedException"},
		{"other agent's session", call{method: "GET", url: a1.pool("messages?sessionId=" + a1.session), auth: bearer(a2.token)}, 403, "AccessDeniedException"},
		{"session for another agent", call{method: "POST", url: a2.pool("sessions"), auth: bearer(a2.token), body: mustJSON(t, map[string]any{"ownerName": "x", "agent": map[string]any{"id": a1.reg.ID}})}, 403, "AccessDeniedException"},
		{"PAT on records", call{method: "GET", url: planURL(m, "timelines/"+m.Timeline.ID+"/records"), auth: pat}, 403, "AccessDeniedException"},
		{"agent token on logs", call{method: "POST", url: planURL(m, "logs"), auth: agentTok, body: []byte(`{"path":"x"}`)}, 403, "AccessDeniedException"},
		{"job token of another plan", call{method: "POST", url: planURL(m, "logs"), auth: bearer(other.Token()), body: []byte(`{"path":"x"}`)}, 403, "TaskOrchestrationPlanSecurityException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.Violations())
			wantError(t, do(t, c, tc.k), tc.status, tc.typeKey)
			if len(s.Violations()) == before {
				t.Fatal("misuse not recorded as a violation")
			}
		})
	}
	// And the right kinds work.
	if a := do(t, c, call{method: "GET", url: planURL(m, "timelines/"+m.Timeline.ID+"/records"), auth: jobTok}); a.status != 200 {
		t.Fatalf("job token on its plan: %s", a)
	}
}

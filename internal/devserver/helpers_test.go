package devserver_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// The helpers below talk to the emulator with plain net/http and crypto,
// written independently of the emulator and of the agent's packages, so the
// tests check the wire and not shared code.

const hangGuard = 30 * time.Second

func startServer(t *testing.T, o devserver.Options) *devserver.Server {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := devserver.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if bugs := s.Bugs(); len(bugs) > 0 {
			t.Errorf("emulator bugs: %v", bugs)
		}
	})
	return s
}

func httpClient(t *testing.T, s *devserver.Server) *http.Client {
	t.Helper()
	return clientForCA(t, s.CAFile())
}

// clientForCA trusts only the given CA file (none for plain HTTP).
func clientForCA(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatal("no certificate in the CA file")
		}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	c := &http.Client{Transport: tr, Timeout: 2 * hangGuard}
	t.Cleanup(tr.CloseIdleConnections)
	return c
}

func basic(pat string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("VstsAgent:"+pat))
}

func bearer(tok string) string { return "Bearer " + tok }

// call is one raw request. Accept carries the api-version unless version is
// "-" (none); headers override.
type call struct {
	method, url, auth, version string
	body                       []byte
	contentType                string
	headers                    map[string]string
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

func do(t *testing.T, c *http.Client, k call) answer {
	t.Helper()
	var rd io.Reader
	if k.body != nil {
		rd = bytes.NewReader(k.body)
	}
	req, err := http.NewRequest(k.method, k.url, rd)
	if err != nil {
		t.Fatal(err)
	}
	v := k.version
	if v == "" {
		v = "7.1-preview.1"
	}
	if v != "-" {
		req.Header.Set("Accept", "application/json; api-version="+v)
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if k.body != nil {
		ct := k.contentType
		if ct == "" {
			ct = "application/json; charset=utf-8"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	if k.auth != "" {
		req.Header.Set("Authorization", k.auth)
	}
	for h, val := range k.headers {
		if val == "" {
			req.Header.Del(h)
		} else {
			req.Header.Set(h, val)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", k.method, k.url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t *testing.T, a answer, out any) {
	t.Helper()
	if err := json.Unmarshal(a.body, out); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
}

// vssError is the wrapped-exception body.
type vssError struct {
	ID        string  `json:"$id"`
	Inner     *string `json:"innerException"`
	Message   string  `json:"message"`
	TypeName  string  `json:"typeName"`
	TypeKey   string  `json:"typeKey"`
	ErrorCode *int    `json:"errorCode"`
	EventID   int     `json:"eventId"`
}

// wantError asserts a status and the VSS error shape with a type key.
func wantError(t *testing.T, a answer, status int, typeKey string) vssError {
	t.Helper()
	if a.status != status {
		t.Fatalf("status = %d, want %d (%s)", a.status, status, a.body)
	}
	var e vssError
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, a.body)
	}
	if e.TypeKey != typeKey {
		t.Fatalf("typeKey = %q, want %q (%s)", e.TypeKey, typeKey, a.body)
	}
	if e.ID != "1" || e.Inner != nil || e.ErrorCode == nil || e.EventID != 3000 || e.Message == "" ||
		!strings.Contains(e.TypeName, "."+typeKey+", ") {
		t.Fatalf("error body not in the wrapped-exception shape: %s", a.body)
	}
	if !strings.Contains(string(a.body), `"innerException":null`) {
		t.Fatalf("innerException must be null: %s", a.body)
	}
	return e
}

func apiURL(s *devserver.Server, rel string) string { return s.URL() + "/" + rel }

// loadKey reads one of the throw-away keys in testdata/keys (see the README
// there: generating RSA keys per test takes seconds under -race).
func loadKey(t *testing.T, name string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return k.(*rsa.PrivateKey)
}

var keyTurn atomic.Int64

// newKey hands out the 2048-bit test keys in turn.
func newKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	return loadKey(t, fmt.Sprintf("agent%d", keyTurn.Add(1)%4+1))
}

// publicKeyJSON is TaskAgentPublicKey as the official agent sends it:
// big-endian bytes, base64.
func publicKeyJSON(k *rsa.PublicKey) map[string]string {
	e := big32(k.E)
	return map[string]string{
		"exponent": base64.StdEncoding.EncodeToString(e),
		"modulus":  base64.StdEncoding.EncodeToString(k.N.Bytes()),
	}
}

func big32(e int) []byte {
	var b []byte
	for e > 0 {
		b = append([]byte{byte(e)}, b...)
		e >>= 8
	}
	return b
}

// registered is an agent as the registration answer describes it.
type registered struct {
	ID       int
	ClientID string
	AuthURL  string
	Key      *rsa.PrivateKey
	PoolID   int
	Name     string
}

func register(t *testing.T, s *devserver.Server, c *http.Client, poolID int, name string, key *rsa.PrivateKey) registered {
	t.Helper()
	body := mustJSON(t, map[string]any{
		"name": name, "version": "4.275.0", "osDescription": "Linux test",
		"maxParallelism": 1, "provisioningState": "Provisioned",
		"authorization":      map[string]any{"publicKey": publicKeyJSON(&key.PublicKey)},
		"systemCapabilities": map[string]string{"Agent.Name": name},
	})
	a := do(t, c, call{method: "POST", url: apiURL(s, "_apis/distributedtask/pools/"+strconv.Itoa(poolID)+"/agents"), auth: basic(s.PAT()), version: "6.0-preview.2", body: body})
	if a.status != 200 {
		t.Fatalf("register %s: %s", name, a)
	}
	var ag taskagent.TaskAgent
	decode(t, a, &ag)
	if ag.Id == nil || ag.Authorization == nil || ag.Authorization.ClientId == nil || ag.Authorization.AuthorizationUrl == nil {
		t.Fatalf("registration answer lacks id or authorization: %s", a.body)
	}
	return registered{ID: *ag.Id, ClientID: ag.Authorization.ClientId.String(), AuthURL: *ag.Authorization.AuthorizationUrl, Key: key, PoolID: poolID, Name: name}
}

// assertion writes an RS256 client assertion as listener.md §2.3 describes
// the official agent's: iss = sub = clientId, aud = authorizationUrl, jti,
// nbf = now, exp = now + 5 min. edit may change claims (nil deletes) or the
// header.
func assertion(t *testing.T, key *rsa.PrivateKey, clientID, aud string, edit func(h, c map[string]any)) string {
	t.Helper()
	now := time.Now()
	h := map[string]any{"typ": "JWT", "alg": "RS256"}
	c := map[string]any{
		"iss": clientID, "sub": clientID, "aud": aud, "jti": uuid.NewString(),
		"nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	if edit != nil {
		edit(h, c)
	}
	for k, v := range c {
		if v == nil {
			delete(c, k)
		}
	}
	in := base64.RawURLEncoding.EncodeToString(mustJSON(t, h)) + "." + base64.RawURLEncoding.EncodeToString(mustJSON(t, c))
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func tokenRequest(t *testing.T, c *http.Client, authURL, jwt string) answer {
	t.Helper()
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {jwt},
	}
	return do(t, c, call{method: "POST", url: authURL, version: "-", body: []byte(form.Encode()), contentType: "application/x-www-form-urlencoded"})
}

func agentToken(t *testing.T, c *http.Client, r registered) string {
	t.Helper()
	a := tokenRequest(t, c, r.AuthURL, assertion(t, r.Key, r.ClientID, r.AuthURL, nil))
	if a.status != 200 {
		t.Fatalf("token for %s: %s", r.Name, a)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	decode(t, a, &tok)
	if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn <= 0 {
		t.Fatalf("token answer: %s", a.body)
	}
	return tok.AccessToken
}

// agent is a test-side agent: registered, with a token and maybe a session.
type agent struct {
	t       *testing.T
	s       *devserver.Server
	c       *http.Client
	reg     registered
	token   string
	session string
	aesKey  []byte
}

func newAgent(t *testing.T, s *devserver.Server, c *http.Client, name string) *agent {
	t.Helper()
	reg := register(t, s, c, 1, name, newKey(t))
	return &agent{t: t, s: s, c: c, reg: reg, token: agentToken(t, c, reg)}
}

func (a *agent) pool(rel string) string {
	return apiURL(a.s, "_apis/distributedtask/pools/"+strconv.Itoa(a.reg.PoolID)+"/"+rel)
}

func (a *agent) call(method, rel, version string, body any) answer {
	a.t.Helper()
	var b []byte
	if body != nil {
		b = mustJSON(a.t, body)
	}
	return do(a.t, a.c, call{method: method, url: a.pool(rel), auth: bearer(a.token), version: version, body: b})
}

func (a *agent) openSession() taskagent.TaskAgentSession {
	a.t.Helper()
	r := a.call("POST", "sessions", "5.1-preview.1", map[string]any{
		"ownerName": "testhost",
		"agent":     map[string]any{"id": a.reg.ID, "name": a.reg.Name, "version": "4.275.0", "osDescription": "Linux"},
	})
	if r.status != http.StatusCreated {
		a.t.Fatalf("create session: %s", r)
	}
	var sess taskagent.TaskAgentSession
	decode(a.t, r, &sess)
	a.session = sess.SessionId.String()
	if sess.EncryptionKey != nil && sess.EncryptionKey.Value != nil {
		a.aesKey = rsaOAEPSHA1Decrypt(a.t, a.reg.Key, *sess.EncryptionKey.Value)
	}
	return sess
}

// poll does GET messages; last < 0 omits lastMessageId.
func (a *agent) poll(last int64) answer {
	a.t.Helper()
	q := "messages?sessionId=" + a.session
	if last >= 0 {
		q += "&lastMessageId=" + strconv.FormatInt(last, 10)
	}
	return a.call("GET", q, "6.0-preview.1", nil)
}

type message struct {
	ID   int64
	Type string
	Body []byte // decrypted
	IV   []byte
	Raw  string
}

// next polls until a message arrives (the server answers 202 after its hold).
func (a *agent) next(last int64) message {
	a.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		r := a.poll(last)
		switch r.status {
		case http.StatusAccepted:
			continue
		case http.StatusOK:
			var m taskagent.TaskAgentMessage
			decode(a.t, r, &m)
			out := message{ID: int64(*m.MessageId), Type: *m.MessageType, Raw: *m.Body}
			if m.Iv != nil && len(*m.Iv) > 0 {
				out.IV = *m.Iv
				pt, err := aesCBCDecrypt(a.aesKey, out.IV, *m.Body)
				if err != nil {
					a.t.Fatalf("decrypt message %d: %v", out.ID, err)
				}
				out.Body = pt
			} else {
				out.Body = []byte(*m.Body)
			}
			return out
		default:
			a.t.Fatalf("poll: %s", r)
		}
	}
	a.t.Fatal("no message within the hang guard")
	return message{}
}

func (a *agent) ack(id int64) {
	a.t.Helper()
	r := a.call("DELETE", "messages/"+strconv.FormatInt(id, 10)+"?sessionId="+a.session, "5.1-preview.1", nil)
	if r.status != http.StatusNoContent && r.status != http.StatusOK {
		a.t.Fatalf("delete message: %s", r)
	}
}

func (a *agent) renew(requestID int64) answer {
	a.t.Helper()
	return a.call("PATCH", "jobrequests/"+strconv.FormatInt(requestID, 10)+"?lockToken="+wire.EmptyLockToken, "5.1-preview.1", map[string]any{"requestId": requestID})
}

// takeJob polls for the job request message, acknowledges it and returns it.
func (a *agent) takeJob() *wire.JobRequestMessage {
	a.t.Helper()
	m := a.next(-1)
	if m.Type != wire.MessageJobRequest {
		a.t.Fatalf("message type = %s, want %s", m.Type, wire.MessageJobRequest)
	}
	var jm wire.JobRequestMessage
	if err := json.Unmarshal(m.Body, &jm); err != nil {
		a.t.Fatalf("job message: %v", err)
	}
	a.ack(m.ID)
	return &jm
}

// rsaOAEPSHA1Decrypt unwraps the session key (listener.md §4.5 step 2).
func rsaOAEPSHA1Decrypt(t *testing.T, key *rsa.PrivateKey, ct []byte) []byte {
	t.Helper()
	pt, err := rsa.DecryptOAEP(sha1.New(), nil, key, ct, nil)
	if err != nil {
		t.Fatalf("RSA-OAEP-SHA1 decrypt of the session key: %v", err)
	}
	return pt
}

// aesCBCDecrypt decrypts a message body (listener.md §4.5 step 3).
func aesCBCDecrypt(key, iv []byte, body string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(body)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(iv) != aes.BlockSize || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errors.New("ciphertext is not a whole number of blocks")
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n == 0 || n > aes.BlockSize || n > len(pt) {
		return nil, errors.New("bad PKCS#7 padding")
	}
	for _, b := range pt[len(pt)-n:] {
		if int(b) != n {
			return nil, errors.New("bad PKCS#7 padding")
		}
	}
	return bytes.TrimPrefix(pt[:len(pt)-n], []byte{0xEF, 0xBB, 0xBF}), nil
}

// simpleJob is a minimal job message with one script step.
func simpleJob(planVersion int) *wire.JobRequestMessage {
	return &wire.JobRequestMessage{
		JobDisplayName: "Build", JobName: "build",
		Plan: wire.PlanReference{Version: planVersion},
		Steps: []wire.Step{{
			Type: "task", ID: uuid.NewString(), Name: "CmdLine", DisplayName: "Say hello",
			Reference: wire.TaskReference{ID: wire.TaskCmdLine, Name: "CmdLine", Version: "2.279.1"},
			Inputs:    map[string]string{"script": "echo hello"},
		}},
		Variables: map[string]wire.VariableValue{"mySecret": {Value: "hunter2hunter2", IsSecret: true}},
	}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

// planURL addresses a plan route of a job message.
func planURL(m *wire.JobRequestMessage, rel string) string {
	sc := m.SystemConnection()
	return sc.URL + m.Plan.ScopeIdentifier + "/_apis/distributedtask/hubs/" + m.Plan.PlanType + "/plans/" + m.Plan.PlanID + "/" + rel
}

func jobToken(m *wire.JobRequestMessage) string {
	return m.SystemConnection().Authorization.Parameters["AccessToken"]
}

// eventually polls cond until it holds (a hang guard, not a timing claim).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package listener

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
	"github.com/goagent-dev/goagent/internal/wire"
)

func TestSystemCapabilities(t *testing.T) {
	env := []string{
		"JAVA_HOME=/usr/lib/jvm",
		"TERM=xterm", "SHLVL=2", // noise the official agent drops
		"LONG=" + strings.Repeat("x", 1024), // values of 1024+ characters are dropped
		"VSO_AGENT_IGNORE=HIDDEN, ALSO",
		"HIDDEN=1", "ALSO=2",
		"AZP_TOKEN=pat-value", "AZURE_CLIENT_SECRET=s", "IDENTITY_HEADER=h", // the agent's credentials
		"VSTS_AGENT_INPUT_TOKEN=t",
		"Agent.Name=spoofed", // the agent's own values override
	}
	caps := SystemCapabilities(env, map[string]string{"gpu": "a100", "JAVA_HOME": "/opt/jdk"}, "agent-7", "4.275.0", "1.2.3")
	want := map[string]string{
		"JAVA_HOME": "/opt/jdk", "gpu": "a100", "Agent.Name": "agent-7", "Agent.Version": "4.275.0",
		"Agent.OS": wire.AgentOS(), "Agent.OSArchitecture": wire.AgentArchitecture(), "goagent.version": "1.2.3",
		"InteractiveSession": "False",
	}
	for k, v := range want {
		if caps[k] != v {
			t.Errorf("%s = %q, want %q", k, caps[k], v)
		}
	}
	for _, k := range []string{"TERM", "SHLVL", "LONG", "HIDDEN", "ALSO", "AZP_TOKEN", "AZURE_CLIENT_SECRET", "IDENTITY_HEADER", "VSTS_AGENT_INPUT_TOKEN"} {
		if _, ok := caps[k]; ok {
			t.Errorf("%s published as a capability", k)
		}
	}
}

func TestScrubEnv(t *testing.T) {
	env := []string{"PATH=/bin", "AZP_TOKEN=x", "IDENTITY_HEADER=y", "AZURE_CLIENT_SECRET=z", "AZURE_FEDERATED_TOKEN_FILE=/f", "HOME=/h"}
	got := strings.Join(ScrubEnv(env, []string{"azure_federated_token_file"}), " ")
	if got != "PATH=/bin AZURE_FEDERATED_TOKEN_FILE=/f HOME=/h" {
		t.Fatalf("ScrubEnv = %q", got)
	}
}

func TestParseTimeSpan(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"00:05:00": 5 * time.Minute, "1.02:03:04": 26*time.Hour + 3*time.Minute + 4*time.Second,
		"00:00:01.5": 1500 * time.Millisecond, "": 0, "soon": 0,
	} {
		if got := parseTimeSpan(in); got != want {
			t.Errorf("parseTimeSpan(%q) = %v, want %v", in, got, want)
		}
	}
}

// The message crypto of listener.md §4.5, built here from the primitives:
// RSA-OAEP-SHA1 for the session key, AES-CBC with PKCS#7 for bodies.
func TestMessageDecryption(t *testing.T) {
	key := identitytest.Key(0)
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &key.PublicKey, aesKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	got, err := sessionKey(key, &taskagent.TaskAgentSessionKey{Encrypted: &yes, Value: &wrapped})
	if err != nil || !bytes.Equal(got, aesKey) {
		t.Fatalf("session key: %v", err)
	}
	encrypt := func(plain []byte) *taskagent.TaskAgentMessage {
		iv := make([]byte, 16)
		rand.Read(iv)
		n := 16 - len(plain)%16
		padded := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(n)}, n)...)
		block, _ := aes.NewCipher(aesKey)
		ct := make([]byte, len(padded))
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
		body := base64.StdEncoding.EncodeToString(ct)
		return &taskagent.TaskAgentMessage{Body: &body, Iv: &iv}
	}
	body, err := decryptBody(aesKey, encrypt([]byte("\xEF\xBB\xBF{\"jobId\":\"x\"}")))
	if err != nil || string(body) != `{"jobId":"x"}` {
		t.Fatalf("decrypt = %q, %v (BOM must go)", body, err)
	}
	other := make([]byte, 32)
	rand.Read(other)
	// A wrong key almost always breaks the padding; when by chance it does
	// not, what comes out is still not the message.
	if got, err := decryptBody(other, encrypt([]byte(`{"a":1}`))); err == nil && string(got) == `{"a":1}` {
		t.Fatal("a wrong session key decrypted the message")
	}
	plain := `{"plain":true}`
	if body, err := decryptBody(nil, &taskagent.TaskAgentMessage{Body: &plain}); err != nil || string(body) != plain {
		t.Fatalf("plaintext body = %q, %v", body, err)
	}
	bad := "not base64!"
	iv := make([]byte, 16)
	if _, err := decryptBody(aesKey, &taskagent.TaskAgentMessage{Body: &bad, Iv: &iv}); err == nil {
		t.Fatal("a body that is not base64 decrypted")
	}
	short := base64.StdEncoding.EncodeToString([]byte("123"))
	if _, err := decryptBody(aesKey, &taskagent.TaskAgentMessage{Body: &short, Iv: &iv}); err == nil {
		t.Fatal("a body that is not whole AES blocks decrypted")
	}
}

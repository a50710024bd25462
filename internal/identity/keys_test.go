package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/identity/identitytest"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	key, created, err := LoadOrCreateKey(dir)
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	if key.N.BitLen() != 2048 {
		t.Fatalf("%d bits", key.N.BitLen())
	}
	path := filepath.Join(dir, KeyFile)
	if m := mode(t, path); m != 0o600 {
		t.Fatalf("mode %v", m)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range doc {
		names = append(names, k)
	}
	sort.Strings(names)
	if want := []string{"ContainerName", "d", "dp", "dq", "exponent", "inverseQ", "modulus", "p", "q"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("members %v, want %v", names, want)
	}
	if doc["exponent"] != "AQAB" || doc["ContainerName"] != "" {
		t.Fatalf("exponent %v, ContainerName %v", doc["exponent"], doc["ContainerName"])
	}
	// .NET RSAParameters lengths: D and Modulus full size, CRT values half.
	for name, want := range map[string]int{"modulus": 256, "d": 256, "p": 128, "q": 128, "dp": 128, "dq": 128, "inverseQ": 128} {
		b, err := base64.StdEncoding.DecodeString(doc[name].(string))
		if err != nil || len(b) != want {
			t.Fatalf("%s: %d bytes (err %v), want %d", name, len(b), err, want)
		}
	}

	again, created, err := LoadOrCreateKey(dir)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("reload: created=%v err=%v same=%v", created, err, again.Equal(key))
	}

	// Loosened permissions are restored.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(dir); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Fatalf("mode after reload %v", m)
	}
}

func TestParseKeyCaseInsensitiveAndMinimalBytes(t *testing.T) {
	key := identitytest.Key(0)
	// Another writer's casing and big-endian values without leading zeros.
	doc := map[string]any{
		"D": key.D.Bytes(), "DP": key.Precomputed.Dp.Bytes(), "DQ": key.Precomputed.Dq.Bytes(),
		"Exponent": []byte{1, 0, 1}, "InverseQ": key.Precomputed.Qinv.Bytes(), "Modulus": key.N.Bytes(),
		"P": key.Primes[0].Bytes(), "Q": key.Primes[1].Bytes(), "useCng": false,
	}
	raw, _ := json.Marshal(doc)
	got, err := parseKey(append([]byte("\xef\xbb\xbf"), raw...))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) {
		t.Fatal("different key")
	}
}

func TestParseKeyRejects(t *testing.T) {
	dir := t.TempDir()
	good, err := encodeKey(identitytest.Key(0))
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	tests := map[string][]byte{
		"not json":  []byte("nope"),
		"missing d": mutate(func(m map[string]any) { delete(m, "d") }),
		"wrong modulus": mutate(func(m map[string]any) {
			b, _ := base64.StdEncoding.DecodeString(m["modulus"].(string))
			b[10] ^= 1
			m["modulus"] = b
		}),
		"key container":  mutate(func(m map[string]any) { m["ContainerName"] = "goagent" }),
		"small exponent": mutate(func(m map[string]any) { m["exponent"] = []byte{1} }),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parseKey(data); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// A broken file on disk is an error naming the file, not a new key.
	if err := os.WriteFile(filepath.Join(dir, KeyFile), tests["missing d"], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add([]byte(`{"modulus":"AQAB","exponent":"AQAB","d":"AQ==","p":"Aw==","q":"BQ=="}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"ContainerName":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := parseKey(data)
		if err == nil && key.Validate() != nil {
			t.Fatal("accepted an invalid key")
		}
	})
}

func TestPublicKey(t *testing.T) {
	key := identitytest.Key(0)
	pk := PublicKey(key)
	if !bytes.Equal(*pk.Exponent, []byte{1, 0, 1}) {
		t.Fatalf("exponent %v", *pk.Exponent)
	}
	if !bytes.Equal(*pk.Modulus, key.N.Bytes()) || (*pk.Modulus)[0] == 0 {
		t.Fatal("modulus is not the big-endian modulus without leading zeros")
	}
	js, _ := json.Marshal(pk)
	if !strings.Contains(string(js), `"exponent":"AQAB"`) {
		t.Fatalf("wire form %s", js)
	}
}

func TestCredentialFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadCredential(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	want := CredentialData{ClientID: "1c1c1c1c-0000-4000-8000-1c1c1c1c1c1c", AuthorizationURL: "https://vstoken.dev.azure.com/org/oauth2/token", OAuthEndpointURL: "https://tfs.local:8443/oauth2/token"}
	if err := SaveCredential(dir, want); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, CredentialFile)
	if m := mode(t, path); m != 0o600 {
		t.Fatalf("mode %v", m)
	}
	raw, _ := os.ReadFile(path)
	wantJSON := `{"scheme":"OAuth","data":{"authorizationUrl":"https://vstoken.dev.azure.com/org/oauth2/token","clientId":"1c1c1c1c-0000-4000-8000-1c1c1c1c1c1c","oauthEndpointUrl":"https://tfs.local:8443/oauth2/token"}}`
	if string(raw) != wantJSON {
		t.Fatalf("file\n%s\nwant\n%s", raw, wantJSON)
	}
	got, err := LoadCredential(dir)
	if err != nil || got != want {
		t.Fatalf("reload %+v, %v", got, err)
	}
	if got.TokenEndpoint() != want.OAuthEndpointURL {
		t.Fatal("token endpoint should be the rewritten one")
	}

	// An older file without oauthEndpointUrl, with other casing and a BOM.
	old := "\xef\xbb\xbf" + `{"Scheme":"OAuth","Data":{"ClientId":"c","AuthorizationUrl":"https://a/token"}}`
	writeFile(t, dir, CredentialFile, old)
	got, err = LoadCredential(dir)
	if err != nil || got.TokenEndpoint() != "https://a/token" {
		t.Fatalf("old file: %+v %v", got, err)
	}

	writeFile(t, dir, CredentialFile, `{"scheme":"PAT","data":{"token":"tok-secret"}}`)
	if _, err := LoadCredential(dir); err == nil || strings.Contains(err.Error(), "tok-secret") {
		t.Fatalf("PAT scheme: %v", err)
	}
	if err := SaveCredential(dir, CredentialData{ClientID: "c"}); err == nil {
		t.Fatal("saved a credential without authorizationUrl")
	}

	data, _ := encodeKey(identitytest.Key(1))
	writeFile(t, dir, KeyFile, string(data))
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{KeyFile, CredentialFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s still there: %v", name, err)
		}
	}
	if err := Remove(dir); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

func FuzzParseCredential(f *testing.F) {
	f.Add([]byte(`{"scheme":"OAuth","data":{"clientId":"c","authorizationUrl":"u"}}`))
	f.Add([]byte(`{"scheme":"OAuth","data":{"clientId":1}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseCredential(data)
		if err == nil && (d.ClientID == "" || d.AuthorizationURL == "" || d.TokenEndpoint() == "") {
			t.Fatalf("accepted incomplete %+v", d)
		}
	})
}

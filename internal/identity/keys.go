package identity

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// File names inside the state directory, as the official agent names them in
// its root (listener.md §2.2, §2.4).
const (
	KeyFile        = ".credentials_rsaparams"
	CredentialFile = ".credentials"
)

// keyBits is the size of the agent's key (RSAFileKeyManager.cs).
const keyBits = 2048

// rsaParams is the official .credentials_rsaparams JSON (IRSAKeyManager.cs,
// RSAParametersSerializable.GetObjectData): .NET RSAParameters as base64
// big-endian byte arrays. encoding/json matches member names
// case-insensitively, which covers the UNCONFIRMED casing of ContainerName.
type rsaParams struct {
	ContainerName string `json:"ContainerName"`
	D             []byte `json:"d"`
	DP            []byte `json:"dp"`
	DQ            []byte `json:"dq"`
	Exponent      []byte `json:"exponent"`
	InverseQ      []byte `json:"inverseQ"`
	Modulus       []byte `json:"modulus"`
	P             []byte `json:"p"`
	Q             []byte `json:"q"`
}

// fixed returns n as exactly size big-endian bytes. .NET's RSA.ImportParameters
// insists that D is as long as the modulus and the CRT values half as long,
// so the file must keep the leading zeros big.Int drops.
func fixed(n *big.Int, size int) []byte {
	return n.FillBytes(make([]byte, size))
}

func encodeKey(key *rsa.PrivateKey) ([]byte, error) {
	if len(key.Primes) != 2 {
		return nil, errors.New("encode agent key: not a two-prime RSA key")
	}
	key.Precompute()
	k := key.Size()
	half := (k + 1) / 2
	return json.Marshal(rsaParams{
		D:        fixed(key.D, k),
		DP:       fixed(key.Precomputed.Dp, half),
		DQ:       fixed(key.Precomputed.Dq, half),
		Exponent: big.NewInt(int64(key.E)).Bytes(),
		InverseQ: fixed(key.Precomputed.Qinv, half),
		Modulus:  fixed(key.N, k),
		P:        fixed(key.Primes[0], half),
		Q:        fixed(key.Primes[1], half),
	})
}

// parseKey reads a .credentials_rsaparams document. The CRT values in the
// file are ignored and recomputed from the primes; Validate checks the rest.
func parseKey(data []byte) (*rsa.PrivateKey, error) {
	var p rsaParams
	if err := json.Unmarshal(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), &p); err != nil {
		return nil, fmt.Errorf("not an RSA parameters document: %w", err)
	}
	if p.ContainerName != "" {
		return nil, fmt.Errorf("the key lives in the Windows key container %q, not in the file", p.ContainerName)
	}
	for name, v := range map[string][]byte{"modulus": p.Modulus, "exponent": p.Exponent, "d": p.D, "p": p.P, "q": p.Q} {
		if len(v) == 0 {
			return nil, fmt.Errorf("member %q is missing", name)
		}
	}
	e := new(big.Int).SetBytes(p.Exponent)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, errors.New("the exponent is out of range")
	}
	key := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: new(big.Int).SetBytes(p.Modulus), E: int(e.Int64())},
		D:         new(big.Int).SetBytes(p.D),
		Primes:    []*big.Int{new(big.Int).SetBytes(p.P), new(big.Int).SetBytes(p.Q)},
	}
	if key.N.BitLen() < keyBits {
		return nil, fmt.Errorf("the key has %d bits; at least %d are required", key.N.BitLen(), keyBits)
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("the key is inconsistent: %w", err)
	}
	key.Precompute()
	return key, nil
}

// LoadOrCreateKey returns the agent's RSA key from dir/.credentials_rsaparams,
// creating a 2048-bit key (file mode 0600) when there is none. An existing key
// is reused, as the official agent does, so re-registering (--replace) keeps
// it.
func LoadOrCreateKey(dir string) (key *rsa.PrivateKey, created bool, err error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := parseKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("read agent key %s: %w (remove the agent's state to register anew)", path, err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, false, fmt.Errorf("restrict agent key %s to its owner: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("read agent key %s: %w", path, err)
	}
	key, err = rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return nil, false, fmt.Errorf("create agent key: %w", err)
	}
	data, err = encodeKey(key)
	if err != nil {
		return nil, false, err
	}
	if err := writePrivate(dir, KeyFile, data); err != nil {
		return nil, false, fmt.Errorf("save agent key: %w", err)
	}
	return key, true, nil
}

// PublicKey is the key as registration sends it: big-endian exponent and
// modulus without leading zeros (65537 → "AQAB").
func PublicKey(key *rsa.PrivateKey) taskagent.TaskAgentPublicKey {
	e := big.NewInt(int64(key.E)).Bytes()
	n := key.N.Bytes()
	return taskagent.TaskAgentPublicKey{Exponent: &e, Modulus: &n}
}

// CredentialData is what the agent needs to get its own tokens: the values
// agent.authorization returned at registration.
type CredentialData struct {
	ClientID         string `json:"clientId"`
	AuthorizationURL string `json:"authorizationUrl"` // the JWT audience
	// OAuthEndpointURL is where tokens are requested: AuthorizationURL, except
	// on-premises where the listener rewrites its scheme, host and port to the
	// server URL's (ConfigurationManager.cs, UpdateCredentialData).
	OAuthEndpointURL string `json:"oauthEndpointUrl,omitempty"`
}

// TokenEndpoint is OAuthEndpointURL, or AuthorizationURL for files written
// before the rewrite existed.
func (d CredentialData) TokenEndpoint() string {
	if d.OAuthEndpointURL != "" {
		return d.OAuthEndpointURL
	}
	return d.AuthorizationURL
}

// credentialFile is the official .credentials document (CredentialData.cs):
// {"scheme":"OAuth","data":{…}}.
type credentialFile struct {
	Scheme string            `json:"scheme"`
	Data   map[string]string `json:"data"`
}

// SaveCredential writes dir/.credentials (mode 0600).
func SaveCredential(dir string, d CredentialData) error {
	if d.ClientID == "" || d.AuthorizationURL == "" {
		return errors.New("save agent credential: the registration returned no clientId or authorizationUrl (the server does not support agent OAuth)")
	}
	data := map[string]string{"clientId": d.ClientID, "authorizationUrl": d.AuthorizationURL}
	if d.OAuthEndpointURL != "" {
		data["oauthEndpointUrl"] = d.OAuthEndpointURL
	}
	doc, err := json.Marshal(credentialFile{Scheme: "OAuth", Data: data})
	if err != nil {
		return err
	}
	if err := writePrivate(dir, CredentialFile, doc); err != nil {
		return fmt.Errorf("save agent credential: %w", err)
	}
	return nil
}

// LoadCredential reads dir/.credentials. A missing file is reported with an
// error matching fs.ErrNotExist: the agent is not registered.
func LoadCredential(dir string) (CredentialData, error) {
	path := filepath.Join(dir, CredentialFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return CredentialData{}, fmt.Errorf("read agent credential %s: %w", path, err)
	}
	d, err := parseCredential(raw)
	if err != nil {
		return CredentialData{}, fmt.Errorf("read agent credential %s: %w", path, err)
	}
	return d, nil
}

func parseCredential(raw []byte) (CredentialData, error) {
	var f struct {
		Scheme string                     `json:"scheme"`
		Data   map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")), &f); err != nil {
		return CredentialData{}, fmt.Errorf("not a credential document: %w", err)
	}
	if !strings.EqualFold(f.Scheme, "OAuth") {
		return CredentialData{}, fmt.Errorf("scheme %q is not supported; goagent only keeps the agent's own OAuth credential (register again)", f.Scheme)
	}
	var d CredentialData
	for k, v := range f.Data {
		var s string
		if json.Unmarshal(v, &s) != nil {
			continue
		}
		switch strings.ToLower(k) {
		case "clientid":
			d.ClientID = s
		case "authorizationurl":
			d.AuthorizationURL = s
		case "oauthendpointurl":
			d.OAuthEndpointURL = s
		}
	}
	if d.ClientID == "" || d.AuthorizationURL == "" {
		return CredentialData{}, errors.New("clientId or authorizationUrl is missing")
	}
	return d, nil
}

// Remove deletes the key and the credential from dir. Missing files are fine.
func Remove(dir string) error {
	var errs []error
	for _, name := range []string{CredentialFile, KeyFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove agent credential from %s: %w", dir, err)
	}
	return nil
}

// writePrivate replaces dir/name atomically with a 0600 file: a crash leaves
// the old file or the new one, never half a key.
func writePrivate(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

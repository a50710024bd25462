package listener

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

// sessionKey decrypts the session's AES key (listener.md §4.5): RSA-OAEP
// with SHA-1 (MGF1-SHA1, empty label) when encrypted, else the raw value. An
// empty key means messages arrive in plain text.
func sessionKey(key *rsa.PrivateKey, sk *taskagent.TaskAgentSessionKey) ([]byte, error) {
	if sk == nil || sk.Value == nil || len(*sk.Value) == 0 {
		return nil, nil
	}
	if sk.Encrypted == nil || !*sk.Encrypted {
		return *sk.Value, nil
	}
	k, err := rsa.DecryptOAEP(sha1.New(), rand.Reader, key, *sk.Value, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt the session key with the agent's private key (RSA-OAEP-SHA1): %w — the key on disk does not match the one registered; re-register the agent", err)
	}
	switch len(k) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("session key has %d bytes; want an AES key of 16, 24 or 32", len(k))
	}
	return k, nil
}

// decryptBody returns a message body as JSON text. With no session key or
// no IV the body is already plain text.
func decryptBody(aesKey []byte, m *taskagent.TaskAgentMessage) ([]byte, error) {
	if m.Body == nil {
		return nil, errors.New("message has no body")
	}
	if len(aesKey) == 0 || m.Iv == nil || len(*m.Iv) == 0 {
		return trimBOM([]byte(*m.Body)), nil
	}
	iv := *m.Iv
	ct, err := base64.StdEncoding.DecodeString(*m.Body)
	if err != nil {
		return nil, fmt.Errorf("message body is not base64: %w", err)
	}
	block, err := aes.NewCipher(aesKey)
	if err != nil {
		return nil, err
	}
	if len(iv) != block.BlockSize() {
		return nil, fmt.Errorf("message IV has %d bytes, want %d", len(iv), block.BlockSize())
	}
	if len(ct) == 0 || len(ct)%block.BlockSize() != 0 {
		return nil, fmt.Errorf("message body has %d bytes, not a whole number of AES blocks", len(ct))
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n == 0 || n > block.BlockSize() || n > len(pt) || !bytes.Equal(pt[len(pt)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errors.New("message body has invalid PKCS#7 padding (wrong session key?)")
	}
	return trimBOM(pt[:len(pt)-n]), nil
}

func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF}) }

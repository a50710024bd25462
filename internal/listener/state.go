package listener

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Settings is the agent's registration, kept in <state>/.agent in the
// official AgentSettings shape (camelCase, ConfigurationStore.cs) so the
// files are recognisable to anyone who knows the .NET agent.
type Settings struct {
	AgentID    int    `json:"agentId"`
	AgentName  string `json:"agentName"`
	PoolID     int    `json:"poolId"`
	PoolName   string `json:"poolName"`
	ServerURL  string `json:"serverUrl"`
	WorkFolder string `json:"workFolder"`
	// Placeholder marks a registration that must outlive the process
	// (KEDA's template agent): nothing but `goagent remove` deletes it.
	Placeholder bool `json:"placeholder,omitempty"`
}

const settingsFile = ".agent"

// LoadSettings reads the state directory's registration; ok is false when
// the agent is not registered there.
func LoadSettings(dir string) (s Settings, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, settingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read agent settings: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("read agent settings %s: %w (delete the state directory to register again)", filepath.Join(dir, settingsFile), err)
	}
	return s, true, nil
}

// SaveSettings writes the registration, 0600, atomically.
func SaveSettings(dir string, s Settings) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(filepath.Join(dir, settingsFile), b)
}

// writePrivate writes a 0600 file in a 0700 directory, atomically.
func writePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/steps"
)

// Workspace layout (worker.md §3.1): _work/N/{s,a,b,TestResults}, where N is
// kept per collection and definition in SourceRootMapping as the official
// agent's TrackingManager does, so incremental builds find their sources.
type workspace struct {
	dirs   steps.Dirs
	number int
	tests  string
}

type mappings struct {
	LastBuildFolderNumber    int    `json:"lastBuildFolderNumber"`
	LastBuildFolderCreatedOn string `json:"lastBuildFolderCreatedOn"`
}

type trackingConfig struct {
	BuildDirectory       string `json:"agent_builddirectory"`
	ArtifactsDirectory   string `json:"build_artifactstagingdirectory"`
	TestResultsDirectory string `json:"common_testresultsdirectory"`
	BinariesDirectory    string `json:"build_binariesdirectory"`
	SourcesDirectory     string `json:"build_sourcesdirectory"`
	CollectionID         string `json:"collectionId"`
	CollectionURL        string `json:"collectionUrl,omitempty"`
	DefinitionID         string `json:"definitionId"`
	DefinitionName       string `json:"definitionName,omitempty"`
	FileFormatVersion    int    `json:"fileFormatVersion"`
	LastRunOn            string `json:"lastRunOn"`
	RepositoryType       string `json:"repositoryType,omitempty"`
	HashKey              string `json:"hashKey"`
	System               string `json:"system"`
}

// prepareWorkspace picks (or reuses) the build directory for this job's
// collection and definition, applies the clean option, and creates the
// directories. clean is one of the clean* options. hashInput identifies the repositories; a change moves the old
// folder to garbage collection and takes a new number, as the agent does when
// tracking configs are incompatible.
func prepareWorkspace(work, collectionID, definitionID, definitionName, repoType, hashInput, clean string, now time.Time) (*workspace, error) {
	root := filepath.Join(work, "SourceRootMapping")
	if collectionID == "" {
		collectionID = "00000000-0000-0000-0000-000000000000"
	}
	if definitionID == "" {
		definitionID = "0"
	}
	sum := sha256.Sum256([]byte(strings.ToLower(collectionID + "|" + definitionID + "|" + hashInput)))
	hash := hex.EncodeToString(sum[:])
	cfgPath := filepath.Join(root, sanitize(collectionID), sanitize(definitionID), "SourceFolder.json")

	var cfg trackingConfig
	number := 0
	if b, err := os.ReadFile(cfgPath); err == nil && json.Unmarshal(b, &cfg) == nil && cfg.HashKey == hash {
		if n, err := strconv.Atoi(cfg.BuildDirectory); err == nil && n > 0 {
			number = n
		}
	} else if err == nil && cfg.BuildDirectory != "" {
		// Incompatible: move the old tracking file aside for GC.
		gc := filepath.Join(root, "GC")
		_ = os.MkdirAll(gc, 0o755)
		_ = os.Rename(cfgPath, filepath.Join(gc, hash[:16]+".json"))
	}
	if number == 0 {
		var m mappings
		mp := filepath.Join(root, "Mappings.json")
		if b, err := os.ReadFile(mp); err == nil {
			_ = json.Unmarshal(b, &m)
		}
		m.LastBuildFolderNumber++
		// Never reuse a folder that exists without a tracking file.
		for exists(filepath.Join(work, strconv.Itoa(m.LastBuildFolderNumber))) {
			m.LastBuildFolderNumber++
		}
		m.LastBuildFolderCreatedOn = now.UTC().Format(time.RFC3339)
		number = m.LastBuildFolderNumber
		if err := writeJSON(mp, m); err != nil {
			return nil, fmt.Errorf("record build folder number in %s: %w", mp, err)
		}
	}
	n := strconv.Itoa(number)
	cfg = trackingConfig{
		BuildDirectory: n, ArtifactsDirectory: filepath.Join(n, "a"), TestResultsDirectory: filepath.Join(n, "TestResults"),
		BinariesDirectory: filepath.Join(n, "b"), SourcesDirectory: filepath.Join(n, "s"),
		CollectionID: collectionID, DefinitionID: definitionID, DefinitionName: definitionName,
		FileFormatVersion: 3, LastRunOn: now.UTC().Format(time.RFC3339), RepositoryType: repoType,
		HashKey: hash, System: "build",
	}
	if err := writeJSON(cfgPath, cfg); err != nil {
		return nil, fmt.Errorf("write tracking file %s: %w", cfgPath, err)
	}

	build := filepath.Join(work, n)
	ws := &workspace{number: number, tests: filepath.Join(build, "TestResults")}
	ws.dirs = steps.Dirs{
		Work:      work,
		Build:     build,
		Sources:   filepath.Join(build, "s"),
		Temp:      filepath.Join(work, "_temp"),
		Tools:     filepath.Join(work, "_tool"),
		Artifacts: filepath.Join(build, "a"),
		Binaries:  filepath.Join(build, "b"),
	}
	ws.dirs.DefaultWorking = ws.dirs.Sources

	switch clean {
	case cleanAll:
		if err := os.RemoveAll(build); err != nil {
			return nil, fmt.Errorf("clean build directory %s: %w", build, err)
		}
	case cleanSource:
		if err := os.RemoveAll(ws.dirs.Sources); err != nil {
			return nil, fmt.Errorf("clean sources directory %s: %w", ws.dirs.Sources, err)
		}
	case cleanBinary:
		if err := os.RemoveAll(ws.dirs.Binaries); err != nil {
			return nil, fmt.Errorf("clean binaries directory %s: %w", ws.dirs.Binaries, err)
		}
	}
	// a/ and TestResults/ are recreated empty for every job.
	for _, d := range []string{ws.dirs.Artifacts, ws.tests} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("clean %s: %w", d, err)
		}
	}
	for _, d := range []string{ws.dirs.Sources, ws.dirs.Artifacts, ws.dirs.Binaries, ws.tests, ws.dirs.Tools} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := emptyDir(ws.dirs.Temp); err != nil {
		return nil, err
	}
	return ws, nil
}

// emptyDir deletes a directory's contents, creating it if needed.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			// Files a step made read-only still go.
			_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, _ error) error {
				_ = os.Chmod(q, 0o700)
				return nil
			})
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("empty %s: %w", dir, err)
			}
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sanitize keeps ids from the message from naming paths outside root.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, s)
	if s == "." || s == ".." {
		return "_"
	}
	return s
}

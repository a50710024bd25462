package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecUsage covers what `goagent exec` refuses before running anything
// (exit status 2), and its help (0).
func TestExecUsage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yml")
	if err := os.WriteFile(file, []byte("steps:\n- checkout: none\n- script: echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOAGENT_TEST_SECRET_UNSET", "")
	os.Unsetenv("GOAGENT_TEST_SECRET_UNSET")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no file", []string{"exec"}, exitUsage, "no pipeline file"},
		{"two files", []string{"exec", file, file}, exitUsage, "one pipeline file at a time"},
		{"missing file", []string{"exec", filepath.Join(dir, "nope.yml")}, exitUsage, "nope.yml"},
		{"unknown flag", []string{"exec", file, "--frobnicate"}, exitUsage, "flag provided but not defined: -frobnicate"},
		{"bad --var", []string{"exec", file, "--var", "novalue"}, exitUsage, `--var "novalue": want NAME=VALUE`},
		{"bad --repo", []string{"exec", "--repo", "=x", file}, exitUsage, "--repo"},
		{"secret from a missing environment variable", []string{"exec", file, "--secret", "GOAGENT_TEST_SECRET_UNSET"}, exitUsage, "no environment variable GOAGENT_TEST_SECRET_UNSET"},
		{"work and pool-dir", []string{"exec", file, "--work", dir, "--pool-dir", dir}, exitUsage, "--work and --pool-dir exclude each other"},
		{"bad color", []string{"exec", file, "--color", "sometimes"}, exitUsage, `--color "sometimes"`},
		{"help", []string{"exec", "-h"}, exitOK, "usage: goagent exec FILE.yml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			all := stdout.String() + stderr.String()
			if code != tc.code || !strings.Contains(all, tc.want) {
				t.Fatalf("exit %d, want %d; output %q lacks %q", code, tc.code, all, tc.want)
			}
		})
	}
}

// TestExecSecretNeverEchoed: a malformed --secret is reported by name only.
func TestExecSecretNeverEchoed(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"exec", "--secret", "=hunter2-very-secret"}, &stdout, &stderr)
	if code != exitUsage || strings.Contains(stdout.String()+stderr.String(), "hunter2-very-secret") {
		t.Fatalf("exit %d, output %q", code, stdout.String()+stderr.String())
	}
}

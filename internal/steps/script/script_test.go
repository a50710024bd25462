package script_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/script"
	"github.com/goagent-dev/goagent/internal/steps/stepstest"
	"github.com/goagent-dev/goagent/internal/wire"
)

const banner = "========================== Starting Command Output ==========================="

var tempScript = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.(sh|ps1)$`)

func def(t *testing.T, name string) *steps.Definition {
	t.Helper()
	for _, d := range script.Definitions() {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no definition %s", name)
	return nil
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second) // hang guard
	t.Cleanup(cancel)
	return ctx
}

// fakeTool writes an executable named name into dir that records its
// arguments (NUL-separated), working directory and environment next to
// $FAKE_RECORD, prints fake-out, optionally $FAKE_STDERR to stderr, and
// exits with $FAKE_EXIT.
func fakeTool(t *testing.T, dir, name string) {
	t.Helper()
	const body = `#!/bin/sh
printf '%s\0' "$@" > "$FAKE_RECORD.args"
pwd > "$FAKE_RECORD.cwd"
env -0 > "$FAKE_RECORD.env"
echo fake-out
if [ -n "$FAKE_STDERR" ]; then printf '%s' "$FAKE_STDERR" >&2; fi
exit ${FAKE_EXIT:-0}
`
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

type record struct {
	args []string
	cwd  string
	env  []string
}

func readRecord(t *testing.T, base string) record {
	t.Helper()
	read := func(ext string) string {
		b, err := os.ReadFile(base + ext)
		if err != nil {
			t.Fatalf("fake tool did not run: %v", err)
		}
		return string(b)
	}
	split := func(s string) []string {
		s = strings.TrimSuffix(s, "\x00")
		if s == "" {
			return nil
		}
		return strings.Split(s, "\x00")
	}
	return record{args: split(read(".args")), cwd: strings.TrimSpace(read(".cwd")), env: split(read(".env"))}
}

// withFake puts a directory holding the named fake tools first on the
// step's PATH and returns the record base path.
func withFake(t *testing.T, h *stepstest.Harness, names ...string) (dir, rec string) {
	t.Helper()
	dir = t.TempDir()
	for _, n := range names {
		fakeTool(t, dir, n)
	}
	rec = filepath.Join(t.TempDir(), "rec")
	path, _ := lookup(h.Exec.Env, "PATH")
	h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "PATH", dir+":"+path)
	h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "FAKE_RECORD", rec)
	return dir, rec
}

func lookup(env []string, name string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// tempFiles lists the generated scripts in the job's temp directory.
func tempFiles(t *testing.T, h *stepstest.Harness) []string {
	t.Helper()
	ents, err := os.ReadDir(h.Exec.Dirs.Temp)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(h.Exec.Dirs.Temp, e.Name()))
	}
	return out
}

func onlyTempFile(t *testing.T, h *stepstest.Harness) (string, []byte) {
	t.Helper()
	files := tempFiles(t, h)
	if len(files) != 1 {
		t.Fatalf("temp dir holds %v, want one script", files)
	}
	if !tempScript.MatchString(filepath.Base(files[0])) {
		t.Fatalf("script name %q is not <uuidv4>.sh|.ps1", filepath.Base(files[0]))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return files[0], b
}

func TestDefinitions(t *testing.T) {
	type in struct {
		name, def string
		file      bool
	}
	want := map[string]struct {
		id     string
		major  int
		inputs []in
	}{
		"CmdLine": {wire.TaskCmdLine, 2, []in{
			{"script", "echo Write your commands here\n\necho Hello world\n", false},
			{"workingDirectory", "", true},
			{"failOnStderr", "false", false},
		}},
		"Bash": {wire.TaskBash, 3, []in{
			{"targetType", "filePath", false},
			{"filePath", "", true},
			{"arguments", "", false},
			{"script", "# Write your commands here\n\necho 'Hello world'\n", false},
			{"workingDirectory", "", true},
			{"failOnStderr", "false", false},
			{"bashEnvValue", "", false},
		}},
		"PowerShell": {wire.TaskPowerShell, 2, []in{
			{"targetType", "filePath", false},
			{"filePath", "", true},
			{"arguments", "", false},
			{"script", "# Write your PowerShell commands here.\n\nWrite-Host \"Hello World\"\n", false},
			{"errorActionPreference", "stop", false},
			{"warningPreference", "default", false},
			{"informationPreference", "default", false},
			{"verbosePreference", "default", false},
			{"debugPreference", "default", false},
			{"progressPreference", "silentlyContinue", false},
			{"failOnStderr", "false", false},
			{"showWarnings", "false", false},
			{"ignoreLASTEXITCODE", "false", false},
			{"pwsh", "false", false},
			{"workingDirectory", "", true},
			{"runScriptInSeparateScope", "false", false},
		}},
	}
	defs := script.Definitions()
	if len(defs) != len(want) {
		t.Fatalf("%d definitions, want %d", len(defs), len(want))
	}
	reg := steps.NewRegistry(defs...)
	for _, d := range defs {
		w, ok := want[d.Name]
		if !ok {
			t.Fatalf("unexpected definition %s", d.Name)
		}
		if d.ID != w.id || d.Major != w.major || d.Run == nil {
			t.Errorf("%s: id %s major %d", d.Name, d.ID, d.Major)
		}
		var got []in
		for _, i := range d.Inputs {
			got = append(got, in{i.Name, i.Default, i.FilePath})
		}
		if !slices.Equal(got, w.inputs) {
			t.Errorf("%s inputs:\n got %+v\nwant %+v", d.Name, got, w.inputs)
		}
		found, err := reg.Lookup(wire.TaskReference{ID: strings.ToUpper(w.id), Version: fmt.Sprintf("%d.279.1", w.major)})
		if err != nil || found != d {
			t.Errorf("%s: registry lookup: %v", d.Name, err)
		}
	}
}

func TestCmdLineRunsBashWithTheOfficialFlags(t *testing.T) {
	h := stepstest.New(t, def(t, "CmdLine"), map[string]string{"script": "echo one-liner"})
	t.Setenv("GOAGENT_TEST_AGENT_ONLY", "leak") // in the agent's env, not the step's
	h.Exec.Env = append(h.Exec.Env, "STEP_VAR=from step")
	dir, rec := withFake(t, h, "bash")

	if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
		t.Fatalf("run: %v", err)
	}
	file, content := onlyTempFile(t, h)
	if string(content) != "echo one-liner" {
		t.Errorf("script file holds %q", content)
	}
	r := readRecord(t, rec)
	if want := []string{"--noprofile", "--norc", file}; !slices.Equal(r.args, want) {
		t.Errorf("bash argv %q, want %q", r.args, want)
	}
	if r.cwd != h.Exec.Dirs.Sources {
		t.Errorf("cwd %s, want the sources directory %s", r.cwd, h.Exec.Dirs.Sources)
	}
	if !slices.Contains(r.env, "STEP_VAR=from step") || !slices.Contains(r.env, "TF_BUILD=True") {
		t.Errorf("step environment not passed: %q", r.env)
	}
	for _, kv := range r.env {
		if strings.HasPrefix(kv, "GOAGENT_TEST_AGENT_ONLY=") {
			t.Errorf("the agent's own environment leaked into the step: %s", kv)
		}
	}
	wantLog := []stepstest.Line{
		{Kind: "info", Text: "Generating script."},
		{Kind: "info", Text: "Script contents:"},
		{Kind: "info", Text: "echo one-liner"},
		{Kind: "info", Text: banner},
		{Kind: "info", Text: "[command]" + filepath.Join(dir, "bash") + " --noprofile --norc " + file},
	}
	if got := h.Console.Lines(); !slices.Equal(got, wantLog) {
		t.Errorf("console:\n got %q\nwant %q", got, wantLog)
	}
	// The toolrunner ends the output with an EOL of its own.
	if got := h.Stdout.String(); got != "fake-out\n\n" {
		t.Errorf("stdout %q", got)
	}
}

func TestCmdLineScriptContentsLine(t *testing.T) {
	for _, tc := range []struct {
		script string
		shown  bool
	}{
		{"echo a", true},
		{"echo a\necho b", false},
		{"echo a\n", false},
		{"echo ##vso[task.setvariable variable=x]1", false},
		{"echo ##VsO[task.debug]x", false},
		{"echo ##[warning]not a command", true},
		{"", true},
	} {
		h := stepstest.New(t, def(t, "CmdLine"), map[string]string{"script": tc.script})
		withFake(t, h, "bash")
		if err := def(t, "CmdLine").Run(testCtx(t), h.Exec); err != nil {
			t.Fatalf("%q: %v", tc.script, err)
		}
		_, content := onlyTempFile(t, h)
		if string(content) != tc.script {
			t.Errorf("%q: file holds %q (must be verbatim, no BOM)", tc.script, content)
		}
		info := h.Console.Of("info")
		shown := slices.Contains(info, "Script contents:")
		if shown != tc.shown {
			t.Errorf("%q: Script contents shown=%v, want %v", tc.script, shown, tc.shown)
		}
		if shown && info[2] != tc.script {
			t.Errorf("%q: script line %q", tc.script, info[2])
		}
	}
}

func TestCmdLineExistingPathIsExecuted(t *testing.T) {
	h := stepstest.New(t, def(t, "CmdLine"), nil)
	if err := os.WriteFile(filepath.Join(h.Exec.Dirs.Sources, "build.sh"), []byte("#!/bin/sh\necho built \"$0\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Relative to System.DefaultWorkingDirectory, like fs.existsSync in the
	// task's process; the file runs through bash's exec.
	h.Exec.Inputs["script"] = "build.sh"
	h.Exec.Inputs["workingDirectory"] = h.Exec.Dirs.Sources
	// As in the official task, "exec build.sh" then searches PATH (bash's
	// exec of a name without a slash), so the step fails with 127.
	err := def(t, "CmdLine").Run(testCtx(t), h.Exec)
	if err == nil || err.Error() != "Bash exited with code '127'." {
		t.Errorf("run: %v", err)
	}
	_, content := onlyTempFile(t, h)
	if string(content) != "exec build.sh" {
		t.Errorf("file holds %q, want %q", content, "exec build.sh")
	}
	if strings.Contains(h.Stdout.String(), "built") {
		t.Errorf("exec ran build.sh from the current directory")
	}

	h2 := stepstest.New(t, def(t, "CmdLine"), nil)
	abs := filepath.Join(h2.Exec.Dirs.Sources, "run.sh")
	if err := os.WriteFile(abs, []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h2.Exec.Inputs["script"] = abs
	if err := def(t, "CmdLine").Run(testCtx(t), h2.Exec); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, c := onlyTempFile(t, h2); string(c) != "exec "+abs {
		t.Errorf("file holds %q", c)
	}
	if h2.Stdout.String() != "ran\n\n" {
		t.Errorf("stdout %q", h2.Stdout.String())
	}
}

func TestWorkingDirectory(t *testing.T) {
	for _, name := range []string{"CmdLine", "Bash", "PowerShell"} {
		t.Run(name+"/missing", func(t *testing.T) {
			missing := filepath.Join(t.TempDir(), "nope")
			h := stepstest.New(t, def(t, name), map[string]string{"workingDirectory": missing, "targetType": "inline"})
			withFake(t, h, "bash", "pwsh")
			err := def(t, name).Run(testCtx(t), h.Exec)
			if err == nil || err.Error() != "Not found workingDirectory: "+missing {
				t.Fatalf("error %v", err)
			}
			if len(h.Console.Lines()) != 0 || len(tempFiles(t, h)) != 0 {
				t.Errorf("the task went on after the failed check: %q", h.Console.Lines())
			}
		})
		t.Run(name+"/explicit", func(t *testing.T) {
			wd := filepath.Join(t.TempDir(), "with space")
			if err := os.Mkdir(wd, 0o755); err != nil {
				t.Fatal(err)
			}
			h := stepstest.New(t, def(t, name), map[string]string{"workingDirectory": wd, "targetType": "inline"})
			_, rec := withFake(t, h, "bash", "pwsh")
			if err := def(t, name).Run(testCtx(t), h.Exec); err != nil {
				t.Fatal(err)
			}
			if r := readRecord(t, rec); r.cwd != wd {
				t.Errorf("cwd %q, want %q", r.cwd, wd)
			}
		})
	}
}

func TestBashInlineAndFilePathInvocation(t *testing.T) {
	t.Run("inline", func(t *testing.T) {
		h := stepstest.New(t, def(t, "Bash"), map[string]string{"targetType": "INLINE", "script": "echo x"})
		dir, rec := withFake(t, h, "bash")
		if err := def(t, "Bash").Run(testCtx(t), h.Exec); err != nil {
			t.Fatal(err)
		}
		file, content := onlyTempFile(t, h)
		if string(content) != "echo x" {
			t.Errorf("content %q", content)
		}
		if r := readRecord(t, rec); !slices.Equal(r.args, []string{file}) {
			t.Errorf("argv %q: Bash@3 runs plain `bash <file>`", r.args)
		}
		want := []string{"Generating script.", "Script contents:", "echo x", banner, "[command]" + filepath.Join(dir, "bash") + " " + file}
		if got := h.Console.Of("info"); !slices.Equal(got, want) {
			t.Errorf("console %q\nwant %q", got, want)
		}
	})
	t.Run("filePath", func(t *testing.T) {
		h := stepstest.New(t, def(t, "Bash"), map[string]string{"filePath": "scripts/it's.sh", "arguments": "a 'b c'  "})
		if err := os.MkdirAll(filepath.Join(h.Exec.Dirs.Sources, "scripts"), 0o755); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(h.Exec.Dirs.Sources, "scripts", "it's.sh")
		if err := os.WriteFile(target, []byte("echo hi\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		withFake(t, h, "bash")
		if err := def(t, "Bash").Run(testCtx(t), h.Exec); err != nil {
			t.Fatal(err)
		}
		_, content := onlyTempFile(t, h)
		quoted := "'" + strings.ReplaceAll(target, "'", `'\''`) + "'"
		want := "exec bash " + quoted + " a 'b c'"
		if string(content) != want {
			t.Errorf("content %q, want %q", content, want)
		}
		info := h.Console.Of("info")
		if !slices.Equal(info[:3], []string{"Generating script.", "Formatted command: " + want, banner}) {
			t.Errorf("console %q", info)
		}
	})
	t.Run("oldSourceBehavior", func(t *testing.T) {
		h := stepstest.New(t, def(t, "Bash"), map[string]string{"filePath": "x.sh"})
		if err := os.WriteFile(filepath.Join(h.Exec.Dirs.Sources, "x.sh"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		h.Exec.Env = append(h.Exec.Env, "AZP_BASHV3_OLD_SOURCE_BEHAVIOR=1")
		withFake(t, h, "bash")
		if err := def(t, "Bash").Run(testCtx(t), h.Exec); err != nil {
			t.Fatal(err)
		}
		if _, c := onlyTempFile(t, h); string(c) != ". '"+filepath.Join(h.Exec.Dirs.Sources, "x.sh")+"'" {
			t.Errorf("content %q", c)
		}
	})
}

func TestBashFilePathErrors(t *testing.T) {
	h := stepstest.New(t, def(t, "Bash"), map[string]string{"filePath": "missing.sh"})
	withFake(t, h, "bash")
	err := def(t, "Bash").Run(testCtx(t), h.Exec)
	missing := filepath.Join(h.Exec.Dirs.Sources, "missing.sh")
	if err == nil || err.Error() != "ENOENT: no such file or directory, stat '"+missing+"'" {
		t.Errorf("missing file: %v", err)
	}
	// The default (empty) filePath is rooted to the sources directory: a directory.
	h = stepstest.New(t, def(t, "Bash"), nil)
	withFake(t, h, "bash")
	err = def(t, "Bash").Run(testCtx(t), h.Exec)
	if err == nil || err.Error() != "Invalid file path '"+h.Exec.Dirs.Sources+"'." {
		t.Errorf("directory: %v", err)
	}
	if len(tempFiles(t, h)) != 0 {
		t.Errorf("a script was written")
	}
}

func TestBashEnvValue(t *testing.T) {
	h := stepstest.New(t, def(t, "Bash"), map[string]string{"targetType": "inline", "bashEnvValue": "/etc/custom-env"})
	h.Exec.Env = append(h.Exec.Env, "BASH_ENV=/etc/old-env")
	_, rec := withFake(t, h, "bash")
	if err := def(t, "Bash").Run(testCtx(t), h.Exec); err != nil {
		t.Fatal(err)
	}
	r := readRecord(t, rec)
	if !slices.Contains(r.env, "BASH_ENV=/etc/custom-env") || slices.Contains(r.env, "BASH_ENV=/etc/old-env") {
		t.Errorf("BASH_ENV not overridden: %q", r.env)
	}
	notice := "The BASH_ENV environment variable has already been set to a '/etc/old-env', the task will override it with '/etc/custom-env'"
	if info := h.Console.Of("info"); len(info) == 0 || info[0] != notice {
		t.Errorf("console %q", info)
	}
	if d := h.Console.Of("debug"); !slices.Contains(d, "The BASH_ENV environment variable was set to /etc/custom-env") {
		t.Errorf("debug %q", d)
	}
	if old, _ := lookup(h.Exec.Env, "BASH_ENV"); old != "/etc/old-env" {
		t.Errorf("the step's Env was modified: %s", old)
	}
}

func TestBashArgsSanitizer(t *testing.T) {
	for _, tc := range []struct {
		flag    string
		args    string
		err     bool
		warning bool
	}{
		{"", "a; rm -rf /", false, false},
		{"AZP_75787_ENABLE_NEW_LOGIC=true", "a; rm -rf /", true, false},
		{"AZP_75787_ENABLE_NEW_LOGIC=true", `a\; b`, false, false},
		{"AZP_75787_ENABLE_NEW_LOGIC=true", "--name=value $HOME", false, false},
		{"AZP_75787_ENABLE_NEW_LOGIC=TRUE", "$INJECT", true, false},
		{"AZP_75787_ENABLE_NEW_LOGIC_LOG=true", "a | b", false, true},
		{"AZP_75787_ENABLE_COLLECT=true", "a | b", false, false},
	} {
		h := stepstest.New(t, def(t, "Bash"), map[string]string{"filePath": "x.sh", "arguments": tc.args})
		if err := os.WriteFile(filepath.Join(h.Exec.Dirs.Sources, "x.sh"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		h.Exec.Env = append(h.Exec.Env, "INJECT=x;y", "HOME=/home/u")
		if tc.flag != "" {
			h.Exec.Env = append(h.Exec.Env, tc.flag)
		}
		withFake(t, h, "bash")
		err := def(t, "Bash").Run(testCtx(t), h.Exec)
		const msg = `Detected characters in arguments that may not be executed correctly by the shell. Please escape special characters using backslash (\). More information is available here: https://aka.ms/ado/75787`
		if tc.err {
			if err == nil || err.Error() != msg {
				t.Errorf("%s %q: error %v", tc.flag, tc.args, err)
			}
			if len(tempFiles(t, h)) != 0 {
				t.Errorf("%s %q: script written despite the error", tc.flag, tc.args)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", tc.flag, tc.args, err)
		}
		if w := h.Console.Of("warning"); tc.warning != slices.Equal(w, []string{msg}) {
			t.Errorf("%s %q: warnings %q", tc.flag, tc.args, w)
		}
	}
}

func TestFailOnStderrTruncation(t *testing.T) {
	h := stepstest.New(t, def(t, "CmdLine"), map[string]string{"failOnStderr": "true"})
	// Twelve separate writes, one of them longer than 1000 bytes.
	long := strings.Repeat("x", 1500)
	h.Exec.Inputs["script"] = "echo " + long + " >&2; sleep 0.01; for i in 1 2 3 4 5 6 7 8 9 10 11; do echo e$i >&2; sleep 0.01; done"
	err := def(t, "CmdLine").Run(testCtx(t), h.Exec)
	if err == nil || err.Error() != "Bash wrote one or more lines to the standard error stream." {
		t.Fatalf("error %v", err)
	}
	errs := h.Console.Of("error")
	if len(errs) < 2 || len(errs) > 11 {
		t.Fatalf("errors %q", errs)
	}
	if errs[0] != strings.Repeat("x", 1000)+"<truncated>" {
		t.Errorf("first chunk %q", errs[0][:20])
	}
	if n := len(h.Stderr.Writes()); n > 10 && errs[len(errs)-1] != "Additional writes to stderr truncated" {
		t.Errorf("%d writes, last issue %q", n, errs[len(errs)-1])
	}
	// The child's stderr reaches the step's stderr unabridged.
	if !strings.Contains(h.Stderr.String(), long) || !strings.Contains(h.Stderr.String(), "e11\n") {
		t.Errorf("stderr lost data")
	}
}

func TestStartFailure(t *testing.T) {
	h := stepstest.New(t, def(t, "CmdLine"), map[string]string{"script": "echo x"})
	wd := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(wd, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.Exec.Inputs["workingDirectory"] = wd // exists, but is no directory
	err := def(t, "CmdLine").Run(testCtx(t), h.Exec)
	if err == nil || !strings.HasPrefix(err.Error(), "There was an error when attempting to execute the process '") ||
		!strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("error %v", err)
	}
}

func TestMissingTempDirectory(t *testing.T) {
	h := stepstest.New(t, def(t, "CmdLine"), map[string]string{"script": "echo x"})
	if err := os.RemoveAll(h.Exec.Dirs.Temp); err != nil {
		t.Fatal(err)
	}
	err := def(t, "CmdLine").Run(testCtx(t), h.Exec)
	want := "Not found " + h.Exec.Dirs.Temp + " (agent.tempDirectory): " + h.Exec.Dirs.Temp
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}

// isCanceled reports an error that carries the context's cancellation.
func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

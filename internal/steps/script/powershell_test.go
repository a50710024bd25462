package script_test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/steps/stepstest"
)

const psTrailer = "if (!(Test-Path -LiteralPath variable:LASTEXITCODE)) {\n" +
	"    Write-Host '##vso[task.debug]$LASTEXITCODE is not set.'\n" +
	"} else {\n" +
	"    Write-Host ('##vso[task.debug]$LASTEXITCODE: {0}' -f $LASTEXITCODE)\n" +
	"    exit $LASTEXITCODE\n" +
	"}"

func TestPowerShellScriptGeneration(t *testing.T) {
	const bom = "\uFEFF"
	for _, tc := range []struct {
		name   string
		inputs map[string]string
		file   string // created under the sources directory
		want   string // SRC = the sources directory
	}{
		{name: "inline defaults",
			inputs: map[string]string{"targetType": "inline", "script": "Write-Host hi"},
			want:   bom + "$ErrorActionPreference = 'stop'\n$ProgressPreference = 'silentlyContinue'\nWrite-Host hi\n" + psTrailer},
		{name: "all preferences, values as given",
			inputs: map[string]string{"targetType": "InLine", "script": "a\nb", "errorActionPreference": "Continue",
				"warningPreference": "SILENTLYCONTINUE", "informationPreference": "stop", "verbosePreference": "continue",
				"debugPreference": "Stop", "progressPreference": "DEFAULT"},
			want: bom + "$ErrorActionPreference = 'Continue'\n$WarningPreference = 'SILENTLYCONTINUE'\n$InformationPreference = 'stop'\n" +
				"$VerbosePreference = 'continue'\n$DebugPreference = 'Stop'\na\nb\n" + psTrailer},
		{name: "empty preferences take the task's fallbacks",
			inputs: map[string]string{"targetType": "inline", "script": "x", "errorActionPreference": "", "progressPreference": ""},
			want:   bom + "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\nx\n" + psTrailer},
		{name: "ignoreLASTEXITCODE",
			inputs: map[string]string{"targetType": "inline", "script": "x", "ignoreLASTEXITCODE": "true", "errorActionPreference": "default", "progressPreference": "default"},
			want:   bom + "x"},
		{name: "filePath with quote and arguments",
			inputs: map[string]string{"filePath": "dir/it's.PS1", "arguments": " -Name 'v' ", "ignoreLASTEXITCODE": "True"},
			file:   "dir/it's.PS1",
			want:   bom + "$ErrorActionPreference = 'stop'\n$ProgressPreference = 'silentlyContinue'\n. 'SRC/dir/it''s.PS1'  -Name 'v'"}, // only the whole line is trimmed
		{name: "showWarnings",
			inputs: map[string]string{"targetType": "inline", "script": "Write-Warning w", "showWarnings": "true", "ignoreLASTEXITCODE": "true", "errorActionPreference": "default", "progressPreference": "default"},
			want: bom + "\n" +
				"                $warnings = New-Object System.Collections.ObjectModel.ObservableCollection[System.Management.Automation.WarningRecord];\n" +
				"                Register-ObjectEvent -InputObject $warnings -EventName CollectionChanged -Action {\n" +
				"                    if($Event.SourceEventArgs.Action -like \"Add\"){\n" +
				"                        $Event.SourceEventArgs.NewItems | ForEach-Object {\n" +
				"                            Write-Host \"##vso[task.logissue type=warning;]$_\";\n" +
				"                        }\n" +
				"                    }\n" +
				"                };\n" +
				"                Invoke-Command {Write-Warning w} -WarningVariable +warnings;\n" +
				"            "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := stepstest.New(t, def(t, "PowerShell"), tc.inputs)
			if tc.file != "" {
				write(t, filepath.Join(h.Exec.Dirs.Sources, tc.file), "", 0o644)
			}
			_, rec := withFake(t, h, "pwsh")
			if err := def(t, "PowerShell").Run(testCtx(t), h.Exec); err != nil {
				t.Fatalf("run: %v", err)
			}
			file, content := onlyTempFile(t, h)
			if !strings.HasSuffix(file, ".ps1") {
				t.Errorf("script %s", file)
			}
			want := strings.ReplaceAll(tc.want, "SRC", h.Exec.Dirs.Sources)
			if string(content) != want {
				t.Errorf("script:\n got %q\nwant %q", content, want)
			}
			r := readRecord(t, rec)
			wantArgs := []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-Command", ". '" + file + "'"}
			if !slices.Equal(r.args, wantArgs) {
				t.Errorf("argv %q, want %q", r.args, wantArgs)
			}
		})
	}
}

func TestPowerShellInvocation(t *testing.T) {
	h := stepstest.New(t, def(t, "PowerShell"), map[string]string{"targetType": "inline", "script": "Write-Host 1\nWrite-Host 100%", "runScriptInSeparateScope": "true"})
	dir, rec := withFake(t, h, "powershell") // no pwsh: powershell is next
	if err := def(t, "PowerShell").Run(testCtx(t), h.Exec); err != nil {
		t.Fatal(err)
	}
	file, _ := onlyTempFile(t, h)
	r := readRecord(t, rec)
	if want := []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "& '" + file + "'"}; !slices.Equal(r.args, want) {
		t.Errorf("argv %q, want %q", r.args, want)
	}
	if r.cwd != h.Exec.Dirs.Sources {
		t.Errorf("cwd %s", r.cwd)
	}
	want := []string{"Generating script.", banner, "[command]" + filepath.Join(dir, "powershell") + " -NoLogo -NoProfile -NonInteractive -Command & '" + file + "'"}
	if got := h.Console.Of("info"); !slices.Equal(got, want) {
		t.Errorf("console %q\nwant %q", got, want)
	}
	// The formatted command goes out as a task.logdetail logging command.
	detail := regexp.MustCompile(`^##vso\[task\.logdetail id=[0-9a-f-]{36};type=command;name=command;\]Formatted command: Write-Host 1%0AWrite-Host 100%AZP25\nfake-out\n\n$`)
	if !detail.MatchString(h.Stdout.String()) {
		t.Errorf("stdout %q", h.Stdout.String())
	}

	// pwsh wins over powershell when both exist.
	h = stepstest.New(t, def(t, "PowerShell"), map[string]string{"targetType": "inline", "script": "x"})
	dir, rec = withFake(t, h, "powershell", "pwsh")
	if err := def(t, "PowerShell").Run(testCtx(t), h.Exec); err != nil {
		t.Fatal(err)
	}
	readRecord(t, rec)
	if info := h.Console.Of("info"); !strings.HasPrefix(info[len(info)-1], "[command]"+filepath.Join(dir, "pwsh")+" ") {
		t.Errorf("console %q", info)
	}
}

func TestPowerShellExitCodeAndStderr(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		fail   string
		err    string
		issues []string
	}{
		{"exit code", []string{"FAKE_EXIT=1"}, "false", "PowerShell exited with code '1'.", nil},
		{"stderr ignored", []string{"FAKE_STDERR=oops"}, "false", "", nil},
		{"failOnStderr", []string{"FAKE_STDERR=oops"}, "true", "PowerShell wrote one or more lines to the standard error stream.", []string{"oops"}},
		{"both", []string{"FAKE_STDERR=oops", "FAKE_EXIT=3"}, "true", "PowerShell exited with code '3'.", []string{"PowerShell wrote one or more lines to the standard error stream.", "oops"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := stepstest.New(t, def(t, "PowerShell"), map[string]string{"targetType": "inline", "script": "x", "failOnStderr": tc.fail})
			withFake(t, h, "pwsh")
			h.Exec.Env = append(h.Exec.Env, tc.env...)
			err := def(t, "PowerShell").Run(testCtx(t), h.Exec)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || err.Error() != tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
			if got := h.Console.Of("error"); !slices.Equal(got, tc.issues) {
				t.Errorf("issues %q, want %q", got, tc.issues)
			}
		})
	}
}

func TestPowerShellInputErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inputs map[string]string
		file   string
		want   string
	}{
		{"preference", map[string]string{"targetType": "inline", "warningPreference": "loud"}, "",
			"Invalid action preference for warningPreference: 'loud'. The value must be one of: Default, Stop, Continue, SilentlyContinue"},
		{"target type", map[string]string{"targetType": "file"}, "",
			"Invalid target type 'file'. The value must be one of: 'filepath' or 'inline'"},
		{"not ps1", map[string]string{"filePath": "x.sh"}, "x.sh", "Invalid file path 'SRC/x.sh'. A path to a .ps1 file is required."},
		{"directory", map[string]string{}, "", "Invalid file path 'SRC'. A path to a .ps1 file is required."},
		{"missing", map[string]string{"filePath": "nope.ps1"}, "", "ENOENT: no such file or directory, stat 'SRC/nope.ps1'"},
		{"sanitizer", map[string]string{"filePath": "a.ps1", "arguments": "-X (Get-Secret)"}, "a.ps1",
			"Detected characters in arguments that may not be executed correctly by the shell. Please escape special characters using backtick (`). More information is available here: https://aka.ms/ado/75787"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := stepstest.New(t, def(t, "PowerShell"), tc.inputs)
			h.Exec.Env = append(h.Exec.Env, "AZP_75787_ENABLE_NEW_LOGIC=true")
			if tc.file != "" {
				write(t, filepath.Join(h.Exec.Dirs.Sources, tc.file), "", 0o644)
			}
			withFake(t, h, "pwsh")
			err := def(t, "PowerShell").Run(testCtx(t), h.Exec)
			want := strings.ReplaceAll(tc.want, "SRC", h.Exec.Dirs.Sources)
			if err == nil || err.Error() != want {
				t.Errorf("error %v\nwant %s", err, want)
			}
			if len(tempFiles(t, h)) != 0 {
				t.Errorf("a script was written")
			}
		})
	}
}

func TestPowerShellNotInstalled(t *testing.T) {
	h := stepstest.New(t, def(t, "PowerShell"), map[string]string{"targetType": "inline", "script": "x"})
	h.Exec.Env = stepstest.SetEnv(h.Exec.Env, "PATH", noShellPath(t))
	err := def(t, "PowerShell").Run(testCtx(t), h.Exec)
	if err == nil || !strings.HasPrefix(err.Error(), "PowerShell (pwsh) is not installed in this image: ") ||
		!strings.Contains(err.Error(), "install PowerShell in your image") {
		t.Fatalf("error %v", err)
	}
	// As in the task, the banner is out before the lookup fails.
	if info := h.Console.Of("info"); !slices.Equal(info, []string{"Generating script.", banner}) {
		t.Errorf("console %q", info)
	}
}

// A real PowerShell, when the machine has one.
func TestPowerShellReal(t *testing.T) {
	if _, err := exec.LookPath("pwsh"); err != nil {
		t.Skip("no pwsh on this machine; the fake-pwsh tests cover the invocation")
	}
	h := stepstest.New(t, def(t, "PowerShell"), map[string]string{"targetType": "inline", "script": "Write-Host \"hi $env:MY_VAR\"\n& sh -c 'exit 3'"})
	h.Exec.Env = append(h.Exec.Env, "MY_VAR=there")
	err := def(t, "PowerShell").Run(testCtx(t), h.Exec)
	if err == nil || err.Error() != "PowerShell exited with code '3'." {
		t.Errorf("error %v", err)
	}
	if !strings.Contains(h.Stdout.String(), "hi there\n") {
		t.Errorf("stdout %q", h.Stdout.String())
	}
}

package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	dfparser "github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"mvdan.cc/sh/v3/syntax"
)

// No Docker engine runs the tests, so the Dockerfile is checked statically
// with BuildKit's own parser: its stages, what each copies and runs, and the
// build command against the Makefile's.

const fallbackImport = "golang.org/x/crypto/x509roots/fallback"

// readDockerfile parses the Dockerfile as BuildKit does and fails on any
// parser or parse-time lint warning.
func readDockerfile(t *testing.T) []instructions.Stage {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := dfparser.Parse(f)
	if err != nil {
		t.Fatalf("parse the Dockerfile: %v", err)
	}
	var warnings []string
	for _, w := range res.Warnings {
		warnings = append(warnings, w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []dfparser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		warnings = append(warnings, fmt.Sprintf("line %d: %s: %s", line, rule, msg))
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("read the Dockerfile's instructions: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("the Dockerfile has warnings:\n%s", strings.Join(warnings, "\n"))
	}
	return stages
}

func stageNamed(t *testing.T, stages []instructions.Stage, name string) *instructions.Stage {
	t.Helper()
	for i := range stages {
		if stages[i].Name == name {
			return &stages[i]
		}
	}
	t.Fatalf("the Dockerfile has no stage named %q", name)
	return nil
}

// commands returns the stage's commands of type T.
func commands[T instructions.Command](s *instructions.Stage) []T {
	var out []T
	for _, c := range s.Commands {
		if x, ok := c.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// runtimeStage is what a final image stage sets up for goagent.
type runtimeStage struct {
	binary     string // where the binary is copied to
	entrypoint []string
	env        map[string]string
	workdir    string
}

// checkRuntimeStage checks what both images share: a non-root numeric user
// (the uid the manifests request), `goagent run --once` in exec form, the
// work directory, and the binary copied from the build stage.
func checkRuntimeStage(t *testing.T, s *instructions.Stage, built string) runtimeStage {
	t.Helper()
	where := "stage " + s.Name
	if s.Name == "" {
		where = "final stage"
	}
	rs := runtimeStage{env: map[string]string{}}
	users := commands[*instructions.UserCommand](s)
	if len(users) != 1 {
		t.Fatalf("%s: want one USER, got %d", where, len(users))
	}
	uid, gid, _ := strings.Cut(users[0].User, ":")
	if u, err := strconv.Atoi(uid); err != nil || u != imageUID || gid != strconv.Itoa(imageUID) {
		t.Errorf("%s: USER %s: want numeric %d:%d, so Kubernetes can verify runAsNonRoot", where, users[0].User, imageUID, imageUID)
	}
	eps := commands[*instructions.EntrypointCommand](s)
	if len(eps) != 1 {
		t.Fatalf("%s: want one ENTRYPOINT, got %d", where, len(eps))
	}
	if eps[0].PrependShell {
		t.Errorf("%s: ENTRYPOINT in shell form; use the exec (JSON) form so signals reach goagent", where)
	}
	rs.entrypoint = eps[0].CmdLine
	if len(rs.entrypoint) != 3 || rs.entrypoint[1] != "run" || rs.entrypoint[2] != "--once" {
		t.Errorf("%s: ENTRYPOINT %q, want [BINARY run --once]", where, rs.entrypoint)
	}
	for _, e := range commands[*instructions.EnvCommand](s) {
		for _, kv := range e.Env {
			rs.env[kv.Key] = kv.Value
		}
	}
	if wd := commands[*instructions.WorkdirCommand](s); len(wd) == 1 {
		rs.workdir = wd[0].Path
	}
	if rs.env["AZP_WORK"] != "/azp/_work" || rs.workdir != "/azp" {
		t.Errorf("%s: want WORKDIR /azp and AZP_WORK=/azp/_work, got %q and %q", where, rs.workdir, rs.env["AZP_WORK"])
	}
	for _, c := range commands[*instructions.CopyCommand](s) {
		if c.From == "build" && slices.Equal(c.SourcePaths, []string{built}) {
			rs.binary = c.DestPath
		}
	}
	if rs.binary == "" {
		t.Fatalf("%s: no COPY --from=build %s", where, built)
	}
	if len(rs.entrypoint) > 0 && rs.entrypoint[0] != rs.binary {
		t.Errorf("%s: ENTRYPOINT runs %s but the binary is copied to %s", where, rs.entrypoint[0], rs.binary)
	}
	return rs
}

func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t)
	build := stageNamed(t, stages, "build")

	// Builders without BuildKit (az acr build among them) reject RUN flags
	// and FROM --platform=$BUILDPLATFORM.
	for i := range stages {
		if stages[i].Platform != "" {
			t.Errorf("stage %q: FROM --platform needs BuildKit", stages[i].Name)
		}
		for _, r := range commands[*instructions.RunCommand](&stages[i]) {
			if len(r.FlagsUsed) > 0 || len(r.Files) > 0 {
				t.Errorf("stage %q: RUN with %v or a heredoc needs BuildKit", stages[i].Name, r.FlagsUsed)
			}
		}
	}

	// The Go image follows go.mod's language version.
	goVersion := goDirective(t)
	if !strings.HasSuffix(build.BaseName, "golang:"+goVersion) {
		t.Errorf("build stage FROM %s, want golang:%s (go.mod says go %s)", build.BaseName, goVersion, goVersion)
	}
	built := checkBuildCommand(t, build)

	t.Run("scratch", func(t *testing.T) {
		final := &stages[len(stages)-1]
		if final.BaseName != "scratch" {
			t.Fatalf("the last (default) stage is FROM %s, want scratch", final.BaseName)
		}
		for _, c := range final.Commands {
			switch c := c.(type) {
			case *instructions.CopyCommand:
				if c.From != "build" {
					t.Errorf("scratch stage: COPY %v takes files from outside the build stage", c.SourcePaths)
				}
				for _, src := range c.SourcePaths {
					if strings.Contains(src, "ssl") || strings.Contains(src, "ca-certificates") {
						t.Errorf("scratch stage copies %s: the CA roots are compiled into goagent", src)
					}
				}
			case *instructions.RunCommand:
				t.Errorf("scratch stage: RUN %v cannot run, there is no shell", c.CmdLine)
			}
		}
		rs := checkRuntimeStage(t, final, built)
		if rs.binary != "/goagent" {
			t.Errorf("scratch stage: the binary is at %s, want /goagent", rs.binary)
		}
		// The image has no CA bundle: goagent must carry its own roots.
		if !importsPackage(t, filepath.Join(repoRoot, "cmd", "goagent"), fallbackImport) {
			t.Errorf("cmd/goagent does not import %s: the scratch image would have no CA roots", fallbackImport)
		}
		// The user and its directories come from the build stage.
		runs := strings.Join(runLines(build), "\n")
		for _, want := range []string{fmt.Sprintf(":%d:%d:", imageUID, imageUID), "/rootfs/etc/passwd", "/rootfs/etc/group", "/rootfs/azp/_work", "/rootfs/tmp"} {
			if !strings.Contains(runs, want) {
				t.Errorf("the build stage never writes %q for the scratch image's user and directories", want)
			}
		}
	})

	t.Run("debian", func(t *testing.T) {
		deb := stageNamed(t, stages, "debian")
		if !strings.HasPrefix(deb.BaseName, "debian:") || !strings.HasSuffix(deb.BaseName, "-slim") {
			t.Errorf("debian stage FROM %s, want a debian:*-slim image", deb.BaseName)
		}
		var pkgs []string
		for _, line := range runLines(deb) {
			calls, err := shellCalls(line, syntax.LangPOSIX, nil)
			if err != nil {
				t.Fatalf("debian stage: RUN %q: %v", line, err)
			}
			for _, c := range findCalls(calls, "apt-get", "install") {
				for _, a := range c.args[2:] {
					if !strings.HasPrefix(a, "-") {
						pkgs = append(pkgs, a)
					}
				}
			}
		}
		for _, want := range []string{"bash", "git", "ca-certificates"} {
			if !slices.Contains(pkgs, want) {
				t.Errorf("debian stage does not install %s (installs %v)", want, pkgs)
			}
		}
		checkRuntimeStage(t, deb, built)
	})

	t.Run("context", func(t *testing.T) { checkBuildContext(t, stages) })
}

// checkBuildCommand compares the build stage's `go build` with the
// Makefile's build recipe and returns the built binary's path.
func checkBuildCommand(t *testing.T, build *instructions.Stage) string {
	t.Helper()
	docker := onlyGoBuild(t, "the build stage's RUN", runLines(build))
	mk := makefileBuild(t)

	dArgs, dOut := withoutOutput(docker.args)
	mArgs, _ := withoutOutput(mk.args)
	if !slices.Equal(dArgs, mArgs) {
		t.Errorf("the Dockerfile builds with\n\t%q\nbut the Makefile with\n\t%q", dArgs, mArgs)
	}
	for k, v := range mk.assigns {
		if docker.assigns[k] != v {
			t.Errorf("the Makefile builds with %s=%s, the Dockerfile with %s=%q", k, v, k, docker.assigns[k])
		}
	}
	for k := range docker.assigns {
		if _, ok := mk.assigns[k]; !ok && k != "GOOS" && k != "GOARCH" {
			t.Errorf("the Dockerfile builds with %s, the Makefile does not", k)
		}
	}
	if docker.assigns["CGO_ENABLED"] != "0" {
		t.Error("the image's binary must be static: CGO_ENABLED=0")
	}
	if !slices.Contains(dArgs, "-trimpath") {
		t.Error("the image's binary must be built with -trimpath")
	}
	if dOut == "" {
		t.Fatal("build stage: `go build` has no -o")
	}
	return dOut
}

// withoutOutput drops "-o PATH" and returns it.
func withoutOutput(args []string) ([]string, string) {
	var out []string
	path := ""
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" && i+1 < len(args) {
			path = args[i+1]
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out, path
}

// runLines returns the shell command lines of the stage's RUN instructions.
func runLines(s *instructions.Stage) []string {
	var out []string
	for _, r := range commands[*instructions.RunCommand](s) {
		out = append(out, strings.Join(r.CmdLine, " "))
	}
	return out
}

var makeVarPattern = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)

// makefileBuild returns the Makefile build target's `go build`, with Make's
// variables expanded: VERSION and COMMIT as <VERSION> and <COMMIT> (as the
// Dockerfile's build arguments expand in tests), GO as go.
func makefileBuild(t *testing.T) shellCall {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	var recipe []string
	inBuild := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "\t"):
			if inBuild {
				recipe = append(recipe, strings.TrimSpace(line))
			}
		case strings.HasPrefix(line, "build:"):
			inBuild = true
		default:
			inBuild = false
			if m := makeVarPattern.FindStringSubmatch(line); m != nil {
				vars[m[1]] = m[2]
			}
		}
	}
	if len(recipe) == 0 {
		t.Fatal("the Makefile has no build target with a recipe")
	}
	for k, v := range map[string]string{"VERSION": "<VERSION>", "COMMIT": "<COMMIT>", "GO": "go"} {
		vars[k] = v
	}
	for i, line := range recipe {
		if recipe[i], err = expandMake(line, vars, 0); err != nil {
			t.Fatalf("Makefile build recipe %q: %v", line, err)
		}
	}
	return onlyGoBuild(t, "the Makefile's build recipe", recipe)
}

// onlyGoBuild returns the one `go build` among shell command lines.
func onlyGoBuild(t *testing.T, what string, lines []string) shellCall {
	t.Helper()
	var found []shellCall
	for _, line := range lines {
		calls, err := shellCalls(line, syntax.LangPOSIX, nil)
		if err != nil {
			t.Fatalf("%s %q: %v", what, line, err)
		}
		found = append(found, findCalls(calls, "go", "build")...)
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one `go build`, found %d", what, len(found))
	}
	return found[0]
}

var makeRefPattern = regexp.MustCompile(`\$\(([^()]*)\)`)

// expandMake expands $(NAME) references and $$.
func expandMake(s string, vars map[string]string, depth int) (string, error) {
	if depth > 10 {
		return "", errors.New("variables nest too deep")
	}
	var err error
	out := makeRefPattern.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := vars[name]
		if !ok {
			err = fmt.Errorf("unknown Make variable or function $(%s)", name)
			return ref
		}
		x, e := expandMake(v, vars, depth+1)
		if e != nil {
			err = e
		}
		return x
	})
	return strings.ReplaceAll(out, "$$", "$"), err
}

func goDirective(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1] + "." + m[2]
}

func importsPackage(t *testing.T, dir, path string) bool {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == path {
				return true
			}
		}
	}
	return false
}

// checkBuildContext checks the COPY sources against the repository and
// .dockerignore: each exists; every file `go build ./cmd/goagent` reads from
// this module is copied and not ignored; everything else at the top level
// is ignored, so no work directory or state file is ever sent to a builder.
func checkBuildContext(t *testing.T, stages []instructions.Stage) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatalf("the build context needs a .dockerignore: %v", err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	ignored := func(rel string) bool {
		m, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatalf(".dockerignore on %s: %v", rel, err)
		}
		return m
	}

	var sources []string
	for i := range stages {
		for _, c := range commands[*instructions.CopyCommand](&stages[i]) {
			if c.From != "" {
				continue
			}
			for _, src := range c.SourcePaths {
				rel := filepath.Clean(src)
				if _, err := os.Stat(filepath.Join(repoRoot, rel)); err != nil {
					t.Errorf("COPY %s: not in the build context: %v", src, err)
				}
				if ignored(rel) {
					t.Errorf("COPY %s: excluded by .dockerignore", src)
				}
				sources = append(sources, rel)
			}
		}
	}
	copied := func(rel string) bool {
		for _, s := range sources {
			if rel == s || strings.HasPrefix(rel, s+string(filepath.Separator)) {
				return true
			}
		}
		return false
	}

	needed := buildInputs(t)
	if len(needed) < 10 {
		t.Fatalf("go list found only %d build inputs: %v", len(needed), needed)
	}
	for _, rel := range needed {
		if !copied(rel) {
			t.Errorf("the build reads %s, which no COPY brings in", rel)
		} else if ignored(rel) {
			t.Errorf("the build reads %s, which .dockerignore excludes", rel)
		}
	}

	top, err := os.ReadDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range top {
		if !copied(e.Name()) && !ignored(e.Name()) {
			t.Errorf("%s is sent to the builder but no COPY uses it: exclude it in .dockerignore", e.Name())
		}
	}
	for _, rel := range []string{"cmd/goagent/main_test.go", "internal/devserver/testdata/keys"} {
		if !ignored(filepath.FromSlash(rel)) {
			t.Errorf("%s reaches the builder; tests and their data are not part of the image", rel)
		}
	}
}

// buildInputs lists, relative to the repository, the files of this module
// that `go build ./cmd/goagent` reads, as `go list` reports them.
func buildInputs(t *testing.T) []string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-json", "./cmd/goagent")
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	inputs := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(out)
	for {
		var p struct {
			Dir                                                                        string
			Module                                                                     *struct{ Main bool }
			GoFiles, CgoFiles, CFiles, CXXFiles, HFiles, SFiles, SysoFiles, EmbedFiles []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		for _, list := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.CXXFiles, p.HFiles, p.SFiles, p.SysoFiles, p.EmbedFiles} {
			for _, name := range list {
				rel, err := filepath.Rel(root, filepath.Join(p.Dir, name))
				if err != nil {
					t.Fatal(err)
				}
				inputs = append(inputs, rel)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list -deps ./cmd/goagent: %v", err)
	}
	return inputs
}

func TestExpandMake(t *testing.T) {
	vars := map[string]string{"A": "x $(B)", "B": "y", "LOOP": "$(LOOP)"}
	if got, err := expandMake("$(A) $$HOME", vars, 0); err != nil || got != "x y $HOME" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := expandMake("$(shell date)", vars, 0); err == nil {
		t.Error("an unknown variable or function must fail")
	}
	if _, err := expandMake("$(LOOP)", vars, 0); err == nil {
		t.Error("a self-referencing variable must fail")
	}
}

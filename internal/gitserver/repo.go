package gitserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func basicValue(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// Repo is a bare repository under a server root, built with git plumbing so
// no working tree is needed: every commit is written straight into the bare
// repository.
type Repo struct {
	Name string // path relative to the root, e.g. "app.git"
	Dir  string // absolute path of the bare repository
	git  string
	env  []string
}

// CreateRepo initialises a bare repository root/name whose HEAD points at
// refs/heads/main. name may contain slashes ("proj/_git/app.git").
func CreateRepo(ctx context.Context, root, name string) (*Repo, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("gitserver: find git: %w", err)
	}
	dir := filepath.Join(root, filepath.FromSlash(name))
	if !strings.HasPrefix(dir, filepath.Clean(root)+string(filepath.Separator)) {
		return nil, fmt.Errorf("gitserver: repository name %q escapes the root", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gitserver: create %s: %w", dir, err)
	}
	r := &Repo{Name: filepath.ToSlash(name), Dir: dir, git: gitPath, env: isolatedEnv(root)}
	if _, err := r.run(ctx, nil, nil, "init", "--bare", "--quiet", dir); err != nil {
		return nil, err
	}
	if _, err := r.run(ctx, nil, nil, "symbolic-ref", "HEAD", "refs/heads/main"); err != nil {
		return nil, err
	}
	return r, nil
}

// isolatedEnv keeps the host's git configuration and identity out of the
// repositories a test builds, so commits are reproducible anywhere.
func isolatedEnv(home string) []string {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"HOME=" + home,
		"GIT_AUTHOR_NAME=gitserver",
		"GIT_AUTHOR_EMAIL=gitserver@example.invalid",
		"GIT_COMMITTER_NAME=gitserver",
		"GIT_COMMITTER_EMAIL=gitserver@example.invalid",
		"GIT_TERMINAL_PROMPT=0",
	}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

// run executes git against the bare repository; extraEnv is appended.
func (r *Repo) run(ctx context.Context, stdin []byte, extraEnv []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, r.git, args...)
	cmd.Env = append(append([]string{"GIT_DIR=" + r.Dir}, r.env...), extraEnv...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("gitserver: git %s in %s: %w: %s", strings.Join(args, " "), r.Name, err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// Head returns the commit a branch points at, or "" when it does not exist.
func (r *Repo) Head(ctx context.Context, branch string) (string, error) {
	out, err := r.run(ctx, nil, nil, "for-each-ref", "--format=%(objectname)", "refs/heads/"+branch)
	if err != nil {
		return "", err
	}
	return out, nil
}

// Commit writes files (path → content, paths with slashes) on top of the
// branch's tip (or as a root commit when the branch does not exist yet) and
// moves the branch to the new commit, whose id it returns.
func (r *Repo) Commit(ctx context.Context, branch, message string, files map[string]string) (string, error) {
	return r.commit(ctx, branch, message, files, nil)
}

// Submodule is a gitlink entry: a commit of another repository at a path.
type Submodule struct {
	Path   string
	URL    string // as written to .gitmodules: absolute, or relative ("../lib.git")
	Commit string
}

// AddSubmodules records submodules (gitlinks plus their .gitmodules
// entries) in a new commit on branch.
func (r *Repo) AddSubmodules(ctx context.Context, branch, message string, subs ...Submodule) (string, error) {
	return r.commit(ctx, branch, message, nil, subs)
}

// commit writes one commit with git fast-import: one process instead of a
// plumbing command per file keeps fixtures cheap.
func (r *Repo) commit(ctx context.Context, branch, message string, files map[string]string, subs []Submodule) (string, error) {
	parent, err := r.Head(ctx, branch)
	if err != nil {
		return "", err
	}
	if len(subs) > 0 {
		modules := ""
		if parent != "" {
			if out, err := r.run(ctx, nil, nil, "cat-file", "-p", parent+":.gitmodules"); err == nil {
				modules = out + "\n"
			}
		}
		for _, s := range subs {
			modules += fmt.Sprintf("[submodule %q]\n\tpath = %s\n\turl = %s\n", s.Path, s.Path, s.URL)
		}
		merged := map[string]string{".gitmodules": modules}
		for k, v := range files {
			merged[k] = v
		}
		files = merged
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "commit refs/heads/%s\nmark :1\n", branch)
	fmt.Fprintf(&b, "committer gitserver <gitserver@example.invalid> %d +0000\n", time.Now().Unix())
	fmt.Fprintf(&b, "data %d\n%s\n", len(message), message)
	if parent != "" {
		fmt.Fprintf(&b, "from %s\n", parent)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(&b, "M 100644 inline %s\ndata %d\n%s\n", p, len(files[p]), files[p])
	}
	for _, s := range subs {
		fmt.Fprintf(&b, "M 160000 %s %s\n", s.Commit, s.Path)
	}
	b.WriteString("\nget-mark :1\ndone\n")
	out, err := r.run(ctx, b.Bytes(), nil, "fast-import", "--quiet", "--done")
	if err != nil {
		return "", err
	}
	sha := strings.TrimSpace(out)
	if len(sha) != 40 {
		return "", fmt.Errorf("gitserver: fast-import in %s returned %q instead of a commit id", r.Name, out)
	}
	return sha, nil
}

// Branch creates or moves branch to commit.
func (r *Repo) Branch(ctx context.Context, branch, commit string) error {
	_, err := r.run(ctx, nil, nil, "update-ref", "refs/heads/"+branch, commit)
	return err
}

// Tag creates a tag at commit; annotated tags get a tag object.
func (r *Repo) Tag(ctx context.Context, name, commit string, annotated bool) error {
	args := []string{"tag", name, commit}
	if annotated {
		args = []string{"tag", "-a", "-m", "tag " + name, name, commit}
	}
	_, err := r.run(ctx, nil, nil, args...)
	return err
}

// Ref returns the object a ref points at (refs/tags/v1, refs/heads/main…).
func (r *Repo) Ref(ctx context.Context, ref string) (string, error) {
	out, err := r.run(ctx, nil, nil, "rev-parse", "--verify", "--quiet", ref)
	if err != nil {
		return "", err
	}
	if out == "" {
		return "", errors.New("gitserver: no ref " + ref)
	}
	return out, nil
}

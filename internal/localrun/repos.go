package localrun

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"gopkg.in/yaml.v3"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/devserver/pipeline"
)

// localRepo is a repository on this machine, as served to the job.
type localRepo struct {
	alias   string
	name    string // as the pipeline names it: "repo" or "project/repo"
	project string // where the emulator serves it
	repo    string
	dir     string // work tree (or git directory)
	ref     string // full ref, e.g. refs/heads/main; "" when HEAD is detached
	commit  string
	author  string
	message string
}

// findSelf returns the repository that holds file, or nil when file is not
// inside one.
func findSelf(file string) (*localRepo, error) {
	r, err := git.PlainOpenWithOptions(filepath.Dir(file), &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the git repository around %s: %w", file, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return nil, fmt.Errorf("the git repository around %s has no work tree: %w", file, err)
	}
	root := wt.Filesystem.Root()
	lr := &localRepo{alias: "self", dir: root, repo: filepath.Base(root)}
	if err := lr.resolve(r, ""); err != nil {
		return nil, fmt.Errorf("self repository %s: %w", root, err)
	}
	return lr, nil
}

// resolve sets ref and commit: ref (a branch name, refs/…, or "" for HEAD).
func (lr *localRepo) resolve(r *git.Repository, ref string) error {
	var h plumbing.Hash
	switch {
	case ref == "":
		head, err := r.Head()
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return errors.New("it has no commit yet: commit the pipeline first")
		}
		if err != nil {
			return fmt.Errorf("resolve HEAD: %w", err)
		}
		h = head.Hash()
		if head.Name().IsBranch() {
			lr.ref = head.Name().String()
		}
	default:
		full := ref
		if !strings.HasPrefix(ref, "refs/") {
			full = "refs/heads/" + ref
		}
		rf, err := r.Reference(plumbing.ReferenceName(full), true)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", full, err)
		}
		h, lr.ref = rf.Hash(), full
		if tag, err := r.TagObject(h); err == nil {
			if c, err := tag.Commit(); err == nil {
				h = c.Hash
			}
		}
	}
	lr.commit = h.String()
	if c, err := r.CommitObject(h); err == nil {
		lr.author = c.Author.Name
		lr.message = strings.TrimSpace(c.Message)
	}
	return nil
}

// serveSubmodules serves the submodules of the self repository whose URLs
// are relative ("../lib", as Azure Repos users write them): resolved against
// the self repository's URL, each must land on ORG/PROJECT/_git/NAME, and is
// served from the submodule's git directory inside the self repository's
// .git/modules, or else from a sibling directory named like it. Others are
// left alone: their checkout fails as it would with a host the agent
// cannot reach.
func serveSubmodules(s *devserver.Server, self *localRepo, selfURL, baseDir string, log func(string)) error {
	r, err := git.PlainOpenWithOptions(self.dir, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil
	}
	c, err := r.CommitObject(plumbing.NewHash(self.commit))
	if err != nil {
		return nil
	}
	f, err := c.File(".gitmodules")
	if err != nil {
		return nil // no submodules
	}
	text, err := f.Contents()
	if err != nil {
		return fmt.Errorf("read .gitmodules of the self repository: %w", err)
	}
	mods := config.NewModules()
	if err := mods.Unmarshal([]byte(text)); err != nil {
		return fmt.Errorf("parse .gitmodules of the self repository: %w", err)
	}
	base, err := url.Parse(selfURL + "/")
	if err != nil {
		return err
	}
	orgPath := strings.TrimSuffix(strings.TrimSuffix(base.Path, "/"), "/"+Project+"/_git/"+self.repo)
	served := map[string]bool{}
	for _, rp := range s.Repositories() {
		served[strings.ToLower(rp.Project+"/"+rp.Name)] = true
	}
	names := make([]string, 0, len(mods.Submodules))
	for n := range mods.Submodules {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := mods.Submodules[n]
		if !strings.HasPrefix(m.URL, "../") && !strings.HasPrefix(m.URL, "./") {
			continue
		}
		// git resolves a relative submodule URL against the remote's URL
		// as if it were a directory.
		u, err := base.Parse(strings.TrimSuffix(m.URL, ".git"))
		if err != nil {
			continue
		}
		rest, ok := strings.CutPrefix(u.Path, orgPath+"/")
		parts := strings.Split(rest, "/")
		if !ok || len(parts) != 3 || parts[1] != "_git" {
			log(fmt.Sprintf("submodule %s (%s) does not resolve to a repository of this organization; it is not served", n, m.URL))
			continue
		}
		project, name := parts[0], parts[2]
		if served[strings.ToLower(project+"/"+name)] {
			continue
		}
		src := ""
		for _, dir := range []string{filepath.Join(self.dir, ".git", "modules", n), filepath.Join(baseDir, name)} {
			if _, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{EnableDotGitCommonDir: true}); err == nil {
				src = dir
				break
			}
		}
		if src == "" {
			log(fmt.Sprintf("submodule %s (%s): no local clone in .git/modules/%s or %s; it is not served", n, m.URL, n, filepath.Join(baseDir, name)))
			continue
		}
		if _, err := s.AddRepository(project, name, src); err != nil {
			return fmt.Errorf("serve submodule %s: %w", n, err)
		}
		served[strings.ToLower(project+"/"+name)] = true
	}
	return nil
}

// declaredRepo is a resources.repositories entry.
type declaredRepo struct {
	alias, name, ref string
}

// declaredRepos reads resources.repositories; the compiler validates them,
// so anything it cannot read is left to the compiler to report.
func declaredRepos(src []byte) []declaredRepo {
	var doc struct {
		Resources struct {
			Repositories []struct {
				Repository string `yaml:"repository"`
				Name       string `yaml:"name"`
				Ref        string `yaml:"ref"`
			} `yaml:"repositories"`
		} `yaml:"resources"`
	}
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil
	}
	var out []declaredRepo
	for _, r := range doc.Resources.Repositories {
		if r.Repository != "" && r.Name != "" {
			out = append(out, declaredRepo{alias: r.Repository, name: r.Name, ref: r.Ref})
		}
	}
	return out
}

// resolveDeclared finds the local clone of each declared repository: the
// path given with --repo alias=PATH, else a directory named like the
// repository beside the self repository (or beside the pipeline file).
// Repositories that cannot be found are returned as hints for the error
// the compiler raises if a job checks them out.
func resolveDeclared(decls []declaredRepo, given map[string]string, baseDir string) ([]*localRepo, map[string]string, error) {
	var out []*localRepo
	missing := map[string]string{}
	used := map[string]bool{}
	for _, d := range decls {
		project, repo := "", d.name
		if i := strings.LastIndexByte(d.name, '/'); i >= 0 {
			project, repo = d.name[:i], d.name[i+1:]
		}
		path, fromFlag := "", false
		for k, v := range given {
			if strings.EqualFold(k, d.alias) {
				path, fromFlag = v, true
				used[k] = true
			}
		}
		if path == "" {
			path = filepath.Join(baseDir, repo)
		}
		r, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
		if err != nil {
			if fromFlag {
				return nil, nil, fmt.Errorf("--repo %s=%s: not a git repository: %w", d.alias, path, err)
			}
			missing[d.alias] = fmt.Sprintf("repository resource %q (name %s) was looked for in %s, which is not a git repository: clone it there, or pass --repo %s=PATH", d.alias, d.name, path, d.alias)
			continue
		}
		lr := &localRepo{alias: d.alias, name: d.name, project: project, repo: repo, dir: path}
		if err := lr.resolve(r, d.ref); err != nil {
			return nil, nil, fmt.Errorf("repository resource %q (%s): %w", d.alias, path, err)
		}
		out = append(out, lr)
	}
	var unknown []string
	for k := range given {
		if !used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		var aliases []string
		for _, d := range decls {
			aliases = append(aliases, d.alias)
		}
		have := "it declares none"
		if len(aliases) > 0 {
			have = "it declares " + strings.Join(aliases, ", ")
		}
		return nil, nil, fmt.Errorf("--repo %s: the pipeline has no repository resource with that alias (%s)", strings.Join(unknown, ", "), have)
	}
	return out, missing, nil
}

// serve adds the repository to the emulator and returns the compiler's view.
func (lr *localRepo) serve(s *devserver.Server, defaultProject string) (pipeline.Repo, error) {
	project := lr.project
	if project == "" {
		project = defaultProject
	}
	url, err := s.AddRepository(project, lr.repo, lr.dir)
	if err != nil {
		return pipeline.Repo{}, err
	}
	return pipeline.Repo{URL: url, Commit: lr.commit, Ref: lr.ref, Author: lr.author, Message: lr.message}, nil
}

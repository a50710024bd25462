package devserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/goagent-dev/goagent/internal/gitserver"
)

// Azure Repos serves a repository at ORG/PROJECT/_git/NAME over git's smart
// HTTP protocol. The emulator does the same for local repositories added with
// AddRepository, read-only, so that a job's checkout step fetches exactly as
// it would from the service: with the job's access token in an
// "AUTHORIZATION: bearer" extraheader, or Basic with a PAT.

// RepositoryBackend says what answers the git protocol for a repository.
type RepositoryBackend string

const (
	// BackendAuto serves through git http-backend when git is on PATH, and
	// through the built-in upload-pack otherwise (scratch images).
	BackendAuto RepositoryBackend = ""
	// BackendGit serves through `git http-backend` (protocol v0 and v2, every
	// capability git has).
	BackendGit RepositoryBackend = "git http-backend"
	// BackendNative serves through the emulator's own upload-pack built on
	// go-git: protocol v0 with multi_ack(_detailed), side-band(-64k),
	// ofs-delta, shallow (deepen), include-tag, no-progress and
	// allow-(tip|reachable)-sha1-in-want. It needs neither git nor a shell.
	BackendNative RepositoryBackend = "native upload-pack"
)

// RepositoryOptions tune AddRepositoryWith.
type RepositoryOptions struct {
	Backend RepositoryBackend
}

// Repository is a repository the emulator serves.
type Repository struct {
	Project string
	Name    string
	GitDir  string // the git directory served (a bare repository or a work tree's .git)
	URL     string // https://127.0.0.1:PORT/ORG/PROJECT/_git/NAME
	Backend RepositoryBackend
}

// repoTable holds the served repositories; its zero value is ready to use.
type repoTable struct {
	mu    sync.Mutex
	byKey map[string]*servedRepo // lower-case "project/name"
}

type servedRepo struct {
	Repository
	cgi    *gitserver.Handler // BackendGit
	native *nativeRepo        // BackendNative
}

// AddRepository serves the git repository at gitDir (a bare repository, a
// work tree's .git directory, or a work tree) as Azure Repos would:
// https://127.0.0.1:PORT/ORG/PROJECT/_git/NAME, read-only, for callers
// presenting the access token of a job of this organization that has not
// ended (Bearer, as the checkout step's extraheader sends it) or a PAT the
// emulator knows (Basic, any user name). It returns the clone URL.
func (s *Server) AddRepository(project, name, gitDir string) (string, error) {
	return s.AddRepositoryWith(project, name, gitDir, RepositoryOptions{})
}

// AddRepositoryWith is AddRepository with a choice of backend.
func (s *Server) AddRepositoryWith(project, name, gitDir string, o RepositoryOptions) (string, error) {
	for _, p := range []struct{ what, v string }{{"project", project}, {"repository", name}} {
		if strings.TrimSpace(p.v) == "" || strings.ContainsAny(p.v, "/\\?#%") || strings.HasPrefix(p.v, "_") || p.v == "." || p.v == ".." {
			return "", fmt.Errorf("add repository %q to project %q: the %s name %q must be one URL path segment, not starting with '_'", name, project, p.what, p.v)
		}
	}
	dir, err := resolveGitDir(gitDir)
	if err != nil {
		return "", fmt.Errorf("add repository %s/%s: %w", project, name, err)
	}
	r := &servedRepo{Repository: Repository{
		Project: project, Name: name, GitDir: dir,
		URL: s.orgURL + "/" + project + "/_git/" + name,
	}}
	backend := o.Backend
	if backend == BackendAuto {
		backend = BackendNative
		if _, err := exec.LookPath("git"); err == nil {
			backend = BackendGit
		}
	}
	switch backend {
	case BackendGit:
		h, err := gitserver.NewHandler(gitserver.Options{Root: dir, Logger: s.log})
		if err != nil {
			return "", fmt.Errorf("add repository %s/%s: serve it through git http-backend: %w", project, name, err)
		}
		r.cgi = h
	case BackendNative:
		n, err := openNativeRepo(dir)
		if err != nil {
			return "", fmt.Errorf("add repository %s/%s: %w", project, name, err)
		}
		r.native = n
	default:
		return "", fmt.Errorf("add repository %s/%s: unknown backend %q", project, name, backend)
	}
	r.Backend = backend

	t := &s.repos
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey == nil {
		t.byKey = map[string]*servedRepo{}
	}
	key := strings.ToLower(project + "/" + name)
	if old := t.byKey[key]; old != nil {
		return "", fmt.Errorf("add repository %s/%s: the project already has a repository of that name (serving %s)", project, name, old.GitDir)
	}
	t.byKey[key] = r
	return r.URL, nil
}

// Repositories lists the served repositories by project and name.
func (s *Server) Repositories() []Repository {
	t := &s.repos
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Repository, 0, len(t.byKey))
	for _, r := range t.byKey {
		out = append(out, r.Repository)
	}
	sort.Slice(out, func(a, b int) bool {
		return strings.ToLower(out[a].Project+"/"+out[a].Name) < strings.ToLower(out[b].Project+"/"+out[b].Name)
	})
	return out
}

func (t *repoTable) get(project, name string) *servedRepo {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byKey[strings.ToLower(project+"/"+name)]
}

// resolveGitDir finds the git directory of a bare repository, a .git
// directory, a work tree, or a .git file ("gitdir: …" of linked work trees
// and submodules).
func resolveGitDir(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	isGitDir := func(d string) bool {
		fi, err := os.Stat(filepath.Join(d, "HEAD"))
		if err != nil || !fi.Mode().IsRegular() {
			return false
		}
		fi, err = os.Stat(filepath.Join(d, "objects"))
		return err == nil && fi.IsDir()
	}
	if isGitDir(abs) {
		return abs, nil
	}
	dotGit := filepath.Join(abs, ".git")
	fi, err := os.Stat(dotGit)
	switch {
	case err == nil && fi.IsDir() && isGitDir(dotGit):
		return dotGit, nil
	case err == nil && fi.Mode().IsRegular():
		b, err := os.ReadFile(dotGit)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", dotGit, err)
		}
		target, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
		if !ok {
			return "", fmt.Errorf("%s is a file but not a \"gitdir: …\" link", dotGit)
		}
		target = strings.TrimSpace(target)
		if !filepath.IsAbs(target) {
			target = filepath.Join(abs, target)
		}
		if isGitDir(target) {
			return filepath.Clean(target), nil
		}
		return "", fmt.Errorf("%s points at %s, which is not a git directory", dotGit, target)
	}
	return "", fmt.Errorf("%s is not a git repository (no HEAD and objects, and no .git inside)", abs)
}

// isGitRoute reports whether the path below the organization is a
// repository's: PROJECT/_git/NAME/….
func isGitRoute(segs []string) bool {
	return len(segs) >= 3 && strings.EqualFold(segs[1], "_git")
}

// serveGit answers a request for PROJECT/_git/NAME/… . Azure Repos
// authenticates before it looks the repository up, so a stranger cannot
// tell which repositories exist.
func (s *Server) serveGit(q *request, segs []string) {
	q.ex.Resource = "git"
	if s.applyFault(q) {
		return
	}
	s.mu.Lock()
	p, fail := s.authenticate(q.r, q.now)
	if fail == nil && p.kind == kindAgent {
		// The agent's own OAuth token is scoped to agent pools, not code.
		fail = &authFailure{status: http.StatusUnauthorized, reason: "agent OAuth token used for a git repository"}
	}
	s.mu.Unlock()
	if fail != nil {
		q.ex.AuthFailure = fail.reason
		s.writeGitUnauthorized(q.w, fail)
		return
	}
	if len(q.body) > int(s.opts.MaxBody) {
		gitError(q.w, http.StatusRequestEntityTooLarge, fmt.Sprintf("The request body is larger than %d bytes.", s.opts.MaxBody))
		return
	}
	project, name, rest := segs[0], segs[2], segs[3:]
	repo := s.repos.get(project, name)
	if repo == nil {
		gitError(q.w, http.StatusNotFound, fmt.Sprintf("TF401019: The Git repository with name or identifier %s does not exist or you do not have permissions for the operation you are attempting.", name))
		return
	}
	r := q.r
	route := strings.Join(rest, "/")
	switch {
	case route == "info/refs" && r.Method == http.MethodGet:
		switch r.URL.Query().Get("service") {
		case "git-upload-pack":
		case "git-receive-pack":
			gitError(q.w, http.StatusForbidden, "TF401027: You need the Git 'GenericContribute' permission to perform this action. The emulator serves repositories read-only.")
			return
		default:
			// Azure Repos speaks the smart protocol only.
			gitError(q.w, http.StatusForbidden, "The dumb HTTP git protocol is not supported: use a git client that speaks smart HTTP.")
			return
		}
	case route == "git-upload-pack" && r.Method == http.MethodPost:
	case route == "git-receive-pack":
		gitError(q.w, http.StatusForbidden, "TF401027: You need the Git 'GenericContribute' permission to perform this action. The emulator serves repositories read-only.")
		return
	case route == "info/refs":
		q.w.Header().Set("Allow", http.MethodGet)
		gitError(q.w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s.", r.Method, route))
		return
	case route == "git-upload-pack":
		q.w.Header().Set("Allow", http.MethodPost)
		gitError(q.w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s.", r.Method, route))
		return
	default:
		gitError(q.w, http.StatusNotFound, fmt.Sprintf("%s is not a git smart HTTP route of repository %s.", "/"+route, name))
		return
	}
	q.ex.Resource = "git " + route
	switch {
	case repo.cgi != nil:
		// http-backend finds the repository from GIT_PROJECT_ROOT (the git
		// directory itself) and PATH_INFO.
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + route
		r2.URL.RawPath = ""
		r2.Body = io.NopCloser(bytes.NewReader(q.body))
		r2.ContentLength = int64(len(q.body))
		repo.cgi.ServeHTTP(q.w, r2)
	case route == "info/refs":
		repo.native.serveAdvertisement(q.w)
	default:
		repo.native.serveUploadPack(q.ctx, q.w, r.Header.Get("Content-Encoding"), q.body)
	}
}

// writeGitUnauthorized answers as Azure Repos does for git clients: a 401
// with the Bearer (Entra) and Basic challenges, never a sign-in redirect.
func (s *Server) writeGitUnauthorized(w http.ResponseWriter, f *authFailure) {
	status := f.status
	if status != http.StatusUnauthorized {
		status = http.StatusUnauthorized
	}
	w.Header().Add("WWW-Authenticate", "Bearer authorization_uri=https://login.microsoftonline.com/"+s.opts.TenantID)
	w.Header().Add("WWW-Authenticate", `Basic realm="`+s.origin+`/"`)
	w.Header().Add("WWW-Authenticate", "TFS-Federated")
	w.Header().Set("X-VSS-ResourceTenant", s.opts.TenantID)
	w.Header().Set("X-TFS-ServiceError", escapeHeader("Unauthorized"))
	msg := "Authentication failed: present the job's access token (Authorization: Bearer) or a PAT (Basic)."
	if f.message != "" {
		msg = f.message
	}
	gitError(w, status, msg)
}

// gitError writes a plain-text error, which git prints after "remote:".
func gitError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// errNotOurRef is what upload-pack answers for a want it will not serve.
var errNotOurRef = errors.New("not our ref")

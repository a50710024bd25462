//go:build linux

package scratchtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/testbin"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

const (
	// imageUID is the user the scratch image runs as (Dockerfile: USER).
	imageUID = 65532
	// hangGuard bounds every run in the empty root; it is not a timing
	// assertion, only a way to fail instead of hanging CI.
	hangGuard = 4 * time.Minute
	// fallbackModule is what gives the binary CA roots in scratch.
	fallbackModule = "golang.org/x/crypto/x509roots/fallback"
)

// TestEmptyRoot runs the static binary alone in an empty root file system:
// the binary, /tmp and the files a subtest adds, nothing else — no /bin/sh,
// no git, no /etc/ssl, no /etc/hosts, PATH empty. That is what the scratch
// image gives the agent (less /proc and /dev, which a container runtime adds).
func TestEmptyRoot(t *testing.T) {
	bin := buildStatic(t)
	root := newEmptyRoot(t, bin)

	t.Run("FallbackRoots", func(t *testing.T) { testFallbackRoots(t, root) })
	t.Run("CorporateCA", func(t *testing.T) { testCorporateCA(t, root) })
	t.Run("ExecCheckoutAndScript", func(t *testing.T) { testExec(t, root) })
}

// buildStatic builds cmd/goagent as the Makefile and the Dockerfile do
// (CGO_ENABLED=0, -trimpath) and checks the result is a static executable
// that embeds the fallback roots.
func buildStatic(t *testing.T) string {
	t.Helper()
	out, err := testbin.Build(t.TempDir(), "scratch")
	if err != nil {
		t.Fatal(err)
	}

	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("read the built binary as ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("goagent has a program interpreter (PT_INTERP): it is dynamically linked and cannot run from scratch")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("goagent needs shared libraries %v: it cannot run from scratch", libs)
	}
	info, err := buildinfo.ReadFile(out)
	if err != nil {
		t.Fatalf("read goagent's build information: %v", err)
	}
	if !slices.ContainsFunc(info.Deps, func(m *debug.Module) bool { return m.Path == fallbackModule }) {
		t.Fatalf("goagent does not link %s: in a scratch image it would have no CA roots", fallbackModule)
	}
	return out
}

// emptyRoot is a directory entered as "/" by the processes it runs.
type emptyRoot struct {
	dir  string
	how  string // how the root is entered, for messages
	attr func() *syscall.SysProcAttr
}

// baseEnv is all the environment a run gets: no PATH to search, no
// SSL_CERT_FILE/SSL_CERT_DIR, a home and a temp directory that exist.
func baseEnv() []string { return []string{"PATH=", "HOME=/tmp", "TMPDIR=/tmp"} }

// newEmptyRoot lays out the root (the binary at /goagent, /tmp) and finds a
// way in: a plain chroot when the test runs as root (the process then drops
// to the image's uid), else a chroot inside a new user and mount namespace.
// It skips the test only when neither can start a process, saying why.
func newEmptyRoot(t *testing.T, bin string) *emptyRoot {
	t.Helper()
	dir := t.TempDir()
	// The process may run as an unprivileged uid: "/" must be searchable.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bin, filepath.Join(dir, "goagent"), 0o755)
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}

	type method struct {
		how  string
		attr func() *syscall.SysProcAttr
	}
	var methods []method
	if os.Geteuid() == 0 {
		methods = append(methods, method{
			how: fmt.Sprintf("chroot as root, the process running as uid/gid %d", imageUID),
			attr: func() *syscall.SysProcAttr {
				return &syscall.SysProcAttr{
					Chroot:     dir,
					Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID, Groups: []uint32{}},
				}
			},
		})
	}
	uid, gid := os.Getuid(), os.Getgid()
	methods = append(methods, method{
		how: fmt.Sprintf("chroot in a new user and mount namespace (uid %d mapped to 0)", uid),
		attr: func() *syscall.SysProcAttr {
			return &syscall.SysProcAttr{
				Chroot:      dir,
				Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
				UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}},
				GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}},
			}
		},
	})

	var why []string
	for _, m := range methods {
		r := &emptyRoot{dir: dir, how: m.how, attr: m.attr}
		out, code, err := r.run(t, nil, "/goagent", "version")
		var se startError
		if errors.As(err, &se) {
			why = append(why, fmt.Sprintf("%s: %v", m.how, se.err))
			continue
		}
		if err != nil || code != 0 || !strings.HasPrefix(out, "goagent ") {
			t.Fatalf("goagent version in the empty root (%s): exit %d, %v\n%s", m.how, code, err, out)
		}
		t.Logf("empty root %s entered by %s", dir, m.how)
		return r
	}
	t.Skipf("cannot enter an empty root on this machine (%s); unprivileged user namespaces may be disabled: kernel.unprivileged_userns_clone=0, user.max_user_namespaces=0 or kernel.apparmor_restrict_unprivileged_userns=1",
		strings.Join(why, "; "))
	return nil
}

// startError is a failure to start the process at all: the root could not be
// entered, as opposed to goagent failing inside it.
type startError struct{ err error }

func (e startError) Error() string { return "start in the empty root: " + e.err.Error() }

// run starts args in the root with baseEnv plus env, working directory /tmp,
// and returns its combined output and exit code.
func (r *emptyRoot) run(t *testing.T, env []string, args ...string) (string, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(baseEnv(), env...)
	cmd.Dir = "/tmp"
	cmd.SysProcAttr = r.attr()
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		return "", -1, startError{err}
	}
	err := cmd.Wait()
	if ctx.Err() != nil {
		return out.String(), -1, fmt.Errorf("%s did not finish within %v: %w", strings.Join(args, " "), hangGuard, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode(), nil
	}
	return out.String(), cmd.ProcessState.ExitCode(), err
}

// The TLS subtests rest on one observation. The server presents a
// certificate from an impostor CA whose name is exactly that of a root in the
// embedded bundle. Go's verifier finds that root as a candidate issuer by
// name, fails its signature check and says so in the error: "possibly because
// of … while trying to verify candidate authority certificate NAME". With no
// roots at all there is no candidate and no such hint, so in the empty root
// the hint can only come from the roots the binary carries itself.

// testFallbackRoots: with no CA configuration at all, the binary verifies
// against its embedded roots.
func testFallbackRoots(t *testing.T, root *emptyRoot) {
	anchor := bundledRoot(t)
	impostor := newCA(t, anchor)
	srv, _ := newTLSServer(t, impostor.issue(t))
	out := check(t, root, srv.URL, nil)
	assertVerifiedAgainst(t, out, anchor)
}

// testCorporateCA: SSL_CERT_FILE adds a corporate CA (its server is
// reached) without taking the embedded roots away (the impostor is still
// checked against them), as public Azure endpoints must keep verifying.
func testCorporateCA(t *testing.T, root *emptyRoot) {
	corp := newCA(t, nil)
	pemPath := filepath.Join(root.dir, "tmp", "corp-ca.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: corp.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pemPath)
	env := []string{"SSL_CERT_FILE=/tmp/corp-ca.pem"}

	corpSrv, hits := newTLSServer(t, corp.issue(t))
	out := check(t, root, corpSrv.URL, env)
	if hits.Load() == 0 || strings.Contains(out, "x509:") {
		t.Fatalf("with SSL_CERT_FILE naming the corporate CA, goagent did not trust its server (%d requests reached it):\n%s", hits.Load(), out)
	}

	anchor := bundledRoot(t)
	srv, _ := newTLSServer(t, newCA(t, anchor).issue(t))
	out = check(t, root, srv.URL, env)
	assertVerifiedAgainst(t, out, anchor)
}

// check runs `goagent check` against url in the root; it must fail, since
// no server here is Azure DevOps.
func check(t *testing.T, root *emptyRoot, url string, env []string) string {
	t.Helper()
	out, code, err := root.run(t, append([]string{"AZP_TOKEN=not-a-real-pat"}, env...),
		"/goagent", "check", "--url", url+"/contoso", "--pool", "scratch", "--auth", "pat")
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 {
		t.Fatalf("goagent check passed against a server that is not Azure DevOps:\n%s", out)
	}
	return out
}

func assertVerifiedAgainst(t *testing.T, out string, anchor *x509.Certificate) {
	t.Helper()
	if !strings.Contains(out, "certificate signed by unknown authority") {
		t.Fatalf("goagent check failed, but not on certificate verification; it must never trust the impostor:\n%s", out)
	}
	hint := fmt.Sprintf("while trying to verify candidate authority certificate %q", anchor.Subject.CommonName)
	if !strings.Contains(out, hint) {
		t.Fatalf("the verifier never considered the bundled root %q, so the binary had no roots in the empty root (want %q in the output):\n%s",
			anchor.Subject.CommonName, hint, out)
	}
}

// newTLSServer serves HTTPS on 127.0.0.1 with leaf and counts the requests
// that got through the handshake.
func newTLSServer(t *testing.T, leaf tls.Certificate) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	hits := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "not Azure DevOps", http.StatusTeapot)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, hits
}

// bundledRoot picks a root of the embedded bundle that has a common name and
// no extra constraints.
func bundledRoot(t *testing.T) *x509.Certificate {
	t.Helper()
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			t.Fatalf("parse a bundled root: %v", err)
		}
		if c.Subject.CommonName != "" && c.IsCA {
			return c
		}
	}
	t.Fatal("the fallback bundle has no usable root")
	return nil
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCA makes a self-signed CA; with a non-nil impersonate it copies that
// certificate's name and key id, but not its key.
func newCA(t *testing.T, impersonate *x509.Certificate) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "goagent scratchtest corporate CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	if impersonate != nil {
		tmpl.RawSubject, tmpl.SubjectKeyId = impersonate.RawSubject, impersonate.SubjectKeyId
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert, key}
}

// issue returns a server certificate for 127.0.0.1 signed by the CA.
func (ca testCA) issue(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testExec runs `goagent exec` of a pipeline that checks out its own
// repository and reads a file of it from a script step. In the empty root
// that needs the emulator to serve the repository and the agent to check it
// out without git (go-git both ways), and the script to run without
// /bin/sh (the embedded shell). The file holds a random value, so only a
// real checkout can make the script print it.
func testExec(t *testing.T, root *emptyRoot) {
	marker := randomHex(t)
	src := filepath.Join(root.dir, "src")
	commitRepo(t, src, map[string]string{
		"azure-pipelines.yml": `# checkout + script, run by goagent exec in an empty root
steps:
- checkout: self
- script: |
    read -r value < "$(Build.SourcesDirectory)/marker.txt"
    echo "marker=$value"
  displayName: read a checked-out file
`,
		"marker.txt": marker + "\n",
	})
	assertOnlyEntries(t, root.dir, "goagent", "src", "tmp")

	out, code, err := root.run(t, nil, "/goagent", "exec", "/src/azure-pipelines.yml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != 0 {
		t.Fatalf("goagent exec in the empty root (%s) exited %d:\n%s", root.how, code, out)
	}
	if !strings.Contains(out, "marker="+marker) {
		t.Fatalf("the script never printed the checked-out file's content %q:\n%s", marker, out)
	}
}

// commitRepo creates a git repository at dir with files committed on main,
// with go-git so the test does not need git either.
func commitRepo(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	r, err := git.PlainInit(dir, false)
	if err != nil {
		t.Fatalf("init %s: %v", dir, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(name); err != nil {
			t.Fatalf("git add %s: %v", name, err)
		}
	}
	sig := &object.Signature{Name: "scratchtest", Email: "scratchtest@example.invalid", When: time.Now()}
	if _, err := wt.Commit("pipeline for the empty-root test", &git.CommitOptions{Author: sig, Committer: sig}); err != nil {
		t.Fatalf("commit in %s: %v", dir, err)
	}
	// Readable by the image's uid when the run drops privileges.
	if err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	}); err != nil {
		t.Fatal(err)
	}
}

// assertOnlyEntries guards the fixture: the root holds exactly names.
func assertOnlyEntries(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Fatalf("the empty root holds %v, want exactly %v", got, names)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

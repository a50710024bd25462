package azdo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fallbackroots "golang.org/x/crypto/x509roots/fallback/bundle"
)

// testCA is a throwaway certificate authority; each test makes its own, so
// no root pool cached by the process can already trust it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca := &testCA{}
	ca.cert, ca.key = issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil)
	ca.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	return ca
}

// leaf issues a server certificate for example.com and 127.0.0.1.
func (ca *testCA) leaf(t *testing.T) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	cert, key := issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "example.com"},
		DNSNames:    []string{"example.com"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, cert
}

// issue signs tmpl, valid for an hour either side of now, with a new key;
// by parent, or by itself when parent is nil.
func issue(t *testing.T, tmpl *x509.Certificate, parent *testCA) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func (ca *testCA) file(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// orgServer serves connectionData for /org over TLS with a leaf of ca.
func orgServer(t *testing.T, ca *testCA) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/org/_apis/connectionData" {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"instanceId": "00000000-0000-0000-0000-0000000000aa", "deploymentType": "hosted"})
	}))
	cert, _ := ca.leaf(t)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// clearTLSEnv makes the test independent of the machine's settings.
func clearTLSEnv(t *testing.T) {
	for _, k := range []string{"SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD"} {
		t.Setenv(k, "")
	}
}

func connectionData(t *testing.T, baseURL string, tr *http.Transport) error {
	t.Helper()
	c, err := New(baseURL, nil, Options{HTTPClient: &http.Client{Transport: tr}, Retries: -1, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cd, err := c.ConnectionData(testContext(t))
	if err == nil && (cd.DeploymentType == nil || *cd.DeploymentType != "hosted") {
		t.Fatalf("connection data %+v", cd)
	}
	return err
}

func TestExtraCAs(t *testing.T) {
	ca, other := newCA(t, "goagent test CA"), newCA(t, "some other CA")
	srv := orgServer(t, ca)
	certDir := t.TempDir()
	os.WriteFile(filepath.Join(certDir, "README"), []byte("not a certificate"), 0o600)
	os.WriteFile(filepath.Join(certDir, "ca.pem"), ca.pem, 0o600)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		files  []string
		verify bool
	}{
		{"nothing extra", nil, nil, false},
		{"SSL_CERT_FILE", map[string]string{"SSL_CERT_FILE": ca.file(t)}, nil, true},
		{"SSL_CERT_FILE of another CA", map[string]string{"SSL_CERT_FILE": other.file(t)}, nil, false},
		{"SSL_CERT_DIR", map[string]string{"SSL_CERT_DIR": t.TempDir() + ":" + certDir}, nil, true},
		{"CAFiles", nil, []string{other.file(t), ca.file(t)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearTLSEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			tr, err := NewTransport(TransportOptions{CAFiles: tc.files})
			if err != nil {
				t.Fatal(err)
			}
			err = connectionData(t, srv.URL+"/org", tr)
			if tc.verify && err != nil {
				t.Fatalf("did not verify: %v", err)
			}
			var unknown x509.UnknownAuthorityError
			if !tc.verify && !errors.As(err, &unknown) {
				t.Fatalf("error %v, want an unknown-authority error", err)
			}
		})
	}
}

// SSL_CERT_FILE adds to the system roots instead of replacing them.
func TestRootCAsKeepsSystemRoots(t *testing.T) {
	clearTLSEnv(t)
	if pool, err := RootCAs(nil); pool != nil || err != nil {
		t.Fatalf("RootCAs with nothing configured = %v, %v; want nil (Go's defaults)", pool, err)
	}
	system, extra := newCA(t, "a public root"), newCA(t, "corporate CA")
	t.Setenv("SSL_CERT_FILE", extra.file(t))
	pool, err := rootCAs(nil, []string{filepath.Join(t.TempDir(), "absent.pem"), system.file(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ca := range []*testCA{system, extra} {
		_, leaf := ca.leaf(t)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"}); err != nil {
			t.Errorf("a server of %q does not verify: %v", ca.cert.Subject.CommonName, err)
		}
	}
}

func TestRootCAsErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, nil, 0o600)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("-----BEGIN NOTHING-----\n"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name  string
		env   string
		files []string
		has   []string
	}{
		{"missing SSL_CERT_FILE", missing, nil, []string{"SSL_CERT_FILE", missing, "no such file", "readable PEM bundle"}},
		{"SSL_CERT_FILE is a directory", dir, nil, []string{"SSL_CERT_FILE", dir}},
		{"empty SSL_CERT_FILE", empty, nil, []string{"SSL_CERT_FILE", empty, "no PEM certificate"}},
		{"junk SSL_CERT_FILE", junk, nil, []string{"SSL_CERT_FILE", junk, "no PEM certificate"}},
		{"missing CA file", "", []string{missing}, []string{"CA file", missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearTLSEnv(t)
			t.Setenv("SSL_CERT_FILE", tc.env)
			_, err := NewTransport(TransportOptions{CAFiles: tc.files})
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range tc.has {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// connectProxy is an HTTP CONNECT proxy on 127.0.0.1 that tunnels every
// CONNECT to backend, whatever host it names.
type connectProxy struct {
	srv     *httptest.Server
	backend string
	require string // Proxy-Authorization it insists on, if set

	mu      sync.Mutex
	targets []string
	auths   []string
}

func newConnectProxy(t *testing.T, backend string) *connectProxy {
	p := &connectProxy{backend: backend}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.Host)
	p.auths = append(p.auths, r.Header.Get("Proxy-Authorization"))
	p.mu.Unlock()
	if p.require != "" && r.Header.Get("Proxy-Authorization") != p.require {
		w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
		http.Error(w, "who are you", http.StatusProxyAuthRequired)
		return
	}
	up, err := net.Dial("tcp", p.backend)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	rw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	rw.Flush()
	go func() { io.Copy(up, rw); up.Close() }()
	io.Copy(conn, up)
	conn.Close()
}

func (p *connectProxy) seen() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...), append([]string(nil), p.auths...)
}

// loopbackOnly replaces a transport's dialer: it records every address and
// refuses anything but loopback, so a proxy bypass never leaves the machine.
type loopbackOnly struct {
	mu     sync.Mutex
	dialed []string
}

func (l *loopbackOnly) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	l.mu.Lock()
	l.dialed = append(l.dialed, addr)
	l.mu.Unlock()
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("test refuses to dial %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (l *loopbackOnly) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.dialed...)
}

func TestProxy(t *testing.T) {
	ca := newCA(t, "goagent test CA")
	srv := orgServer(t, ca)
	backend := strings.TrimPrefix(srv.URL, "https://")
	proxy := newConnectProxy(t, backend)
	proxyAddr := strings.TrimPrefix(proxy.srv.URL, "http://")
	withCreds := "http://proxyuser:proxypw@" + proxyAddr
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("proxyuser:proxypw"))

	for _, tc := range []struct {
		name       string
		env        map[string]string
		url        string
		proxied    bool     // the request went through the proxy
		wantDialed []string // when not proxied
		require    string   // the proxy's demand
		ok         bool
	}{
		{"HTTPS_PROXY", map[string]string{"HTTPS_PROXY": withCreds}, "https://example.com/org", true, nil, "", true},
		{"https_proxy", map[string]string{"https_proxy": "http://" + proxyAddr}, "https://example.com/org", true, nil, "", true},
		{"proxy without scheme", map[string]string{"HTTPS_PROXY": proxyAddr}, "https://example.com/org", true, nil, "", true},
		{"NO_PROXY host", map[string]string{"HTTPS_PROXY": withCreds, "NO_PROXY": "example.com"}, "https://example.com/org", false, []string{"example.com:443"}, "", false},
		{"NO_PROXY domain", map[string]string{"HTTPS_PROXY": withCreds, "NO_PROXY": "other.org,.com"}, "https://example.com/org", false, []string{"example.com:443"}, "", false},
		{"NO_PROXY other host", map[string]string{"HTTPS_PROXY": withCreds, "NO_PROXY": "dev.azure.com"}, "https://example.com/org", true, nil, "", true},
		{"HTTP_PROXY is for http only", map[string]string{"HTTP_PROXY": withCreds}, "https://example.com/org", false, []string{"example.com:443"}, "", false},
		// Go never proxies loopback targets, whatever the environment says.
		{"loopback goes direct", map[string]string{"HTTPS_PROXY": withCreds}, srv.URL + "/org", false, []string{backend}, "", true},
		{"proxy refuses", map[string]string{"HTTPS_PROXY": withCreds}, "https://example.com/org", true, nil, "Basic bm9ib2R5Om5vdGhpbmc=", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearTLSEnv(t)
			t.Setenv("SSL_CERT_FILE", ca.file(t))
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			proxy.mu.Lock()
			proxy.targets, proxy.auths, proxy.require = nil, nil, tc.require
			proxy.mu.Unlock()
			tr, err := NewTransport(TransportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			guard := &loopbackOnly{}
			tr.DialContext = guard.dial
			err = connectionData(t, tc.url, tr)
			t.Logf("error: %v", err)
			if tc.ok != (err == nil) {
				t.Fatalf("error %v", err)
			}
			if err != nil && strings.Contains(err.Error(), "proxypw") {
				t.Errorf("error %q shows the proxy password", err)
			}
			targets, auths := proxy.seen()
			if tc.proxied {
				if !slices.Equal(targets, []string{"example.com:443"}) || !slices.Equal(guard.all(), []string{proxyAddr}) {
					t.Fatalf("CONNECT %v, dialed %v", targets, guard.all())
				}
				if strings.Contains(tc.env["HTTPS_PROXY"], "proxyuser") && auths[0] != wantAuth {
					t.Errorf("Proxy-Authorization %q, want %q", auths[0], wantAuth)
				}
				return
			}
			if len(targets) != 0 {
				t.Errorf("went through the proxy: %v", targets)
			}
			if !slices.Equal(guard.all(), tc.wantDialed) {
				t.Errorf("dialed %v, want %v", guard.all(), tc.wantDialed)
			}
		})
	}
}

// A transport follows the environment it was made in, not the one the
// process first saw (http.ProxyFromEnvironment caches it for good).
func TestProxyReadAtNewTransport(t *testing.T) {
	clearTLSEnv(t)
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	withProxy, err := NewTransport(TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HTTPS_PROXY", "")
	without, err := NewTransport(TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://dev.azure.com/org/_apis/connectionData", nil)
	if u, err := withProxy.Proxy(req); err != nil || u == nil || u.Host != "127.0.0.1:9" {
		t.Errorf("first transport: proxy %v, %v", u, err)
	}
	if u, err := without.Proxy(req); err != nil || u != nil {
		t.Errorf("second transport: proxy %v, %v", u, err)
	}
}

// In a scratch image there is no system bundle: an extra CA must add to the
// roots compiled into the binary, not replace them.
func TestRootCAsWithoutSystemBundleKeepsBuiltInRoots(t *testing.T) {
	clearTLSEnv(t)
	extra := newCA(t, "corporate CA")
	t.Setenv("SSL_CERT_FILE", extra.file(t))
	pool, err := rootCAs(nil, []string{filepath.Join(t.TempDir(), "absent.pem")})
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for _, s := range pool.Subjects() { //nolint:staticcheck // a pool we built, not the system's
		subjects[string(s)] = true
	}
	builtIn := 0
	for r := range fallbackroots.Roots() {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			t.Fatal(err)
		}
		if subjects[string(c.RawSubject)] {
			builtIn++
		}
	}
	if builtIn < 100 {
		t.Fatalf("only %d built-in roots in the pool; the fallback bundle was not used", builtIn)
	}
	_, leaf := extra.leaf(t)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"}); err != nil {
		t.Fatalf("the extra CA does not verify: %v", err)
	}
}

// A certificate the client does not trust is not retried (nothing will
// change) and the error says how to add a CA.
func TestUntrustedCertificateNotRetried(t *testing.T) {
	clearTLSEnv(t)
	srv := orgServer(t, newCA(t, "untrusted CA"))
	var handshakes atomic.Int32
	srv.TLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		handshakes.Add(1)
		return nil, nil
	}
	tr, err := NewTransport(TransportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(srv.URL+"/org", nil, Options{HTTPClient: &http.Client{Transport: tr}, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ConnectionData(testContext(t))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Fatalf("error %v: want an unknown-authority error that names SSL_CERT_FILE", err)
	}
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("%d TLS handshakes, want 1 (no retries)", n)
	}
	if IsTransient(err) {
		t.Fatal("a certificate error counted as transient")
	}
}

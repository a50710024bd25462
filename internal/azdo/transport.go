package azdo

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	fallbackroots "golang.org/x/crypto/x509roots/fallback/bundle"
	"golang.org/x/net/http/httpproxy"
)

// TransportOptions configure the HTTP transport shared by the REST client,
// the identity credentials and git.
type TransportOptions struct {
	// CAFiles are PEM bundles trusted in addition to the system roots.
	// SSL_CERT_FILE and SSL_CERT_DIR are added by NewTransport too: Go would
	// otherwise use them *instead of* the system roots, and a user setting them
	// for a corporate CA still expects public endpoints to verify.
	CAFiles []string
}

// systemBundles are where Debian, Alpine, RHEL and friends keep the roots.
var systemBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// SystemCABundles lists where Linux distributions keep their CA roots, for
// tools that need a bundle file (git's GIT_SSL_CAINFO).
func SystemCABundles() []string { return append([]string(nil), systemBundles...) }

// RootCAs returns the system roots plus SSL_CERT_FILE, SSL_CERT_DIR and extra
// files. It returns nil (use Go's defaults, including the x509roots fallback
// in scratch images) when nothing extra is configured.
func RootCAs(extra []string) (*x509.CertPool, error) {
	return rootCAs(extra, systemBundles)
}

func rootCAs(extra, system []string) (*x509.CertPool, error) {
	type bundle struct{ path, from string }
	var files []bundle
	for _, f := range extra {
		files = append(files, bundle{f, "CA file"})
	}
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		files = append(files, bundle{f, "SSL_CERT_FILE"})
	}
	var dirFiles []string
	if d := os.Getenv("SSL_CERT_DIR"); d != "" {
		for _, dir := range filepath.SplitList(d) {
			m, _ := filepath.Glob(filepath.Join(dir, "*"))
			dirFiles = append(dirFiles, m...)
		}
	}
	if len(files) == 0 && len(dirFiles) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	systemRead := false
	for _, f := range system {
		if pem, err := os.ReadFile(f); err == nil && pool.AppendCertsFromPEM(pem) {
			systemRead = true
		}
	}
	if !systemRead {
		// A scratch image has no system bundle: start from the roots compiled
		// into the binary (the same ones x509roots/fallback installs), so an
		// extra CA adds to them rather than replacing them.
		for r := range fallbackroots.Roots() {
			cert, err := x509.ParseCertificate(r.Certificate)
			if err != nil {
				continue
			}
			if r.Constraint == nil {
				pool.AddCert(cert)
			} else {
				pool.AddCertWithConstraint(cert, r.Constraint)
			}
		}
	}
	for _, b := range files {
		pem, err := os.ReadFile(b.path)
		if err != nil {
			return nil, fmt.Errorf("read the %s %s: %w; point it at a readable PEM bundle of CA certificates", b.from, b.path, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read the %s %s: no PEM certificate in it; point it at a PEM bundle (-----BEGIN CERTIFICATE-----) of CA certificates", b.from, b.path)
		}
	}
	for _, f := range dirFiles {
		// A directory holds links, hash files and the odd non-PEM file;
		// Go's own SSL_CERT_DIR handling skips those too.
		if pem, err := os.ReadFile(f); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
	}
	return pool, nil
}

// NewTransport returns an HTTP/1.1 transport that honours HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY and trusts RootCAs. HTTP/1.1 is what the official
// agent forces on Linux and macOS (VssUtil.cs).
//
// The proxy settings are read now rather than through
// http.ProxyFromEnvironment, which reads them once per process: a transport
// then always follows the environment it was made in. As there, requests to
// localhost and loopback addresses never go through the proxy.
func NewTransport(opts TransportOptions) (*http.Transport, error) {
	proxy := httpproxy.FromEnvironment().ProxyFunc()
	t := &http.Transport{
		Proxy: func(r *http.Request) (*url.URL, error) { return proxy(r.URL) },
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConns:          20,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	pool, err := RootCAs(opts.CAFiles)
	if err != nil {
		return nil, err
	}
	t.TLSClientConfig.RootCAs = pool
	return t, nil
}

package azdo

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
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

// RootCAs returns the system roots plus SSL_CERT_FILE, SSL_CERT_DIR and extra
// files. It returns nil (use Go's defaults, including the x509roots fallback
// in scratch images) when nothing extra is configured.
func RootCAs(extra []string) (*x509.CertPool, error) {
	files := append([]string(nil), extra...)
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		files = append(files, f)
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
	for _, f := range systemBundles {
		if pem, err := os.ReadFile(f); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle %s: %w", f, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA bundle %s: no PEM certificates in it", f)
		}
	}
	for _, f := range dirFiles {
		if pem, err := os.ReadFile(f); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
	}
	return pool, nil
}

// NewTransport returns an HTTP/1.1 transport that honours HTTPS_PROXY,
// HTTP_PROXY and NO_PROXY and trusts RootCAs. HTTP/1.1 is what the official
// agent forces on Linux and macOS (VssUtil.cs).
func NewTransport(opts TransportOptions) (*http.Transport, error) {
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
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

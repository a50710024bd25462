package identity

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/managedidentity"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/wire"
)

// adoResource is the Azure DevOps resource (the scope without "/.default").
var adoResource = strings.TrimSuffix(wire.AzureDevOpsScope, "/.default")

// isAzureDevOpsAudience accepts the audiences an Entra access token for Azure
// DevOps carries: the resource's app id, or its app id URIs.
func isAzureDevOpsAudience(auds []string) bool {
	for _, a := range auds {
		a = strings.TrimSuffix(strings.ToLower(a), "/")
		switch a {
		case adoResource, "api://" + adoResource, "https://app.vssps.visualstudio.com":
			return true
		}
	}
	return false
}

// forceClaims makes MSAL's managed identity client skip its cache, which is
// process-wide (a package variable in MSAL's managedidentity package), so a
// new credential instance would not bypass it. MSAL v1.10.1 only tests the
// claims for emptiness and sends nothing of them to the App Service or IMDS
// endpoints (managedidentity.go, AcquireToken).
const forceClaims = `{"access_token":{}}`

// tokenCredential is what every azidentity credential implements.
type tokenCredential interface {
	GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error)
}

// credential wraps one azidentity credential: it knows what it was built
// from, so failures can be explained, and how to bypass azidentity's cache
// when a token was rejected.
type credential struct {
	kind       string
	desc       string
	clientID   string
	tenantID   string
	tokenFile  string // workload identity
	thumbprint string // certificate
	endpoint   string // "Entra", "the managed identity endpoint", "IMDS", "az"
	secrets    []string
	now        func() time.Time

	// newCred builds a fresh credential. Confidential clients (workload
	// identity, service principals) keep their MSAL cache per instance, so a
	// fresh instance is guaranteed to ask Entra. Managed identity instead
	// bypasses MSAL's process-wide cache with claims; the CLI credential has
	// no cache (az keeps its own).
	newCred      func() (tokenCredential, error)
	claimsBypass bool
	renewOnForce bool

	mu        sync.Mutex
	current   tokenCredential
	federated federatedInfo
	assertion string // last federated token read, for redaction
}

type federatedInfo struct {
	issuer, subject string
	audience        []string
	expires         time.Time
}

func (c *credential) instance(force bool) (tokenCredential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == nil || (force && c.renewOnForce) {
		cred, err := c.newCred()
		if err != nil {
			return nil, c.fail(err, "", "")
		}
		c.current = cred
	}
	return c.current, nil
}

func (c *credential) secretList() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.secrets...)
	if c.assertion != "" {
		out = append(out, c.assertion)
	}
	return out
}

func (c *credential) source(log *slog.Logger) *Source {
	cache := newCachedSource(c.kind, c.fetch, log, c.now)
	return &Source{TokenSource: cache, Kind: c.kind, describe: func() string { return c.desc }}
}

func (c *credential) fetch(ctx context.Context, force bool) (fetched, error) {
	if c.tokenFile != "" {
		// Read it here as well as in the assertion callback: azidentity turns
		// callback errors into strings, and this one deserves its own advice.
		if _, err := c.federatedToken(); err != nil {
			return fetched{}, err
		}
	}
	cred, err := c.instance(force)
	if err != nil {
		return fetched{}, err
	}
	opts := policy.TokenRequestOptions{Scopes: []string{wire.AzureDevOpsScope}}
	if force && c.claimsBypass {
		opts.Claims = forceClaims
	}
	at, err := cred.GetToken(ctx, opts)
	if err != nil {
		return fetched{}, c.explain(err)
	}
	if at.Token == "" {
		return fetched{}, c.fail(nil, "the answer held no access token", "")
	}
	if p, ok := decodeJWT(at.Token); ok {
		if auds := p.audiences(); len(auds) > 0 && !isAzureDevOpsAudience(auds) {
			return fetched{}, c.fail(nil,
				fmt.Sprintf("%s returned a token for audience %q instead of Azure DevOps (%s)", c.endpoint, strings.Join(auds, ","), adoResource),
				"the endpoint ignored the requested resource: check that "+endpointVar(c.kind)+" points at the platform's own identity endpoint, not a proxy that hands out tokens for another resource")
		}
	}
	return fetched{
		tok:       azdo.Token{Scheme: "Bearer", Value: at.Token, ExpiresOn: at.ExpiresOn},
		refreshOn: at.RefreshOn,
	}, nil
}

func endpointVar(kind string) string {
	if kind == KindManagedIdentity {
		return "IDENTITY_ENDPOINT"
	}
	return "AZURE_AUTHORITY_HOST"
}

func (c *credential) fail(err error, answer, fix string) *Error {
	return &Error{Credential: c.desc, Op: "get Azure DevOps token", Answer: answer, Fix: fix, Err: err, secrets: c.secretList()}
}

// explain turns an azidentity error into one that says what was answered and
// what to do.
func (c *credential) explain(err error) error {
	if a, ok := answerOf(err); ok {
		fix := ""
		if c.kind == KindManagedIdentity {
			fix = managedIdentityFix(c, a)
		}
		if fix == "" {
			fix = entraFix(c, a.AADSTS)
		}
		return c.fail(err, c.endpoint+" answered "+a.String(), fix)
	}
	msg := err.Error()
	// IMDS answers 400 for an unassigned system identity; azidentity reports
	// that without the response but quotes the body.
	if i := strings.Index(msg, "responded with "); i >= 0 && c.kind == KindManagedIdentity {
		a := parseAnswer(http.StatusBadRequest, []byte(strings.TrimSpace(msg[i+len("responded with "):])))
		return c.fail(err, c.endpoint+" answered "+a.String(), managedIdentityFix(c, a))
	}
	msg = summarize(stripCredName(msg))
	var fix string
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		fix = "no answer in time from " + c.endpoint + ": check the network path (HTTPS_PROXY / NO_PROXY)"
	case c.kind == KindAzureCLI && strings.Contains(msg, "az login"):
		fix = "run `az login` (with --tenant for the organization's tenant)"
	case c.kind == KindAzureCLI && strings.Contains(msg, "not found on path"):
		fix = "install the Azure CLI, or choose another --auth"
	case c.kind == KindAzureCLI:
		if m := aadstsRE.FindStringSubmatch(msg); m != nil {
			fix = entraFix(c, m[1])
		}
	case isNetError(err):
		if c.kind == KindManagedIdentity && c.endpoint == "IMDS" {
			fix = "IMDS (169.254.169.254) did not answer: this is not an Azure VM, VM scale set or AKS node with a managed identity. On Container Apps or App Service, IDENTITY_ENDPOINT and IDENTITY_HEADER are set for you"
		} else {
			fix = "could not reach " + c.endpoint + ": check the network path, HTTPS_PROXY / NO_PROXY and " + endpointVar(c.kind)
		}
	}
	return c.fail(err, msg, fix)
}

var credNameRE = regexp.MustCompile(`^[A-Za-z]+Credential: `)

func stripCredName(s string) string { return credNameRE.ReplaceAllString(s, "") }

func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.As(err, &ue) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "no such host") ||
		strings.Contains(err.Error(), "no route to host")
}

// federatedToken reads the workload identity token file on every call, so a
// token Kubernetes rotated is used at once.
func (c *credential) federatedToken() (string, error) {
	data, err := os.ReadFile(c.tokenFile)
	if err != nil {
		fix := "check that the pod runs with workload identity: label azure.workload.identity/use: \"true\" and a service account annotated with azure.workload.identity/client-id"
		if errors.Is(err, fs.ErrPermission) {
			fix = "goagent's user may not read the projected token: set the pod's fsGroup, or run as the user the volume belongs to"
		}
		return "", &Error{Credential: c.desc, Op: "read federated token", Err: err, Fix: fix}
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", &Error{Credential: c.desc, Op: "read federated token", Answer: "the file " + c.tokenFile + " is empty",
			Fix: "the token volume is not populated yet or is mounted wrongly; check the pod's service account token projection"}
	}
	info := federatedInfo{}
	if p, ok := decodeJWT(tok); ok {
		info = federatedInfo{issuer: p.str("iss"), subject: p.str("sub"), audience: p.audiences(), expires: p.time("exp")}
	}
	c.mu.Lock()
	c.federated, c.assertion = info, tok
	c.mu.Unlock()
	if !info.expires.IsZero() && c.now().After(info.expires) {
		return "", &Error{Credential: c.desc, Op: "read federated token", secrets: []string{tok},
			Answer: "the token in " + c.tokenFile + " expired at " + info.expires.UTC().Format(time.RFC3339),
			Fix:    "Kubernetes should rotate it well before that: check that the token is a projected volume (not a copied file) and that the kubelet is healthy"}
	}
	return tok, nil
}

// authorityHost is AZURE_AUTHORITY_HOST or the public cloud. It is passed to
// azidentity explicitly so Config.Env decides, not the process environment.
func (r *resolver) authorityHost() (string, error) {
	host := r.env(envAuthorityHost)
	if host == "" {
		return cloud.AzurePublic.ActiveDirectoryAuthorityHost, nil
	}
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("AZURE_AUTHORITY_HOST=%q: must be an https URL such as https://login.microsoftonline.us/", host)
	}
	return host, nil
}

// clientOptions are the azidentity options every credential shares.
// Instance discovery is always off: for the public and national clouds MSAL
// trusts the host anyway and skips it; for any other host it would call
// login.microsoft.com, which a disconnected cloud cannot reach — and the host
// comes from the operator's own AZURE_AUTHORITY_HOST.
func (r *resolver) clientOptions(host string) azcore.ClientOptions {
	co := azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: host}}
	co.Telemetry.ApplicationID = "goagent"
	var next interface {
		Do(*http.Request) (*http.Response, error)
	} = http.DefaultClient
	if r.cfg.HTTPClient != nil {
		next = r.cfg.HTTPClient
	}
	co.Transport = clientCredentialsScope{next: next}
	if r.cfg.retry != nil {
		co.Retry = *r.cfg.retry
	}
	return co
}

var tenantRE = regexp.MustCompile(`^[0-9A-Za-z.-]+$`)

// appIDs reads AZURE_CLIENT_ID and AZURE_TENANT_ID, naming what is missing.
func (r *resolver) appIDs(what string, extra ...string) (clientID, tenantID string, err error) {
	clientID, tenantID = r.env(envClientID), r.env(envTenantID)
	var missing []string
	for _, name := range extra {
		if r.env(name) == "" {
			missing = append(missing, name)
		}
	}
	if clientID == "" {
		missing = append(missing, envClientID)
	}
	if tenantID == "" {
		missing = append(missing, envTenantID)
	}
	if len(missing) > 0 {
		return "", "", fmt.Errorf("%s needs %s; not set: %s", what, strings.Join(append(extra, envClientID, envTenantID), ", "), strings.Join(missing, ", "))
	}
	if !tenantRE.MatchString(tenantID) {
		return "", "", fmt.Errorf("%s: AZURE_TENANT_ID=%q is not a tenant id or domain (use the GUID from Microsoft Entra ID → Overview)", what, tenantID)
	}
	return clientID, tenantID, nil
}

func (r *resolver) workloadIdentity() (*Source, error) {
	clientID, tenantID, err := r.appIDs("workload identity", envFederatedTokenFile)
	if err != nil {
		return nil, fmt.Errorf("%w (on AKS: label the pod azure.workload.identity/use: \"true\" and annotate its service account with azure.workload.identity/client-id)", err)
	}
	host, err := r.authorityHost()
	if err != nil {
		return nil, err
	}
	c := &credential{
		kind: KindWorkloadIdentity, clientID: clientID, tenantID: tenantID, endpoint: "Entra",
		tokenFile: r.env(envFederatedTokenFile), renewOnForce: true, now: r.now,
	}
	c.desc = fmt.Sprintf("workload identity (client id %s, tenant %s, federated token file %s, authority %s)", clientID, tenantID, c.tokenFile, host)
	opts := &azidentity.ClientAssertionCredentialOptions{ClientOptions: r.clientOptions(host), DisableInstanceDiscovery: true}
	c.newCred = func() (tokenCredential, error) {
		return azidentity.NewClientAssertionCredential(tenantID, clientID, func(context.Context) (string, error) {
			return c.federatedToken()
		}, opts)
	}
	if _, err := c.instance(false); err != nil {
		return nil, err
	}
	return c.source(r.log), nil
}

// Variables MSAL's managed identity client reads from the process
// environment (managedidentity.GetSource and the request builders).
var msalEnv = []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"}

func (r *resolver) managedIdentity() (*Source, error) {
	for _, name := range msalEnv {
		if r.env(name) != strings.TrimSpace(os.Getenv(name)) {
			return nil, fmt.Errorf("managed identity: azidentity reads %s from the process environment, and it differs from goagent's configuration; set it in the environment", name)
		}
	}
	source, err := managedidentity.GetSource()
	if err != nil {
		return nil, fmt.Errorf("managed identity: detect the identity endpoint: %w", err)
	}
	c := &credential{kind: KindManagedIdentity, clientID: r.env(envClientID), claimsBypass: true, now: r.now,
		endpoint: "the managed identity endpoint", secrets: []string{r.env(envIdentityHeader), r.env("MSI_SECRET")}}
	where := ""
	switch source {
	case managedidentity.AppService:
		where = "Container Apps/App Service endpoint " + r.env(envIdentityEndpoint)
	case managedidentity.DefaultToIMDS:
		where = "IMDS"
		c.endpoint = "IMDS"
	default:
		where = string(source) + " endpoint"
	}
	who := "system-assigned"
	opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: r.clientOptions(cloud.AzurePublic.ActiveDirectoryAuthorityHost)}
	if c.clientID != "" {
		who = "user-assigned client id " + c.clientID
		opts.ID = azidentity.ClientID(c.clientID)
	}
	c.desc = fmt.Sprintf("managed identity (%s, %s)", where, who)
	c.newCred = func() (tokenCredential, error) { return azidentity.NewManagedIdentityCredential(opts) }
	if _, err := c.instance(false); err != nil {
		return nil, err
	}
	return c.source(r.log), nil
}

func (r *resolver) clientSecret() (*Source, error) {
	clientID, tenantID, err := r.appIDs("service principal with a secret")
	if err != nil {
		return nil, err
	}
	host, err := r.authorityHost()
	if err != nil {
		return nil, err
	}
	secret := r.env(envClientSecret)
	c := &credential{kind: KindServicePrincipal, clientID: clientID, tenantID: tenantID, endpoint: "Entra",
		renewOnForce: true, now: r.now, secrets: []string{secret}}
	c.desc = fmt.Sprintf("service principal (client id %s, tenant %s, secret from AZURE_CLIENT_SECRET, authority %s)", clientID, tenantID, host)
	opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: r.clientOptions(host), DisableInstanceDiscovery: true}
	c.newCred = func() (tokenCredential, error) {
		return azidentity.NewClientSecretCredential(tenantID, clientID, secret, opts)
	}
	if _, err := c.instance(false); err != nil {
		return nil, err
	}
	return c.source(r.log), nil
}

func (r *resolver) clientCertificate() (*Source, error) {
	clientID, tenantID, err := r.appIDs("service principal with a certificate", envCertPath)
	if err != nil {
		return nil, err
	}
	host, err := r.authorityHost()
	if err != nil {
		return nil, err
	}
	path, password := r.env(envCertPath), r.cfg.Env(envCertPassword)
	readErr := func(err error, answer, fix string) error {
		return &Error{Credential: "service principal certificate " + path, Op: "read certificate", Err: err, Answer: answer, Fix: fix, secrets: []string{password}}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readErr(err, "", "check AZURE_CLIENT_CERTIFICATE_PATH and that the secret holding the certificate is mounted")
	}
	// azidentity reads PEM only when no password is given; a password can
	// only belong to a PKCS#12 archive, since encrypted PEM keys are not
	// supported anyway.
	var pw []byte
	if password != "" && !bytes.Contains(data, []byte("-----BEGIN ")) {
		pw = []byte(password)
	}
	certs, key, err := azidentity.ParseCertificates(data, pw)
	if err != nil {
		return nil, readErr(err, summarize(redact(err.Error(), []string{password})),
			"the file must hold a PEM certificate with an unencrypted private key, or a PKCS#12 (.pfx) archive; set AZURE_CLIENT_CERTIFICATE_PASSWORD if the archive has a password")
	}
	sum := sha1.Sum(certs[0].Raw)
	c := &credential{kind: KindServicePrincipal, clientID: clientID, tenantID: tenantID, endpoint: "Entra",
		renewOnForce: true, now: r.now, secrets: []string{password}, thumbprint: strings.ToUpper(hex.EncodeToString(sum[:]))}
	c.desc = fmt.Sprintf("service principal (client id %s, tenant %s, certificate %s with thumbprint %s, authority %s)", clientID, tenantID, path, c.thumbprint, host)
	opts := &azidentity.ClientCertificateCredentialOptions{
		ClientOptions:            r.clientOptions(host),
		DisableInstanceDiscovery: true,
		SendCertificateChain:     strings.EqualFold(r.env(envSendCertChain), "true") || r.env(envSendCertChain) == "1",
	}
	c.newCred = func() (tokenCredential, error) {
		return azidentity.NewClientCertificateCredential(tenantID, clientID, certs, key, opts)
	}
	if _, err := c.instance(false); err != nil {
		return nil, err
	}
	return c.source(r.log), nil
}

// findAzureCLI reports where az is, if azidentity could run it: it needs
// /bin/sh (absent from scratch and distroless images) and az on PATH.
func (r *resolver) findAzureCLI() (string, bool) {
	if st, err := os.Stat("/bin/sh"); err != nil || st.IsDir() {
		return "", false
	}
	for _, dir := range filepath.SplitList(r.env("PATH")) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "az")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

func (r *resolver) azureCLI() (*Source, error) {
	az, ok := r.findAzureCLI()
	if !ok {
		return nil, errors.New("azure-cli: the Azure CLI needs /bin/sh and `az` on PATH, and this system lacks one of them; install it, or choose another --auth")
	}
	tenantID := r.env(envTenantID)
	if tenantID != "" && !tenantRE.MatchString(tenantID) {
		return nil, fmt.Errorf("azure-cli: AZURE_TENANT_ID=%q is not a tenant id or domain", tenantID)
	}
	c := &credential{kind: KindAzureCLI, tenantID: tenantID, endpoint: "az", now: r.now}
	c.desc = "Azure CLI (" + az
	if tenantID != "" {
		c.desc += ", tenant " + tenantID
	}
	c.desc += ")"
	c.newCred = func() (tokenCredential, error) {
		return azidentity.NewAzureCLICredential(&azidentity.AzureCLICredentialOptions{TenantID: tenantID})
	}
	if _, err := c.instance(false); err != nil {
		return nil, err
	}
	return c.source(r.log), nil
}

// IMDS probing, as DefaultAzureCredential does it: one request without the
// Metadata header, which IMDS answers at once with a JSON error.
const (
	imdsTokenURL     = "http://169.254.169.254/metadata/identity/oauth2/token"
	imdsProbeTimeout = time.Second
)

// probeIMDS reports whether something that looks like IMDS answers. Unlike
// azidentity's probe, any answer is not enough: a proxy or Docker Desktop
// answering for 169.254.169.254 would otherwise send the agent down a dead
// end, so the answer must be a JSON object with an "error" member.
func (r *resolver) probeIMDS(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, imdsProbeTimeout)
	defer cancel()
	client := r.cfg.HTTPClient
	if client == nil {
		// IMDS is link-local: never through a proxy.
		client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, imdsTokenURL+"?api-version=2018-02-01", nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		r.log.Debug("IMDS probe: no answer", "error", err)
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var v map[string]any
	if json.Unmarshal(body, &v) != nil || v["error"] == nil {
		r.log.Debug("IMDS probe: the answer is not from IMDS", "status", resp.StatusCode)
		return false
	}
	return true
}

// clientCredentialsScope sends the client-credentials token request with
// the scope the official agent sends (MSAL.NET AcquireTokenForClient:
// "<resource>/.default" alone). MSAL for Go appends the OIDC scopes "openid
// offline_access profile" to every confidential-client request; they mean
// nothing for an app-only token and strict authorities reject them.
type clientCredentialsScope struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
}

func (c clientCredentialsScope) Do(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/oauth2/v2.0/token") || req.Body == nil {
		return c.next.Do(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err == nil && form.Get("grant_type") == "client_credentials" {
		var keep []string
		for _, sc := range strings.Fields(form.Get("scope")) {
			switch sc {
			case "openid", "offline_access", "profile":
			default:
				keep = append(keep, sc)
			}
		}
		form.Set("scope", strings.Join(keep, " "))
		body = []byte(form.Encode())
	}
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c.next.Do(req)
}

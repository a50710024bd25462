// Package listener is the agent's lifecycle against Azure DevOps
// (../shared/protocol/listener.md §3–§6): register, replace and remove the
// agent; open a session; long-poll the message queue, decrypt and dispatch
// messages; renew the job lock; finish the job; and, in --once mode, take one
// job, then delete the session and the agent and leave nothing behind.
package listener

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/wire"
)

// ErrShutdown is the cancellation cause of a job when the agent stops
// (SIGTERM, SIGINT): the job is cancelled through the normal path and
// reported canceled, then the agent cleans up and exits.
var ErrShutdown = jobs.ErrAgentShutdown

// JobRunner runs one job. The real one is Engine (internal/jobs with the
// HTTP reporter); tests can substitute their own.
type JobRunner interface {
	RunJob(ctx context.Context, job *Job) (result string, err error)
}

// Job is a dispatched job request.
type Job struct {
	Message *wire.JobRequestMessage
	// Client is the job's own connection: the SystemVssConnection URL,
	// authenticated with the job's access token, never the agent's.
	Client *azdo.Client
	// Hard is closed when the cancel timeout expired: kill everything now.
	Hard <-chan struct{}
	// FeedInterval receives JobMetadataUpdate's line posting rate.
	FeedInterval <-chan time.Duration
	RunOnce      bool
}

// Config configures an Agent. Zero durations take the official values.
type Config struct {
	ServerURL string
	Pool      string
	AgentName string
	WorkDir   string
	StateDir  string
	Replace   bool
	Once      bool
	// Placeholder registers (if needed), opens no session and returns.
	Placeholder bool
	// IdleTimeout: with Once, leave cleanly when no job arrived in time.
	IdleTimeout      time.Duration
	UserCapabilities map[string]string // --capability: reported among the system capabilities
	AgentVersion     string            // reported, official-compatible
	GoagentVersion   string
	Env              []string // process environment, for capabilities

	// Registration authenticates register/replace/remove (PAT or Entra).
	Registration azdo.TokenSource
	// RegistrationName describes it in errors: "managed identity (…)";
	// RegistrationKind is its identity.Kind*, for the advice given.
	RegistrationName string
	RegistrationKind string
	HTTPClient       *http.Client
	Locations        *azdo.Locations
	Runner           JobRunner
	Logger           *slog.Logger

	RenewPeriod      time.Duration // 60 s
	KeepAlivePeriod  time.Duration // 30 s
	PollTimeout      time.Duration // request timeout of a long poll, 100 s
	CancelFloor      time.Duration // minimum cancel timeout, 60 s
	SessionRetry     time.Duration // 30 s
	SessionConflict  time.Duration // give up after 4 min of conflicts
	ErrorBackoffBase time.Duration // first poll error backoff, 2 s
	ZombieGrace      time.Duration // wait for a finishing job before the next, 45 s
}

// Agent is one agent process.
type Agent struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	running *runningJob
	tokens  azdo.TokenSource // the agent's own credential, once registered
}

// New validates cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.ServerURL == "" {
		return nil, errors.New("no Azure DevOps URL: set --url or AZP_URL (https://dev.azure.com/ORG)")
	}
	if _, err := azdo.ParseBaseURL(cfg.ServerURL); err != nil {
		return nil, err
	}
	if cfg.Pool == "" {
		cfg.Pool = "Default"
	}
	if cfg.AgentName == "" {
		h, _ := os.Hostname()
		cfg.AgentName = h
	}
	if cfg.StateDir == "" {
		return nil, errors.New("no state directory")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RenewPeriod, 60*time.Second)
	def(&cfg.KeepAlivePeriod, 30*time.Second)
	def(&cfg.PollTimeout, azdo.DefaultTimeout)
	def(&cfg.CancelFloor, 60*time.Second)
	def(&cfg.SessionRetry, 30*time.Second)
	def(&cfg.SessionConflict, 4*time.Minute)
	def(&cfg.ErrorBackoffBase, 2*time.Second)
	def(&cfg.ZombieGrace, 45*time.Second)
	if cfg.HTTPClient == nil {
		t, err := azdo.NewTransport(azdo.TransportOptions{})
		if err != nil {
			return nil, err
		}
		cfg.HTTPClient = &http.Client{Transport: t}
	}
	if cfg.Locations == nil {
		cfg.Locations = azdo.NewLocations()
	}
	return &Agent{cfg: cfg, log: cfg.Logger}, nil
}

// client builds a REST client for base authenticated by ts.
func (a *Agent) client(base string, ts azdo.TokenSource) (*azdo.Client, error) {
	return azdo.New(base, ts, azdo.Options{
		HTTPClient: a.cfg.HTTPClient,
		UserAgent:  UserAgent(a.cfg.AgentVersion, a.cfg.GoagentVersion),
		Locations:  a.cfg.Locations,
		Logger:     a.log,
	})
}

// UserAgent is the official agent's User-Agent shape (listener.md §1.5),
// with goagent named at the end so servers and proxies can tell.
func UserAgent(agentVersion, goagentVersion string) string {
	os := osDescription()
	return fmt.Sprintf("VstsAgentCore-%s/%s (%s) VSServices/19.255.0 (NetStandard; %s) goagent/%s",
		wire.PackageRuntime(), agentVersion, os, os, goagentVersion)
}

// jobServerURL is where a job's own calls go: the SystemVssConnection URL,
// with scheme, host and port replaced by the agent's server URL on
// on-premises servers (JobDispatcher.CreateJobServerConnectionAsync).
func jobServerURL(msg *wire.JobRequestMessage, serverURL string) (string, error) {
	sc := msg.SystemConnection()
	if sc == nil || sc.URL == "" {
		return "", errors.New("the job message has no SystemVssConnection endpoint")
	}
	st := ""
	for k, v := range msg.Variables {
		if strings.EqualFold(k, "system.serverType") {
			st = v.Value
		}
	}
	if strings.EqualFold(st, "Hosted") {
		return sc.URL, nil
	}
	ju, err := url.Parse(sc.URL)
	if err != nil {
		return "", fmt.Errorf("SystemVssConnection URL %q: %w", sc.URL, err)
	}
	su, err := url.Parse(serverURL)
	if err != nil {
		return "", err
	}
	ju.Scheme, ju.Host = su.Scheme, su.Host
	return ju.String(), nil
}

// agentCredential loads the agent's key and OAuth registration from the
// state directory and returns its own credential (JWT client assertion →
// access token), kept for the life of the process.
func (a *Agent) agentCredential() (*rsa.PrivateKey, azdo.TokenSource, error) {
	key, _, err := identity.LoadOrCreateKey(a.cfg.StateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("load the agent key from %s: %w", a.cfg.StateDir, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tokens != nil {
		return key, a.tokens, nil
	}
	data, err := identity.LoadCredential(a.cfg.StateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("load the agent credential from %s: %w (register again: delete the state directory)", a.cfg.StateDir, err)
	}
	cred, err := identity.NewAgentCredential(key, data, identity.AgentCredentialOptions{
		HTTPClient: a.cfg.HTTPClient,
		UserAgent:  UserAgent(a.cfg.AgentVersion, a.cfg.GoagentVersion),
		Logger:     a.log,
	})
	if err != nil {
		return nil, nil, err
	}
	a.tokens = cred
	return key, cred, nil
}

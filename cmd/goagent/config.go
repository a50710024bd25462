package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultAgentVersion is the official agent version goagent reports, so that
// pipelines demanding a minimum Agent.Version are served (listener.md §6.2).
const DefaultAgentVersion = "4.275.0"

// agentConfig is the configuration shared by run, register, remove and check.
// Precedence: flag > environment > default (DESIGN.md).
type agentConfig struct {
	URL          string
	Pool         string
	Agent        string
	Work         string
	StateDir     string
	Token        string
	TokenFile    string
	Auth         string
	Once         bool
	Placeholder  bool
	Replace      bool
	IdleTimeout  time.Duration
	Capabilities []string
	PassEnv      []string
	AgentVersion string
	LogFormat    string
	Debug        bool
	KillGrace    time.Duration

	// Test-only knobs (not flags, not documented to users): the end-to-end
	// tests shorten the official periods so that renewals and session
	// retries can be observed in seconds. Zero keeps the official values.
	//   GOAGENT_RENEW_PERIOD   job lock renewal period (official: 60 s)
	//   GOAGENT_SESSION_RETRY  wait between session creation attempts (official: 30 s)
	RenewPeriod  time.Duration
	SessionRetry time.Duration
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// getenv reads NAME, then the official agent's VSTS_AGENT_INPUT_<alias>.
func getenv(name string, aliases ...string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	for _, a := range aliases {
		if v := os.Getenv("VSTS_AGENT_INPUT_" + strings.ToUpper(a)); v != "" {
			return v
		}
	}
	return ""
}

func envBool(name string) bool {
	v := strings.TrimSpace(os.Getenv(name))
	b, err := strconv.ParseBool(v)
	return err == nil && b || v == "1" || strings.EqualFold(v, "yes")
}

// bindAgentFlags declares the shared flags; finish() applies env and defaults.
func bindAgentFlags(fs *flag.FlagSet, c *agentConfig) func() error {
	var caps, pass stringList
	var idle, grace string
	replace := fs.Bool("replace", true, "replace an existing agent of the same name (AZP_REPLACE)")
	fs.StringVar(&c.URL, "url", "", "organization URL, https://dev.azure.com/ORG (AZP_URL)")
	fs.StringVar(&c.Pool, "pool", "", "agent pool name (AZP_POOL, default Default)")
	fs.StringVar(&c.Agent, "agent", "", "agent name (AZP_AGENT_NAME, default the host name)")
	fs.StringVar(&c.Work, "work", "", "work directory (AZP_WORK, default _work)")
	fs.StringVar(&c.StateDir, "state-dir", "", "state directory, files 0600 (AZP_STATE_DIR, default .goagent beside the work directory)")
	fs.StringVar(&c.Token, "token", "", "a PAT or an Entra access token (AZP_TOKEN); prefer --token-file or an identity")
	fs.StringVar(&c.TokenFile, "token-file", "", "file holding the token, re-read on every refresh (AZP_TOKEN_FILE)")
	fs.StringVar(&c.Auth, "auth", "", "auto|pat|managed-identity|workload-identity|service-principal|azure-cli (AZP_AUTH, default auto)")
	fs.BoolVar(&c.Once, "once", false, "run one job, then unregister and exit (AZP_ONCE)")
	fs.BoolVar(&c.Placeholder, "placeholder", false, "register an offline placeholder agent and exit (AZP_PLACEHOLDER=1)")
	fs.StringVar(&idle, "idle-timeout", "", "with --once, leave after this long without a job, e.g. 10m (AZP_IDLE_TIMEOUT)")
	fs.Var(&caps, "capability", "user capability key=value, repeatable (AZP_CAPABILITIES=k=v,k2=v2)")
	fs.Var(&pass, "pass-env", "an agent credential variable to pass to steps anyway, repeatable (AZP_PASS_ENV=A,B)")
	fs.StringVar(&c.AgentVersion, "agent-version", "", "official agent version to report (AZP_AGENT_VERSION, default "+DefaultAgentVersion+")")
	fs.StringVar(&c.LogFormat, "log-format", "", "text|json (AZP_LOG_FORMAT, default text)")
	fs.BoolVar(&c.Debug, "debug", false, "debug diagnostics (AZP_DEBUG)")
	fs.StringVar(&grace, "kill-grace", "", "grace after SIGINT before SIGTERM for cancelled steps (AZP_KILL_GRACE, default 7.5s)")
	return func() error {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		str := func(p *string, env string, def string, aliases ...string) {
			if *p == "" {
				*p = getenv(env, aliases...)
			}
			if *p == "" {
				*p = def
			}
		}
		str(&c.URL, "AZP_URL", "", "url")
		str(&c.Pool, "AZP_POOL", "Default", "pool")
		host, _ := os.Hostname()
		str(&c.Agent, "AZP_AGENT_NAME", host, "agent")
		str(&c.Work, "AZP_WORK", "_work", "work")
		str(&c.TokenFile, "AZP_TOKEN_FILE", "")
		str(&c.Auth, "AZP_AUTH", "auto", "auth")
		str(&c.AgentVersion, "AZP_AGENT_VERSION", DefaultAgentVersion)
		str(&c.LogFormat, "AZP_LOG_FORMAT", "text")
		if c.Token == "" {
			c.Token = getenv("AZP_TOKEN", "token")
		}
		if !set["once"] && envBool("AZP_ONCE") {
			c.Once = true
		}
		if !set["placeholder"] && envBool("AZP_PLACEHOLDER") {
			c.Placeholder = true
		}
		if !set["debug"] && envBool("AZP_DEBUG") {
			c.Debug = true
		}
		c.Replace = *replace
		if !set["replace"] {
			if v := os.Getenv("AZP_REPLACE"); v != "" {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return usageError{fmt.Errorf("AZP_REPLACE=%q: want true or false", v)}
				}
				c.Replace = b
			}
		}
		if idle == "" {
			idle = os.Getenv("AZP_IDLE_TIMEOUT")
		}
		if idle != "" {
			d, err := parseDuration(idle)
			if err != nil {
				return usageError{fmt.Errorf("idle timeout %q: %w", idle, err)}
			}
			c.IdleTimeout = d
		}
		if grace == "" {
			grace = os.Getenv("AZP_KILL_GRACE")
		}
		if grace != "" {
			d, err := parseDuration(grace)
			if err != nil {
				return usageError{fmt.Errorf("kill grace %q: %w", grace, err)}
			}
			c.KillGrace = d
		}
		for env, d := range map[string]*time.Duration{"GOAGENT_RENEW_PERIOD": &c.RenewPeriod, "GOAGENT_SESSION_RETRY": &c.SessionRetry} {
			if v := os.Getenv(env); v != "" {
				p, err := parseDuration(v)
				if err != nil || p <= 0 {
					return usageError{fmt.Errorf("%s=%q: want a positive duration such as 500ms", env, v)}
				}
				*d = p
			}
		}
		c.Capabilities = caps
		if len(caps) == 0 {
			c.Capabilities = splitList(os.Getenv("AZP_CAPABILITIES"))
		}
		for _, kv := range c.Capabilities {
			if k, _, ok := strings.Cut(kv, "="); !ok || strings.TrimSpace(k) == "" {
				return usageError{fmt.Errorf("capability %q: want key=value", kv)}
			}
		}
		c.PassEnv = pass
		if len(pass) == 0 {
			c.PassEnv = splitList(os.Getenv("AZP_PASS_ENV"))
		}
		if c.StateDir == "" {
			c.StateDir = os.Getenv("AZP_STATE_DIR")
		}
		work, err := filepath.Abs(c.Work)
		if err != nil {
			return err
		}
		c.Work = work
		if c.StateDir == "" {
			c.StateDir = filepath.Join(filepath.Dir(work), ".goagent")
		}
		if c.StateDir, err = filepath.Abs(c.StateDir); err != nil {
			return err
		}
		if c.LogFormat != "text" && c.LogFormat != "json" {
			return usageError{fmt.Errorf("log format %q: want text or json", c.LogFormat)}
		}
		return nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// parseDuration accepts Go durations and plain seconds.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

func (c *agentConfig) userCapabilities() map[string]string {
	m := map[string]string{}
	for _, kv := range c.Capabilities {
		k, v, _ := strings.Cut(kv, "=")
		m[strings.TrimSpace(k)] = v
	}
	return m
}

// usageError exits with status 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/jobs"
	"github.com/goagent-dev/goagent/internal/listener"
	"github.com/goagent-dev/goagent/internal/steps"
	"github.com/goagent-dev/goagent/internal/steps/checkout"
	"github.com/goagent-dev/goagent/internal/steps/script"
)

// registry is the set of natively implemented tasks.
func registry() *steps.Registry {
	defs := append(script.Definitions(), checkout.Definition())
	return steps.NewRegistry(defs...)
}

// secretsOf lists the configured secrets so diagnostics can mask them.
func secretsOf(c *agentConfig) []string {
	var s []string
	for _, n := range []string{"AZP_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "IDENTITY_HEADER", "VSTS_AGENT_INPUT_TOKEN"} {
		if v := os.Getenv(n); v != "" {
			s = append(s, v)
		}
	}
	if c.Token != "" {
		s = append(s, c.Token)
	}
	return s
}

// setup resolves configuration, logger, transport and identity.
type setup struct {
	cfg    agentConfig
	log    *slog.Logger
	client *http.Client
	ident  *identity.Source
}

func parseAgentFlags(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*agentConfig, error) {
	fs := flag.NewFlagSet("goagent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c agentConfig
	finish := bindAgentFlags(fs, &c)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return &c, nil
}

func newSetup(ctx context.Context, c *agentConfig, stderr io.Writer, needIdentity bool) (*setup, error) {
	log := newLogger(stderr, c.LogFormat, c.Debug, secretsOf(c))
	t, err := azdo.NewTransport(azdo.TransportOptions{})
	if err != nil {
		return nil, fmt.Errorf("configure TLS: %w", err)
	}
	s := &setup{cfg: *c, log: log, client: &http.Client{Transport: t}}
	if !needIdentity {
		return s, nil
	}
	src, err := identity.Resolve(ctx, identity.Config{
		Auth: c.Auth, Token: c.Token, TokenFile: c.TokenFile, Env: os.Getenv, HTTPClient: s.client, Logger: log,
	})
	if errors.Is(err, identity.ErrUnknownAuth) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	s.ident = src
	return s, nil
}

func (s *setup) agent(placeholder bool) (*listener.Agent, error) {
	c := s.cfg
	runner := &jobs.Runner{
		Registry: registry(),
		WorkDir:  c.Work,
		Agent: jobs.AgentInfo{
			Name: c.Agent, Version: c.AgentVersion, GoVersion: version, MachineName: hostname(), HomeDir: exeDir(), ServerURL: c.URL, RunOnce: c.Once,
		},
		Env:       listener.ScrubEnv(os.Environ(), c.PassEnv),
		KillGrace: [2]time.Duration{c.KillGrace, 0},
		Logger:    s.log,
	}
	return listener.New(listener.Config{
		ServerURL:        c.URL,
		Pool:             c.Pool,
		AgentName:        c.Agent,
		WorkDir:          c.Work,
		StateDir:         c.StateDir,
		Replace:          c.Replace,
		Once:             c.Once,
		Placeholder:      placeholder,
		IdleTimeout:      c.IdleTimeout,
		RenewPeriod:      c.RenewPeriod,
		SessionRetry:     c.SessionRetry,
		UserCapabilities: c.userCapabilities(),
		AgentVersion:     c.AgentVersion,
		GoagentVersion:   version,
		Env:              os.Environ(),
		Registration:     s.ident,
		RegistrationName: s.ident.Describe(),
		RegistrationKind: s.ident.Kind,
		HTTPClient:       s.client,
		Runner:           &listener.Engine{Runner: runner, PagesDir: filepath.Join(c.Work, "_diag", "pages"), Logger: s.log},
		Logger:           s.log,
	})
}

// cmdRun is `goagent run` and `goagent register`.
func cmdRun(sig *signals, args []string, stdout, stderr io.Writer, registerOnly bool) error {
	name := "run"
	if registerOnly {
		name = "register"
	}
	c, err := parseAgentFlags(name, args, stderr, nil)
	if err != nil {
		return err
	}
	if c.URL == "" {
		return usageError{errors.New("no Azure DevOps URL: set --url or AZP_URL, e.g. https://dev.azure.com/ORG")}
	}
	s, err := newSetup(sig.ctx, c, stderr, true)
	if err != nil {
		return err
	}
	a, err := s.agent(c.Placeholder || registerOnly)
	if err != nil {
		return err
	}
	sig.setOnSecond(func() {
		s.log.Warn("second signal: stopping the job's processes now")
		a.Kill()
	})
	if registerOnly && !c.Placeholder {
		_, err := a.Register(sig.ctx)
		return err
	}
	return a.Run(sig.ctx)
}

// cmdRemove is `goagent remove`.
func cmdRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseAgentFlags("remove", args, stderr, nil)
	if err != nil {
		return err
	}
	if c.URL == "" {
		// The state directory knows where the agent is registered.
		if st, ok, _ := listener.LoadSettings(c.StateDir); ok {
			c.URL = st.ServerURL
			if c.Pool == "Default" {
				c.Pool = st.PoolName
			}
			c.Agent = st.AgentName
		}
	}
	if c.URL == "" {
		return usageError{errors.New("no Azure DevOps URL: set --url or AZP_URL (no registration found in the state directory either)")}
	}
	s, err := newSetup(ctx, c, stderr, true)
	if err != nil {
		return err
	}
	a, err := s.agent(false)
	if err != nil {
		return err
	}
	return a.Remove(ctx)
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func exeDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	return filepath.Dir(exe)
}

func trimURL(s string) string { return strings.TrimRight(s, "/") }

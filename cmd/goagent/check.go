package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/identity"
	"github.com/goagent-dev/goagent/internal/listener"
)

// cmdCheck resolves the identity as `run` would, gets a token, and reads the
// organization and the pool, printing what matters and never the token.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseAgentFlags("check", args, stderr, nil)
	if err != nil {
		return err
	}
	p := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	fail := func(cause error) error {
		p("not ready: %v", cause)
		return errCheckFailed
	}
	if c.URL == "" {
		return usageError{errors.New("no Azure DevOps URL: set --url or AZP_URL, e.g. https://dev.azure.com/ORG")}
	}
	s, err := newSetup(ctx, c, stderr, true)
	if err != nil {
		return fail(err)
	}
	p("organization: %s", trimURL(c.URL))
	p("pool:         %s", c.Pool)
	p("agent:        %s", c.Agent)
	p("credential:   %s", s.ident.Describe())
	tok, err := s.ident.Token(ctx, false)
	if err != nil {
		return fail(err)
	}
	p("token:        %s", identity.Describe(tok))
	cl, err := azdo.New(c.URL, s.ident, azdo.Options{HTTPClient: s.client, UserAgent: listener.UserAgent(c.AgentVersion, version), Logger: s.log})
	if err != nil {
		return fail(err)
	}
	cd, err := cl.ConnectionData(ctx)
	if err != nil {
		if errors.Is(err, azdo.ErrUnauthorized) {
			return fail(fmt.Errorf("%w\n  %s", err, identity.ExplainUnauthorized(s.ident.Kind)))
		}
		if errors.Is(err, azdo.ErrNotFound) || errors.Is(err, azdo.ErrLocationNotFound) {
			return fail(fmt.Errorf("%w\n  fix: --url must be the organization URL, e.g. https://dev.azure.com/ORG (or the collection URL of Azure DevOps Server)", err))
		}
		return fail(err)
	}
	if cd.AuthenticatedUser != nil && cd.AuthenticatedUser.ProviderDisplayName != nil {
		p("signed in as: %s", *cd.AuthenticatedUser.ProviderDisplayName)
	}
	if cd.DeploymentType != nil {
		p("deployment:   %s", *cd.DeploymentType)
	}
	pools, err := cl.PoolsByName(ctx, c.Pool)
	if err != nil {
		if errors.Is(err, azdo.ErrAccessDenied) {
			return fail(fmt.Errorf("%w\n  %s", err, identity.ExplainForbidden(s.ident.Kind)))
		}
		return fail(err)
	}
	if len(pools) == 0 || pools[0].Id == nil {
		return fail(fmt.Errorf("pool %q not found in %s, or %s cannot see it: create it (Organization settings → Agent pools) and give the identity the Administrator role on it", c.Pool, trimURL(c.URL), s.ident.Describe()))
	}
	p("pool id:      %d", *pools[0].Id)
	if _, err := cl.AgentsByName(ctx, *pools[0].Id, c.Agent); err != nil {
		if errors.Is(err, azdo.ErrAccessDenied) {
			return fail(fmt.Errorf("%w\n  %s", err, identity.ExplainForbidden(s.ident.Kind)))
		}
		return fail(err)
	}
	p("ready")
	return nil
}

var errCheckFailed = errors.New("check failed")

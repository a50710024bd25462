package listener

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/identity"
)

// Register makes sure this agent is registered (listener.md §3) and returns
// its settings. An existing registration in the state directory for the same
// server, pool and name is reused as it is.
func (a *Agent) Register(ctx context.Context) (Settings, error) {
	s, ok, err := LoadSettings(a.cfg.StateDir)
	if err != nil {
		return s, err
	}
	if ok && sameRegistration(s, a.cfg) {
		a.log.Info("using the existing registration", "agent", s.AgentName, "agentId", s.AgentID, "pool", s.PoolName, "stateDir", a.cfg.StateDir)
		return s, nil
	}
	return a.register(ctx)
}

func sameRegistration(s Settings, c Config) bool {
	su, err1 := azdo.ParseBaseURL(s.ServerURL)
	cu, err2 := azdo.ParseBaseURL(c.ServerURL)
	return err1 == nil && err2 == nil && su.String() == cu.String() &&
		equalFold(s.PoolName, c.Pool) && equalFold(s.AgentName, c.AgentName)
}

func (a *Agent) registrationClient() (*azdo.Client, error) {
	if a.cfg.Registration == nil {
		return nil, errors.New("no credential to register the agent with: set AZP_TOKEN (a PAT or an Entra token), or run where a managed or workload identity is available (see `goagent check`)")
	}
	return a.client(a.cfg.ServerURL, a.cfg.Registration)
}

// register registers or replaces the agent and writes the state files.
func (a *Agent) register(ctx context.Context) (Settings, error) {
	c, err := a.registrationClient()
	if err != nil {
		return Settings{}, err
	}
	who := a.cfg.RegistrationName
	if who == "" {
		who = "the configured identity"
	}
	cd, err := c.ConnectionData(ctx)
	if err != nil {
		if errors.Is(err, azdo.ErrNotFound) {
			// Nothing answers connectionData at this URL: not an organization.
			err = fmt.Errorf("%w: %w", err, azdo.ErrLocationNotFound)
		}
		return Settings{}, a.explain(err, fmt.Sprintf("connect to %s", redact(a.cfg.ServerURL)))
	}
	hosted := cd.DeploymentType != nil && equalFold(string(*cd.DeploymentType), "hosted")
	pool, err := a.findPool(ctx, c, who)
	if err != nil {
		return Settings{}, err
	}
	key, _, err := identity.LoadOrCreateKey(a.cfg.StateDir)
	if err != nil {
		return Settings{}, fmt.Errorf("create the agent key in %s: %w", a.cfg.StateDir, err)
	}
	caps := SystemCapabilities(a.cfg.Env, a.cfg.UserCapabilities, a.cfg.AgentName, a.cfg.AgentVersion, a.cfg.GoagentVersion)
	existing, err := c.AgentsByName(ctx, *pool.Id, a.cfg.AgentName)
	if err != nil {
		return Settings{}, a.explain(err, fmt.Sprintf("look up agent %q in pool %q", a.cfg.AgentName, a.cfg.Pool))
	}
	var agent *taskagent.TaskAgent
	if len(existing) == 0 {
		agent, err = c.AddAgent(ctx, *pool.Id, a.newAgent(key, caps))
		if err != nil {
			return Settings{}, a.explain(err, fmt.Sprintf("register agent %q in pool %q", a.cfg.AgentName, a.cfg.Pool))
		}
		a.log.Info("registered the agent", "agent", a.cfg.AgentName, "agentId", *agent.Id, "pool", a.cfg.Pool)
	} else {
		if !a.cfg.Replace {
			return Settings{}, fmt.Errorf("register agent %q in pool %q: an agent with that name already exists; pass --replace to take it over, or choose another --agent name", a.cfg.AgentName, a.cfg.Pool)
		}
		old := existing[0]
		upd := a.newAgent(key, caps)
		upd.Id = old.Id
		// Keep what the service knows (user capabilities set in the web UI,
		// enabled) and merge our system capabilities over the old ones
		// (ConfigurationManager.UpdateExistingAgent).
		upd.Enabled = old.Enabled
		upd.UserCapabilities = old.UserCapabilities
		if old.SystemCapabilities != nil {
			merged := map[string]string{}
			for k, v := range *old.SystemCapabilities {
				merged[k] = v
			}
			for k, v := range caps {
				merged[k] = v
			}
			upd.SystemCapabilities = &merged
		}
		agent, err = a.replaceWithRetry(ctx, c, *pool.Id, *old.Id, upd)
		if err != nil {
			return Settings{}, a.explain(err, fmt.Sprintf("replace agent %q (id %d) in pool %q", a.cfg.AgentName, *old.Id, a.cfg.Pool))
		}
		a.log.Info("replaced the existing agent", "agent", a.cfg.AgentName, "agentId", *agent.Id, "pool", a.cfg.Pool)
	}
	if agent.Authorization == nil || agent.Authorization.ClientId == nil || agent.Authorization.AuthorizationUrl == nil {
		return Settings{}, fmt.Errorf("register agent %q: the server returned no OAuth client for the agent (authorization.clientId/authorizationUrl); goagent needs an Azure DevOps Services or Server 2019+ organization", a.cfg.AgentName)
	}
	serverURL := a.cfg.ServerURL
	if su := serverURLProperty(agent.Properties); su != "" {
		serverURL = adoptPath(a.cfg.ServerURL, su)
	}
	authURL := *agent.Authorization.AuthorizationUrl
	endpoint := oauthEndpoint(authURL, serverURL, hosted)
	if err := identity.SaveCredential(a.cfg.StateDir, identity.CredentialData{ClientID: agent.Authorization.ClientId.String(), AuthorizationURL: authURL, OAuthEndpointURL: endpoint}); err != nil {
		return Settings{}, fmt.Errorf("save the agent credential: %w", err)
	}
	s := Settings{
		AgentID: *agent.Id, AgentName: a.cfg.AgentName, PoolID: *pool.Id, PoolName: *pool.Name,
		ServerURL: serverURL, WorkFolder: a.cfg.WorkDir, Placeholder: a.cfg.Placeholder,
	}
	if err := SaveSettings(a.cfg.StateDir, s); err != nil {
		return Settings{}, err
	}
	return s, nil
}

func (a *Agent) newAgent(key *rsa.PrivateKey, caps map[string]string) *taskagent.TaskAgent {
	name, version, osd := a.cfg.AgentName, a.cfg.AgentVersion, osDescription()
	maxPar := 1
	prov := "Provisioned"
	pk := identity.PublicKey(key)
	t := &taskagent.TaskAgent{
		Name: &name, Version: &version, OsDescription: &osd, MaxParallelism: &maxPar, ProvisioningState: &prov,
		Authorization:      &taskagent.TaskAgentAuthorization{PublicKey: &pk},
		SystemCapabilities: &caps,
	}
	return t
}

// replaceWithRetry retries timeouts only, 3 attempts, 2 s then 4 s
// (ConfigurationManager.UpdateAgentWithRetryAsync).
func (a *Agent) replaceWithRetry(ctx context.Context, c *azdo.Client, poolID, agentID int, t *taskagent.TaskAgent) (*taskagent.TaskAgent, error) {
	var err error
	for i := 0; i < 3; i++ {
		var out *taskagent.TaskAgent
		out, err = c.ReplaceAgent(ctx, poolID, agentID, t)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(2<<i) * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, err
}

func (a *Agent) findPool(ctx context.Context, c *azdo.Client, who string) (taskagent.TaskAgentPool, error) {
	pools, err := c.PoolsByName(ctx, a.cfg.Pool)
	if err != nil {
		return taskagent.TaskAgentPool{}, a.explain(err, fmt.Sprintf("look up pool %q", a.cfg.Pool))
	}
	if len(pools) == 0 || pools[0].Id == nil {
		return taskagent.TaskAgentPool{}, fmt.Errorf("pool %q not found in %s, or %s cannot see it: create the agent pool (Organization settings → Agent pools) and give the identity the Administrator role on it", a.cfg.Pool, redact(a.cfg.ServerURL), who)
	}
	p := pools[0]
	if p.Name == nil {
		p.Name = &a.cfg.Pool
	}
	return p, nil
}

// explain wraps a REST error with the operation and what to do about it.
func (a *Agent) explain(err error, op string) error {
	who := a.cfg.RegistrationName
	if who == "" {
		who = "the identity"
	}
	switch {
	case errors.Is(err, azdo.ErrUnauthorized):
		return fmt.Errorf("%s as %s: %w\n  %s", op, who, err, identity.ExplainUnauthorized(a.cfg.RegistrationKind))
	case errors.Is(err, azdo.ErrAccessDenied):
		return fmt.Errorf("%s as %s: %w\n  %s (pool %q)", op, who, err, identity.ExplainForbidden(a.cfg.RegistrationKind), a.cfg.Pool)
	case errors.Is(err, azdo.ErrLocationNotFound):
		return fmt.Errorf("%s: %w\n  fix: --url must be the organization URL, e.g. https://dev.azure.com/ORG (or the collection URL of Azure DevOps Server)", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Remove unregisters the agent and deletes the state directory's files.
func (a *Agent) Remove(ctx context.Context) error {
	s, ok, err := LoadSettings(a.cfg.StateDir)
	if err != nil {
		return err
	}
	c, err := a.registrationClient()
	if err != nil {
		return err
	}
	poolID, agentID := s.PoolID, s.AgentID
	if !ok {
		// No local state: find the agent by name, as config.sh remove does.
		pool, err := a.findPool(ctx, c, a.cfg.RegistrationName)
		if err != nil {
			return err
		}
		agents, err := c.AgentsByName(ctx, *pool.Id, a.cfg.AgentName)
		if err != nil {
			return a.explain(err, fmt.Sprintf("look up agent %q in pool %q", a.cfg.AgentName, a.cfg.Pool))
		}
		if len(agents) == 0 {
			a.log.Info("the agent is not registered", "agent", a.cfg.AgentName, "pool", a.cfg.Pool)
			return nil
		}
		poolID, agentID = *pool.Id, *agents[0].Id
	}
	if err := c.DeleteAgent(ctx, poolID, agentID); err != nil && !errors.Is(err, azdo.ErrNotFound) && !errors.Is(err, azdo.ErrAgentNotFound) {
		return a.explain(err, fmt.Sprintf("remove agent %q (id %d) from pool %q", a.cfg.AgentName, agentID, a.cfg.Pool))
	}
	a.log.Info("removed the agent", "agent", a.cfg.AgentName, "agentId", agentID)
	return a.removeState()
}

func (a *Agent) removeState() error {
	a.mu.Lock()
	a.tokens = nil
	a.mu.Unlock()
	if err := identity.Remove(a.cfg.StateDir); err != nil {
		return err
	}
	if err := os.Remove(a.cfg.StateDir + "/" + settingsFile); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove agent settings: %w", err)
	}
	_ = os.Remove(a.cfg.StateDir) // only if empty
	return nil
}

// serverURLProperty reads properties["ServerUrl"] of a TaskAgent, a
// property-bag entry {"$type":"System.String","$value":"…"} or a plain string.
func serverURLProperty(props any) string {
	m, ok := props.(map[string]any)
	if !ok {
		return ""
	}
	for k, v := range m {
		if !equalFold(k, "ServerUrl") {
			continue
		}
		switch x := v.(type) {
		case string:
			return x
		case map[string]any:
			if s, ok := x["$value"].(string); ok {
				return s
			}
		}
	}
	return ""
}

// adoptPath keeps the user's scheme, host and port but takes the path the
// service returned (ConfigurationManager, after AgentId is set).
func adoptPath(user, returned string) string {
	u, err1 := url.Parse(user)
	r, err2 := url.Parse(returned)
	if err1 != nil || err2 != nil || r.Path == "" {
		return user
	}
	u.Path = r.Path
	return u.String()
}

// oauthEndpoint is authorizationUrl, except on on-premises servers where
// scheme, host and port are those of the server URL (listener.md §2.4).
func oauthEndpoint(authURL, serverURL string, hosted bool) string {
	if hosted {
		return authURL
	}
	au, err := url.Parse(authURL)
	if err != nil {
		return authURL
	}
	su, err := url.Parse(serverURL)
	if err != nil {
		return authURL
	}
	au.Scheme, au.Host = su.Scheme, su.Host
	return au.String()
}

func equalFold(a, b string) bool { return len(a) == len(b) && (a == b || lower(a) == lower(b)) }

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// redact drops credentials and queries from a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the server"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

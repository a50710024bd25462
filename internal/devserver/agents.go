package devserver

import (
	"crypto/rsa"
	"math/big"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"
)

type poolState struct {
	id      int
	name    string
	created time.Time
	queue   []*jobState // queued jobs, oldest first
}

type agentState struct {
	id                int
	pool              *poolState
	name              string
	version           string
	osDescription     string
	provisioningState string
	enabled           bool
	maxParallelism    int
	created           time.Time
	statusChanged     time.Time
	clientID          string
	pub               *rsa.PublicKey
	pubWire           taskagent.TaskAgentPublicKey
	systemCaps        map[string]string
	userCaps          map[string]string
	revoked           bool
	session           *sessionState
	job               *jobState // assigned and not finished
	lastCompleted     *jobState
}

func (a *agentState) online() bool { return a.session != nil }

func (a *agentState) ref() *taskagent.TaskAgentReference {
	status := taskagent.TaskAgentStatusValues.Offline
	if a.online() {
		status = taskagent.TaskAgentStatusValues.Online
	}
	return &taskagent.TaskAgentReference{
		Id: ptr(a.id), Name: ptr(a.name), Version: ptr(a.version), OsDescription: ptr(a.osDescription),
		Enabled: ptr(a.enabled), Status: &status, ProvisioningState: ptr(a.provisioningState),
	}
}

// wire renders the TaskAgent the service returns.
func (s *Server) agentJSON(a *agentState, caps bool) taskagent.TaskAgent {
	status := taskagent.TaskAgentStatusValues.Offline
	if a.online() {
		status = taskagent.TaskAgentStatusValues.Online
	}
	cid, _ := uuid.Parse(a.clientID)
	pk := a.pubWire
	out := taskagent.TaskAgent{
		Id: ptr(a.id), Name: ptr(a.name), Version: ptr(a.version), OsDescription: ptr(a.osDescription),
		Enabled: ptr(a.enabled), Status: &status, ProvisioningState: ptr(a.provisioningState),
		MaxParallelism:  ptr(a.maxParallelism),
		CreatedOn:       &azuredevops.Time{Time: a.created},
		StatusChangedOn: &azuredevops.Time{Time: a.statusChanged},
		Authorization: &taskagent.TaskAgentAuthorization{
			ClientId: &cid, AuthorizationUrl: ptr(s.TokenURL()), PublicKey: &pk,
		},
		Links: map[string]any{"self": map[string]string{"href": s.agentURL(a)}},
	}
	if caps {
		sc, uc := copyMap(a.systemCaps), copyMap(a.userCaps)
		out.SystemCapabilities, out.UserCapabilities = &sc, &uc
	}
	if a.job != nil {
		r := s.jobRequestJSON(a.job)
		out.AssignedRequest = &r
	}
	if a.lastCompleted != nil {
		r := s.jobRequestJSON(a.lastCompleted)
		out.LastCompletedRequest = &r
	}
	return out
}

func (s *Server) agentURL(a *agentState) string {
	return s.orgURL + "/_apis/distributedtask/pools/" + strconv.Itoa(a.pool.id) + "/agents/" + strconv.Itoa(a.id)
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// requireUser admits only the registration identity; admin additionally
// requires the pool's Administer role. s.mu must be held.
func (s *Server) requireUser(q *request, admin bool, pool *poolState) *apiError {
	if q.p.kind != kindUser {
		s.violation(nil, "%s %s used a %s; registration routes take the registration credential (PAT or Entra token)", q.r.Method, q.r.URL.Path, q.p.kind)
		return accessDenied("Access denied. %s does not have permission to perform this action on agent pools.", q.p.displayName)
	}
	if admin && !q.p.user.PoolAdmin {
		name := "the organization's agent pools"
		if pool != nil {
			name = "pool " + pool.name
		}
		return accessDenied("Access denied. %s needs Manage permissions for %s to perform the action. For more information, contact the Azure DevOps Server administrator.", q.p.user.Name, name)
	}
	return nil
}

func (s *Server) poolByID(raw string) (*poolState, *apiError) {
	id, err := strconv.Atoi(raw)
	if err != nil {
		return nil, badRequest("The pool id '%s' is not a valid integer.", raw)
	}
	for _, p := range s.pools {
		if p.id == id {
			return p, nil
		}
	}
	return nil, notFound(exPoolNotFound, "Agent pool %d could not be found.", id)
}

func (s *Server) poolJSON(p *poolState) taskagent.TaskAgentPool {
	size := 0
	for _, a := range s.agentsByID {
		if a.pool == p {
			size++
		}
	}
	pt := taskagent.TaskAgentPoolTypeValues.Automation
	scope, _ := uuid.Parse(s.instanceID)
	return taskagent.TaskAgentPool{
		Id: ptr(p.id), Name: ptr(p.name), IsHosted: ptr(false), IsLegacy: ptr(false), PoolType: &pt,
		Size: ptr(size), Scope: &scope, AutoProvision: ptr(true), AutoSize: ptr(true), AutoUpdate: ptr(false),
		CreatedOn: &azuredevops.Time{Time: p.created},
	}
}

// handlePools serves GET …/pools[/{poolId}]?poolName=&poolType=.
func (s *Server) handlePools(q *request) *apiError {
	if q.r.Method != http.MethodGet {
		return methodNotAllowed(q.r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.requireUser(q, false, nil); err != nil {
		return err
	}
	if id, ok := q.vals["poolId"]; ok {
		p, err := s.poolByID(id)
		if err != nil {
			return err
		}
		q.reply(http.StatusOK, s.poolJSON(p))
		return nil
	}
	name := queryValue(q.r, "poolName")
	if pt := queryValue(q.r, "poolType"); pt != "" {
		switch strings.ToLower(pt) {
		case "automation":
		case "deployment":
			q.reply(http.StatusOK, collection[taskagent.TaskAgentPool](nil))
			return nil
		default:
			return badRequest("The value '%s' is not valid for poolType.", pt)
		}
	}
	var out []taskagent.TaskAgentPool
	for _, p := range s.pools {
		if name == "" || strings.EqualFold(p.name, name) {
			out = append(out, s.poolJSON(p))
		}
	}
	q.reply(http.StatusOK, collection(out))
	return nil
}

// handleAgents serves …/pools/{poolId}/agents[/{agentId}]: list, get, add,
// replace, update, delete (listener.md §3).
func (s *Server) handleAgents(q *request) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.requireUser(q, false, nil); err != nil {
		return err
	}
	pool, err := s.poolByID(q.vals["poolId"])
	if err != nil {
		return err
	}
	rawID, hasID := q.vals["agentId"]
	var a *agentState
	if hasID {
		id, perr := strconv.Atoi(rawID)
		if perr != nil {
			return badRequest("The agent id '%s' is not a valid integer.", rawID)
		}
		if a = s.agentsByID[id]; a != nil && a.pool != pool {
			a = nil
		}
	}
	switch q.r.Method {
	case http.MethodGet:
		caps := strings.EqualFold(queryValue(q.r, "includeCapabilities"), "true")
		if hasID {
			if a == nil {
				return notFound(exAgentNotFound, "Agent %s does not exist in pool %d.", rawID, pool.id)
			}
			q.reply(http.StatusOK, s.agentJSON(a, caps))
			return nil
		}
		name := queryValue(q.r, "agentName")
		var list []taskagent.TaskAgent
		for _, ag := range s.sortedAgents(pool) {
			if name == "" || strings.EqualFold(ag.name, name) {
				list = append(list, s.agentJSON(ag, caps))
			}
		}
		q.reply(http.StatusOK, collection(list))
		return nil
	case http.MethodPost:
		if hasID {
			return methodNotAllowed(q.r)
		}
		if err := s.requireUser(q, true, pool); err != nil {
			return err
		}
		return s.addAgent(q, pool)
	case http.MethodPut, http.MethodPatch, http.MethodDelete:
		if !hasID {
			return methodNotAllowed(q.r)
		}
		if err := s.requireUser(q, true, pool); err != nil {
			return err
		}
		if a == nil {
			return notFound(exAgentNotFound, "Agent %s does not exist in pool %d.", rawID, pool.id)
		}
		if q.r.Method == http.MethodDelete {
			s.deleteAgentLocked(a, q.now)
			q.noContent()
			return nil
		}
		return s.updateAgent(q, a)
	}
	return methodNotAllowed(q.r)
}

func (s *Server) sortedAgents(p *poolState) []*agentState {
	var out []*agentState
	for _, a := range s.agentsByID {
		if p == nil || a.pool == p {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// publicKey validates a registration key: RSA, at least 2048 bits
// (listener.md §2.2), exponent and modulus as big-endian base64.
func publicKey(k *taskagent.TaskAgentPublicKey) (*rsa.PublicKey, *apiError) {
	if k == nil || k.Modulus == nil || k.Exponent == nil || len(*k.Modulus) == 0 || len(*k.Exponent) == 0 {
		return nil, errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: agent.Authorization.PublicKey")
	}
	n := new(big.Int).SetBytes(*k.Modulus)
	e := new(big.Int).SetBytes(*k.Exponent)
	if n.BitLen() < 2048 {
		return nil, badRequest("The agent's public key is %d bits; an RSA key of at least 2048 bits is required.", n.BitLen())
	}
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
		return nil, badRequest("The agent's public key has an invalid exponent.")
	}
	if n.Bit(0) == 0 {
		return nil, badRequest("The agent's public key has an invalid modulus.")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

func (s *Server) nameTaken(pool *poolState, name string, except *agentState) bool {
	for _, a := range s.agentsByID {
		if a.pool == pool && a != except && strings.EqualFold(a.name, name) {
			return true
		}
	}
	return false
}

func (s *Server) addAgent(q *request, pool *poolState) *apiError {
	var in taskagent.TaskAgent
	if err := decodeJSON(q, &in); err != nil {
		return err
	}
	if in.Name == nil || strings.TrimSpace(*in.Name) == "" {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: agent.Name")
	}
	if in.Authorization == nil {
		return errf(http.StatusBadRequest, exArgumentNull, "Value cannot be null. Parameter name: agent.Authorization")
	}
	pub, aerr := publicKey(in.Authorization.PublicKey)
	if aerr != nil {
		return aerr
	}
	if s.nameTaken(pool, *in.Name, nil) {
		return errf(http.StatusConflict, exAgentExists, "An agent named %s already exists in pool %s.", *in.Name, pool.name)
	}
	a := &agentState{
		id: s.nextAgentID, pool: pool, name: *in.Name, enabled: true, maxParallelism: 1,
		provisioningState: "Provisioned", created: q.now.UTC(), statusChanged: q.now.UTC(),
		clientID: newGUID(), pub: pub, pubWire: *in.Authorization.PublicKey,
		systemCaps: map[string]string{}, userCaps: map[string]string{},
	}
	s.nextAgentID++
	s.applyAgentFields(a, &in)
	s.agentsByID[a.id] = a
	s.emit(Event{Kind: EventAgentChanged, AgentID: a.id})
	q.reply(http.StatusOK, s.agentJSON(a, true))
	return nil
}

// applyAgentFields copies the fields present in the body.
func (s *Server) applyAgentFields(a *agentState, in *taskagent.TaskAgent) {
	if in.Version != nil {
		a.version = *in.Version
	}
	if in.OsDescription != nil {
		a.osDescription = *in.OsDescription
	}
	if in.Enabled != nil {
		a.enabled = *in.Enabled
	}
	if in.MaxParallelism != nil && *in.MaxParallelism > 0 {
		a.maxParallelism = *in.MaxParallelism
	}
	if in.ProvisioningState != nil && *in.ProvisioningState != "" {
		a.provisioningState = *in.ProvisioningState
	}
	if in.SystemCapabilities != nil {
		a.systemCaps = copyMap(*in.SystemCapabilities)
	}
	if in.UserCapabilities != nil {
		a.userCaps = copyMap(*in.UserCapabilities)
	}
}

// updateAgent is PUT (replace) or PATCH (update). A new public key gets a
// new OAuth client id, so tokens of the old key stop working.
//
// Fields absent from the body keep their values for both methods, and so
// does the key when none is sent; the official agent always sends the whole
// agent with its key on replace (listener.md §3 step 7b).
func (s *Server) updateAgent(q *request, a *agentState) *apiError {
	var in taskagent.TaskAgent
	if err := decodeJSON(q, &in); err != nil {
		return err
	}
	if in.Id != nil && *in.Id != a.id {
		return badRequest("The agent id %d in the body does not match the id %d in the URL.", *in.Id, a.id)
	}
	if in.Name != nil && *in.Name != "" && !strings.EqualFold(*in.Name, a.name) {
		if s.nameTaken(a.pool, *in.Name, a) {
			return errf(http.StatusConflict, exAgentExists, "An agent named %s already exists in pool %s.", *in.Name, a.pool.name)
		}
		a.name = *in.Name
	}
	if in.Authorization != nil && in.Authorization.PublicKey != nil {
		pub, aerr := publicKey(in.Authorization.PublicKey)
		if aerr != nil {
			return aerr
		}
		if !pub.Equal(a.pub) {
			a.pub, a.pubWire, a.clientID = pub, *in.Authorization.PublicKey, newGUID()
		}
	}
	wasEnabled := a.enabled
	s.applyAgentFields(a, &in)
	if !wasEnabled && a.enabled {
		s.assignLocked(q.now)
	}
	s.emit(Event{Kind: EventAgentChanged, AgentID: a.id})
	q.reply(http.StatusOK, s.agentJSON(a, true))
	return nil
}

// deleteAgentLocked removes an agent: its session ends, a job it had not
// started goes back to the queue, a running one is abandoned.
func (s *Server) deleteAgentLocked(a *agentState, now time.Time) {
	if a.session != nil {
		s.endSessionLocked(a.session, now, "agent deleted")
	}
	if j := a.job; j != nil && !j.state.terminal() {
		s.finishJobLocked(j, now, JobAbandoned, string(taskagent.TaskResultValues.Abandoned), "agent deleted")
	}
	delete(s.agentsByID, a.id)
	s.emit(Event{Kind: EventAgentChanged, AgentID: a.id})
}

// handleUpdates serves PUT …/agents/{agentId}/updates?currentState= — the
// agent's self-update progress report, with the agent's own token.
func (s *Server) handleUpdates(q *request) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.agentForListener(q)
	if err != nil {
		return err
	}
	if q.r.Method != http.MethodPut {
		return methodNotAllowed(q.r)
	}
	if id, _ := strconv.Atoi(q.vals["agentId"]); id != a.id {
		s.violation(nil, "agent %d reported update state for agent %s", a.id, q.vals["agentId"])
		return accessDenied("Access denied. The agent may only report its own update state.")
	}
	q.reply(http.StatusOK, s.agentJSON(a, false))
	return nil
}

// agentForListener admits only an agent OAuth token of an agent of the
// addressed pool (sessions, messages, job requests). s.mu must be held.
func (s *Server) agentForListener(q *request) (*agentState, *apiError) {
	if q.p.kind != kindAgent {
		s.violation(nil, "%s %s used a %s; listener routes take the agent's own OAuth token", q.r.Method, q.r.URL.Path, q.p.kind)
		return nil, accessDenied("Access denied. %s is not an agent and cannot use the agent message queue.", q.p.displayName)
	}
	pool, err := s.poolByID(q.vals["poolId"])
	if err != nil {
		return nil, err
	}
	a := s.agentsByID[q.p.agentID]
	if a == nil {
		return nil, notFound(exAgentNotFound, "Agent %d does not exist.", q.p.agentID)
	}
	if a.pool != pool {
		s.violation(nil, "agent %d used pool %d, but it is registered in pool %d", a.id, pool.id, a.pool.id)
		return nil, notFound(exAgentNotFound, "Agent %d does not exist in pool %d.", a.id, pool.id)
	}
	return a, nil
}

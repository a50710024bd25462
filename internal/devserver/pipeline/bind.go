package pipeline

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Connection is what only the emulator knows when it queues a job: where it
// serves and the job's access token.
type Connection struct {
	// CollectionURL is the organization URL the agent talks to, e.g.
	// https://127.0.0.1:8443/org/ (a trailing slash is added if missing).
	CollectionURL string
	// AccessToken is the job's token; it becomes the SystemVssConnection
	// endpoint's AccessToken, the secret variable system.accessToken and two
	// mask hints, as in the L1 sample.
	AccessToken string
	// ServerName is the SystemVssConnection's data.ServerName; default: the
	// URL's last path segment (the organization).
	ServerName string
	// RequestID is the agent job request id the message is delivered under.
	RequestID int64
}

// Bind returns a copy of the job's message completed with what the service
// adds at queue time and the compiler cannot know: the URL-bearing
// variables, the SystemVssConnection endpoint with the job token, the token's
// mask hints, the request id and the plan's links. The compiled message is
// left untouched, so a job can be bound again for a rerun.
func (j *Job) Bind(c Connection) (*wire.JobRequestMessage, error) {
	if j == nil || j.Message == nil {
		return nil, fmt.Errorf("bind job: no compiled message")
	}
	base := c.CollectionURL
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("bind job %q: collection URL %q is not an absolute URL", j.Name, base)
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if c.AccessToken == "" {
		return nil, fmt.Errorf("bind job %q: no access token", j.Name)
	}
	server := c.ServerName
	if server == "" {
		server = strings.Trim(u.Path, "/")
		if i := strings.LastIndexByte(server, '/'); i >= 0 {
			server = server[i+1:]
		}
	}

	// A deep copy through JSON: the message is JSON-shaped, and a copy that
	// shares maps with the compiled job would let one run alter the next.
	raw, err := json.Marshal(j.Message)
	if err != nil {
		return nil, fmt.Errorf("bind job %q: copy message: %w", j.Name, err)
	}
	m := new(wire.JobRequestMessage)
	if err := json.Unmarshal(raw, m); err != nil {
		return nil, fmt.Errorf("bind job %q: copy message: %w", j.Name, err)
	}

	m.RequestID = c.RequestID
	collectionID := m.Variables["system.collectionId"].Value
	for _, name := range []string{"system.collectionUri", "system.teamFoundationCollectionUri", "system.taskDefinitionsUri"} {
		m.Variables[name] = wire.VariableValue{Value: base, IsReadonly: true}
	}
	m.Variables["system.accessToken"] = wire.VariableValue{Value: c.AccessToken, IsSecret: true}
	m.Resources.Endpoints = append([]wire.ServiceEndpoint{{
		Name: wire.SystemConnectionName,
		URL:  base,
		Authorization: wire.EndpointAuth{
			Scheme:     "OAuth",
			Parameters: map[string]string{"AccessToken": c.AccessToken},
		},
		Data:     map[string]string{"ServerId": collectionID, "ServerName": server},
		IsShared: false,
		IsReady:  true,
	}}, m.Resources.Endpoints...)
	// The L1 sample carries the token's mask hint twice (once for the
	// variable, once for the endpoint, presumably); the agent dedupes.
	m.Mask = append(m.Mask,
		wire.MaskHint{Type: "regex", Value: c.AccessToken},
		wire.MaskHint{Type: "regex", Value: c.AccessToken})

	project := m.Plan.ScopeIdentifier
	m.Plan.Definition = withLinks(m.Plan.Definition,
		fmt.Sprintf("%s%s/_build/definition?definitionId=%s", base, project, m.Variables["system.definitionId"].Value),
		fmt.Sprintf("%s%s/_apis/build/Definitions/%s", base, project, m.Variables["system.definitionId"].Value))
	m.Plan.Owner = withLinks(m.Plan.Owner,
		fmt.Sprintf("%s%s/_build/results?buildId=%s", base, project, m.Variables["build.buildId"].Value),
		fmt.Sprintf("%s%s/_apis/build/Builds/%s", base, project, m.Variables["build.buildId"].Value))
	return m, nil
}

// withLinks adds the _links {web, self} the service puts on plan.definition
// and plan.owner.
func withLinks(obj json.RawMessage, web, self string) json.RawMessage {
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil || m == nil {
		m = map[string]any{}
	}
	m["_links"] = map[string]any{
		"web":  map[string]string{"href": web},
		"self": map[string]string{"href": self},
	}
	return rawJSON(m)
}

package azdo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/microsoft/azure-devops-go-api/azuredevops/v7"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/location"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/taskagent"

	"github.com/goagent-dev/goagent/internal/wire"
)

// The listener's calls. The model types are azure-devops-go-api's; the calls
// are written here rather than taken from its taskagent.Client because that
// client requests api-version 7.1-preview.1 (the official agent asks for
// 6.0-preview.2 / 5.1-preview.1), first looks up the resource area through
// _apis/resourceAreas (the official agent does not), and cannot take a fresh
// token per request. Sessions, messages and job requests are not in the SDK
// at all.

// ConnectionData reads _apis/connectionData, as VssConnection.ConnectAsync
// does (connectOptions=1 = IncludeServices; lastChangeId -1 = "send all").
func (c *Client) ConnectionData(ctx context.Context) (*location.ConnectionData, error) {
	var out location.ConnectionData
	q := url.Values{"connectOptions": {"1"}, "lastChangeId": {"-1"}, "lastChangeId64": {"-1"}}
	if _, err := c.Send(ctx, Request{Method: http.MethodGet, Path: "_apis/connectionData", Query: q}, &out); err != nil {
		return nil, fmt.Errorf("read connection data from %s: %w", c.base.Redacted(), err)
	}
	return &out, nil
}

type collection[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

// PoolsByName lists Automation pools named name (listener.md §3 step 4).
func (c *Client) PoolsByName(ctx context.Context, name string) ([]taskagent.TaskAgentPool, error) {
	var out collection[taskagent.TaskAgentPool]
	_, err := c.Send(ctx, Request{
		Method: http.MethodGet, Location: wire.LocationPools, APIVersion: wire.APIPools,
		Query: url.Values{"poolName": {name}, "poolType": {"Automation"}},
	}, &out)
	return out.Value, err
}

// AgentsByName lists agents named name in a pool (listener.md §3 step 6).
func (c *Client) AgentsByName(ctx context.Context, poolID int, name string) ([]taskagent.TaskAgent, error) {
	var out collection[taskagent.TaskAgent]
	_, err := c.Send(ctx, Request{
		Method: http.MethodGet, Location: wire.LocationAgents, APIVersion: wire.APIAgents,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID)},
		Query:       url.Values{"agentName": {name}, "includeCapabilities": {"False"}},
	}, &out)
	return out.Value, err
}

// AddAgent registers a new agent (POST; listener.md §3 step 7a).
func (c *Client) AddAgent(ctx context.Context, poolID int, agent *taskagent.TaskAgent) (*taskagent.TaskAgent, error) {
	var out taskagent.TaskAgent
	_, err := c.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationAgents, APIVersion: wire.APIAgents,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID)},
		Body:        agent,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ReplaceAgent replaces an existing agent (PUT; listener.md §3 step 7b).
func (c *Client) ReplaceAgent(ctx context.Context, poolID, agentID int, agent *taskagent.TaskAgent) (*taskagent.TaskAgent, error) {
	var out taskagent.TaskAgent
	_, err := c.Send(ctx, Request{
		Method: http.MethodPut, Location: wire.LocationAgents, APIVersion: wire.APIAgents,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "agentId": strconv.Itoa(agentID)},
		Body:        agent,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAgent unregisters an agent.
func (c *Client) DeleteAgent(ctx context.Context, poolID, agentID int) error {
	_, err := c.Send(ctx, Request{
		Method: http.MethodDelete, Location: wire.LocationAgents, APIVersion: wire.APIAgents,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "agentId": strconv.Itoa(agentID)},
	}, nil)
	return err
}

// CreateSession opens a message session (listener.md §4.1). Not retried here:
// the listener applies the official retry policy (§4.2) itself.
func (c *Client) CreateSession(ctx context.Context, poolID int, s *taskagent.TaskAgentSession) (*taskagent.TaskAgentSession, error) {
	var out taskagent.TaskAgentSession
	_, err := c.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationSessions, APIVersion: wire.APISessions,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID)},
		Body:        s, NoRetry: true,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteSession closes a session (listener.md §4.8), 30 s at most.
func (c *Client) DeleteSession(ctx context.Context, poolID int, sessionID string) error {
	_, err := c.Send(ctx, Request{
		Method: http.MethodDelete, Location: wire.LocationSessions, APIVersion: wire.APISessions,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "sessionId": sessionID},
		Timeout:     30 * time.Second,
	}, nil)
	return err
}

// GetMessage long-polls the queue (listener.md §4.3). It returns nil, nil
// when the server answered 202/204 (no message). lastMessageID < 0 omits it.
func (c *Client) GetMessage(ctx context.Context, poolID int, sessionID string, lastMessageID int64, timeout time.Duration) (*taskagent.TaskAgentMessage, error) {
	q := url.Values{"sessionId": {sessionID}}
	if lastMessageID >= 0 {
		q.Set("lastMessageId", strconv.FormatInt(lastMessageID, 10))
	}
	var out taskagent.TaskAgentMessage
	resp, err := c.Send(ctx, Request{
		Method: http.MethodGet, Location: wire.LocationMessages, APIVersion: wire.APIGetMessage,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID)},
		Query:       q, Timeout: timeout, NoRetry: true,
	}, &out)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent || out.MessageId == nil {
		return nil, nil
	}
	return &out, nil
}

// DeleteMessage acknowledges a message (listener.md §4.6), 30 s at most.
func (c *Client) DeleteMessage(ctx context.Context, poolID int, sessionID string, messageID uint64) error {
	_, err := c.Send(ctx, Request{
		Method: http.MethodDelete, Location: wire.LocationMessages, APIVersion: wire.APIDelMessage,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "messageId": strconv.FormatUint(messageID, 10)},
		Query:       url.Values{"sessionId": {sessionID}},
		Timeout:     30 * time.Second,
	}, nil)
	return err
}

// RenewJobRequest extends the job's lock (listener.md §5.2): PATCH with the
// empty lock token and a body carrying only the request id.
func (c *Client) RenewJobRequest(ctx context.Context, poolID int, requestID int64, timeout time.Duration) (*taskagent.TaskAgentJobRequest, error) {
	var out taskagent.TaskAgentJobRequest
	_, err := c.Send(ctx, Request{
		Method: http.MethodPatch, Location: wire.LocationJobRequests, APIVersion: wire.APIJobRequests,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "requestId": strconv.FormatInt(requestID, 10)},
		Query:       url.Values{"lockToken": {wire.EmptyLockToken}},
		Body:        map[string]any{"requestId": requestID},
		Timeout:     timeout, NoRetry: true,
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// FinishJobRequest completes the request for plans older than version 8
// (listener.md §5.3).
func (c *Client) FinishJobRequest(ctx context.Context, poolID int, requestID int64, finish time.Time, result taskagent.TaskResult) error {
	ft := azuredevops.Time{Time: finish.UTC()}
	_, err := c.Send(ctx, Request{
		Method: http.MethodPatch, Location: wire.LocationJobRequests, APIVersion: wire.APIJobRequests,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "requestId": strconv.FormatInt(requestID, 10)},
		Query:       url.Values{"lockToken": {wire.EmptyLockToken}},
		Body:        map[string]any{"requestId": requestID, "finishTime": &ft, "result": result},
		Timeout:     60 * time.Second, NoRetry: true,
	}, nil)
	return err
}

// GetJobRequest reads a job request.
func (c *Client) GetJobRequest(ctx context.Context, poolID int, requestID int64) (*taskagent.TaskAgentJobRequest, error) {
	var out taskagent.TaskAgentJobRequest
	_, err := c.Send(ctx, Request{
		Method: http.MethodGet, Location: wire.LocationJobRequests, APIVersion: wire.APIJobRequests,
		RouteValues: map[string]string{"poolId": strconv.Itoa(poolID), "requestId": strconv.FormatInt(requestID, 10)},
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

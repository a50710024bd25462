package wire

import (
	"encoding/json"
	"strings"
)

// JobRequestMessage is the body of a PipelineAgentJobRequest message
// (worker.md §1.1). azure-devops-go-api only models the legacy
// AgentJobRequestMessage, so the Pipelines shape is written here.
//
// Decoding is tolerant: unknown fields are ignored, and encoding/json already
// matches field names case-insensitively, which the service relies on (it mixes
// isReadonly / isReadOnly, for one).
type JobRequestMessage struct {
	MessageType    string                   `json:"messageType"`
	Plan           PlanReference            `json:"plan"`
	Timeline       TimelineReference        `json:"timeline"`
	JobID          string                   `json:"jobId"`
	JobDisplayName string                   `json:"jobDisplayName"`
	JobName        string                   `json:"jobName"`
	JobContainer   json.RawMessage          `json:"jobContainer,omitempty"`
	JobSidecars    json.RawMessage          `json:"jobSidecarContainers,omitempty"`
	RequestID      int64                    `json:"requestId"`
	LockedUntil    string                   `json:"lockedUntil,omitempty"`
	Resources      JobResources             `json:"resources"`
	Variables      map[string]VariableValue `json:"variables"`
	Steps          []Step                   `json:"steps"`
	Workspace      *WorkspaceOptions        `json:"workspace,omitempty"`
	Mask           []MaskHint               `json:"mask,omitempty"`
}

// PlanReference is TaskOrchestrationPlanReference.
type PlanReference struct {
	ScopeIdentifier  string          `json:"scopeIdentifier"`
	PlanType         string          `json:"planType"`
	Version          int             `json:"version"`
	PlanID           string          `json:"planId"`
	PlanGroup        string          `json:"planGroup,omitempty"`
	ArtifactURI      string          `json:"artifactUri,omitempty"`
	ArtifactLocation *string         `json:"artifactLocation"`
	ContainerID      int64           `json:"containerId,omitempty"`
	Definition       json.RawMessage `json:"definition,omitempty"`
	Owner            json.RawMessage `json:"owner,omitempty"`
}

// TimelineReference names the job's timeline, created by the server.
type TimelineReference struct {
	ID       string  `json:"id"`
	ChangeID int     `json:"changeId"`
	Location *string `json:"location"`
}

// JobResources are the endpoints, repositories and files a job may use.
type JobResources struct {
	Endpoints    []ServiceEndpoint    `json:"endpoints,omitempty"`
	Repositories []RepositoryResource `json:"repositories,omitempty"`
	SecureFiles  []SecureFile         `json:"secureFiles,omitempty"`
	Containers   json.RawMessage      `json:"containers,omitempty"`
}

// ServiceEndpoint is the legacy ServiceEndpoint contract carried in jobs.
type ServiceEndpoint struct {
	ID            string            `json:"id,omitempty"`
	Name          string            `json:"name"`
	Type          string            `json:"type,omitempty"`
	URL           string            `json:"url"`
	Authorization EndpointAuth      `json:"authorization"`
	Data          map[string]string `json:"data,omitempty"`
	IsShared      bool              `json:"isShared"`
	IsReady       bool              `json:"isReady"`
}

// EndpointAuth is EndpointAuthorization: a scheme and its parameters.
type EndpointAuth struct {
	Scheme     string            `json:"scheme"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

// SystemConnectionName is the endpoint that carries the job's own token.
const SystemConnectionName = "SystemVssConnection"

// RepositoryResource is a pipeline repository resource. Its well-known
// properties (id, type, url, version, name, ref, …) live in a property bag
// whose values are not all strings (versionInfo, checkoutOptions are objects).
type RepositoryResource struct {
	Alias      string                     `json:"alias"`
	Endpoint   *ResourceReference         `json:"endpoint,omitempty"`
	Properties map[string]json.RawMessage `json:"properties,omitempty"`
}

// ResourceReference points at another resource by id or name.
type ResourceReference struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// Property returns a string property of the repository's bag, matching the
// key case-insensitively; non-string values come back as their JSON text.
func (r RepositoryResource) Property(name string) string {
	for k, v := range r.Properties {
		if strings.EqualFold(k, name) {
			var s string
			if json.Unmarshal(v, &s) == nil {
				return s
			}
			if string(v) == "null" {
				return ""
			}
			return string(v)
		}
	}
	return ""
}

// SecureFile is a secure file reference; the ticket is a secret.
type SecureFile struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Ticket string `json:"ticket,omitempty"`
}

// VariableValue is a job variable as the message carries it.
type VariableValue struct {
	Value      string `json:"value"`
	IsSecret   bool   `json:"isSecret,omitempty"`
	IsReadonly bool   `json:"isReadOnly,omitempty"` // the real service spells it isReadOnly (L1 capture); worker.md says isReadonly
}

// Step is a JobStep. The Azure agent only executes type "task".
type Step struct {
	Type                    string            `json:"type"`
	ID                      string            `json:"id"`
	Name                    string            `json:"name"`
	DisplayName             string            `json:"displayName"`
	Enabled                 *bool             `json:"enabled,omitempty"`
	Condition               string            `json:"condition,omitempty"`
	ContinueOnError         bool              `json:"continueOnError,omitempty"`
	TimeoutInMinutes        int               `json:"timeoutInMinutes,omitempty"`
	RetryCountOnTaskFailure int               `json:"retryCountOnTaskFailure,omitempty"`
	Reference               TaskReference     `json:"reference"`
	Inputs                  map[string]string `json:"inputs,omitempty"`
	Environment             map[string]string `json:"environment,omitempty"`
	Target                  *StepTarget       `json:"target,omitempty"`
}

// IsEnabled reports the step's enabled flag; absent means enabled.
func (s Step) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

// TaskReference is TaskStepDefinitionReference.
type TaskReference struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
}

// StepTarget restricts where and how a step runs.
type StepTarget struct {
	Target            string             `json:"target,omitempty"`
	Commands          string             `json:"commands,omitempty"`
	SettableVariables *SettableVariables `json:"settableVariables,omitempty"`
}

// SettableVariables lists the variables a restricted step may set.
type SettableVariables struct {
	Allowed []string `json:"allowed"` // an empty list means nothing may be set: no omitempty
}

// WorkspaceOptions is the job's workspace: clean = outputs|resources|all.
type WorkspaceOptions struct {
	Clean string `json:"clean,omitempty"`
}

// MaskHint asks the agent to mask what a regex matches.
type MaskHint struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// SystemConnection returns the SystemVssConnection endpoint, or nil.
func (m *JobRequestMessage) SystemConnection() *ServiceEndpoint {
	for i := range m.Resources.Endpoints {
		if strings.EqualFold(m.Resources.Endpoints[i].Name, SystemConnectionName) {
			return &m.Resources.Endpoints[i]
		}
	}
	return nil
}

// JobCancelMessage is the body of a JobCancellation message. Timeout is a
// .NET TimeSpan string ("00:05:00").
type JobCancelMessage struct {
	JobID   string `json:"jobId"`
	Timeout string `json:"timeout,omitempty"`
}

// AgentRefreshMessage is the body of an AgentRefresh message.
type AgentRefreshMessage struct {
	AgentID       int    `json:"agentId"`
	TargetVersion string `json:"targetVersion"`
	Timeout       string `json:"timeout,omitempty"`
}

// JobMetadataMessage is the body of a JobMetadataUpdate message.
type JobMetadataMessage struct {
	JobID                    string `json:"jobId"`
	PostLinesFrequencyMillis int    `json:"postLinesFrequencyMillis"`
}

// JobEvent is a plan event. JobCompleted is the one the worker raises
// (worker.md §7.6); Outputs exists on the type but the worker does not set it.
type JobEvent struct {
	Name              string                   `json:"name"`
	JobID             string                   `json:"jobId"`
	RequestID         int64                    `json:"requestId"`
	Result            string                   `json:"result"`
	AgentShuttingDown bool                     `json:"agentShuttingDown"`
	Outputs           map[string]VariableValue `json:"outputs,omitempty"`
}

// TaskLogCreate is the body that creates a log: {"path":"logs\\<recordId>"}.
type TaskLogCreate struct {
	Path string `json:"path"`
}

// Package wire holds what the agent and the service must agree on byte for
// byte: location GUIDs, the api-versions the official agent requests, message
// types, and the Pipelines job message, which azure-devops-go-api does not model.
//
// Both the agent (internal/azdo, internal/jobs) and the emulator
// (internal/devserver) depend on it; it depends on nothing of theirs.
// Sources are cited per constant in ../shared/protocol/listener.md §1.3–§1.4 and
// worker.md §7.1.
package wire

// Location GUIDs of the distributedtask resources the agent uses. The service
// publishes a route template for each under OPTIONS {base}/_apis/; the GUID,
// the route values and the api-version are the real contract.
const (
	LocationConnectionData = "00d9565f-ed9c-4a06-9a50-00e7896ccab4"
	LocationResourceAreas  = "e81700f7-3be2-46de-8624-2eb35882fcaa"

	LocationPools         = "a8c47e17-4d56-4a56-92bb-de7ea7dc65be"
	LocationAgents        = "e298ef32-5878-4cab-993c-043836571f42"
	LocationSessions      = "134e239e-2df3-4794-a6f6-24f1f19ec8dc"
	LocationMessages      = "c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7"
	LocationJobRequests   = "fc825784-c92a-4299-9221-998a02d1b54f"
	LocationAgentUpdates  = "8cc1b02b-ae49-4516-b5ad-4f9b29967c30"
	LocationPackages      = "8ffcd551-079c-493a-9c02-54346299d144"
	LocationPlanEvents    = "557624af-b29e-4c20-8ab0-0399d2204f3f"
	LocationTimelines     = "83597576-cc2c-453c-bea6-2882ae6a1653"
	LocationRecords       = "8893bc5b-35b2-4be7-83cb-99e683551db4"
	LocationFeed          = "858983e4-19bd-4c5e-864c-507b59b58b12"
	LocationLogs          = "46f5667d-263a-4684-91b1-dff7fdcf64e2"
	LocationAttachments   = "7898f959-9cdf-4096-b29e-7f293031629e"
	LocationFeatureFlags  = "3e2b80f8-9e6f-441e-8393-005610692d9c"
	AreaDistributedTask   = "distributedtask"
	ResourceAreaTaskAgent = "a85b8835-c1a1-4aac-ae97-1c3d0ba72dbd"
)

// Build area locations the build.updatebuildnumber and build.addbuildtag
// logging commands call (BuildServer.cs: UpdateBuildAsync, AddBuildTagAsync,
// AddBuildTagsAsync). Routes: LocationBuilds {project}/_apis/build/builds/{buildId},
// LocationBuildTags {project}/_apis/build/builds/{buildId}/tags/{tag}.
const (
	AreaBuild         = "build"
	LocationBuilds    = "0cd358e1-9217-4d94-8269-1c1ee6f93dcf"
	LocationBuildTags = "6e6114b2-8161-44c8-8f6c-c5505782427f"
)

// API versions of the Build area calls. The official agent uses
// Microsoft.TeamFoundationServer.Client 19.230.0-preview, whose source is not
// public; these are what azure-devops-go-api v7 (azuredevops/v7/build/client.go:
// UpdateBuild, AddBuildTag, AddBuildTags) requests, the nearest public source
// of the same generated contract.
const (
	APIBuilds    = "7.1-preview.7"
	APIBuildTags = "7.1-preview.3"
)

// API versions requested per call, as the official agent's generated client
// requests them (listener.md §1.4, column [RUN]; worker.md §7.1). The server
// negotiates down from these against the OPTIONS entry.
const (
	APIAgents      = "6.0-preview.2"
	APIPools       = "5.1-preview.1"
	APISessions    = "5.1-preview.1"
	APIGetMessage  = "6.0-preview.1"
	APIDelMessage  = "5.1-preview.1"
	APIJobRequests = "5.1-preview.1"
	APIPlanEvents  = "2.0-preview.1"
	APITask        = "5.1-preview.1" // timelines, records, feed, logs, attachments
	APIAgentUpdate = "5.1-preview.1"
)

// Message types carried in TaskAgentMessage.messageType (listener.md §4.7).
// Compared case-insensitively.
const (
	MessageJobRequest      = "PipelineAgentJobRequest"
	MessageJobCancellation = "JobCancellation"
	MessageAgentRefresh    = "AgentRefresh"
	MessageJobMetadata     = "JobMetadataUpdate"
)

// Well-known task ids (worker.md §2.1), lower case.
const (
	TaskCheckout   = "6d15af64-176c-496d-b583-fd2ae21d4df4"
	TaskCmdLine    = "d9bafed4-0b18-4f58-968d-86655b4d2ce9"
	TaskBash       = "6c731c3c-3c68-459a-a5c9-bde6e6595b5b"
	TaskPowerShell = "e213ff0f-5d5c-4791-802d-52ea3e7be1f1"
)

// AzureDevOpsScope is the Entra resource of Azure DevOps.
const AzureDevOpsScope = "499b84ac-1321-427f-aa17-267ca6975798/.default"

// EmptyLockToken is the lockToken the official agent sends on every job
// request PATCH ("lockToken has never been used, keep this here of compat").
const EmptyLockToken = "00000000-0000-0000-0000-000000000000"

package azdo

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/build"
	"github.com/microsoft/azure-devops-go-api/azuredevops/v7/core"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Builds is the Build area as the build.* logging commands use it
// (BuildServer.cs), over the job's own connection. The SDK's build.Client
// binds to a connection's static auth string, hence these calls through Send.
type Builds struct {
	Client *Client
}

func buildValues(project string, buildID int, extra ...string) map[string]string {
	m := map[string]string{"project": project, "buildId": strconv.Itoa(buildID)}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

// UpdateBuildNumber renames a build: PATCH the build with only its id, the
// new number and its project, as BuildServer.UpdateBuildNumber does. It
// returns the build as the service now has it.
func (b *Builds) UpdateBuildNumber(ctx context.Context, project string, buildID int, number string) (*build.Build, error) {
	pid, err := uuid.Parse(project)
	if err != nil {
		return nil, fmt.Errorf("update build %d: project id %q is not a GUID", buildID, project)
	}
	body := build.Build{Id: &buildID, BuildNumber: &number, Project: &core.TeamProjectReference{Id: &pid}}
	var out build.Build
	if _, err := b.Client.Send(ctx, Request{
		Method: http.MethodPatch, Location: wire.LocationBuilds, APIVersion: wire.APIBuilds,
		RouteValues: buildValues(project, buildID),
		Body:        body,
	}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddBuildTag adds one tag with the legacy call that carries it in the URL
// path (PUT …/tags/{tag}, no body): the official default. It returns the
// build's tags after the call.
func (b *Builds) AddBuildTag(ctx context.Context, project string, buildID int, tag string) ([]string, error) {
	var out collection[string]
	if _, err := b.Client.Send(ctx, Request{
		Method: http.MethodPut, Location: wire.LocationBuildTags, APIVersion: wire.APIBuildTags,
		RouteValues: buildValues(project, buildID, "tag", tag),
	}, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

// AddBuildTags adds tags carried in a JSON array body (POST …/tags), which
// keeps characters a URL path would mangle; the official agent uses it when
// the knob AGENT_USE_BUILD_TAGS_BODY_API is true. It returns the build's tags
// after the call. Adding a tag twice changes nothing, so a retry is safe.
func (b *Builds) AddBuildTags(ctx context.Context, project string, buildID int, tags []string) ([]string, error) {
	if tags == nil {
		tags = []string{}
	}
	var out collection[string]
	if _, err := b.Client.Send(ctx, Request{
		Method: http.MethodPost, Location: wire.LocationBuildTags, APIVersion: wire.APIBuildTags,
		RouteValues: buildValues(project, buildID),
		Body:        tags, Retry: true,
	}, &out); err != nil {
		return nil, err
	}
	return out.Value, nil
}

package report

import (
	"context"
	"errors"
	"fmt"

	"github.com/goagent-dev/goagent/internal/azdo"
	"github.com/goagent-dev/goagent/internal/jobs"
)

// BuildService implements jobs.BuildService with the Build area calls of
// internal/azdo over the job's own connection (the SystemVssConnection URL
// and the job access token, as the reporter's plan calls).
type BuildService struct {
	builds azdo.Builds
}

var _ jobs.BuildService = (*BuildService)(nil)

// NewBuildService returns the Build service of a job's connection.
func NewBuildService(c *azdo.Client) *BuildService {
	return &BuildService{builds: azdo.Builds{Client: c}}
}

// UpdateBuildNumber renames the build (BuildServer.UpdateBuildNumber).
func (b *BuildService) UpdateBuildNumber(ctx context.Context, projectID string, buildID int, number string) (string, error) {
	bd, err := b.builds.UpdateBuildNumber(ctx, projectID, buildID, number)
	if err != nil {
		return "", fmt.Errorf("update the build number of build %d to '%s': %w%s", buildID, number, err, buildHint(err, buildID, projectID))
	}
	if bd.BuildNumber == nil {
		return "", nil
	}
	return *bd.BuildNumber, nil
}

// AddBuildTag tags the build (BuildServer.AddBuildTag): the legacy URL-path
// call unless bodyAPI.
func (b *BuildService) AddBuildTag(ctx context.Context, projectID string, buildID int, tag string, bodyAPI bool) ([]string, error) {
	var tags []string
	var err error
	if bodyAPI {
		tags, err = b.builds.AddBuildTags(ctx, projectID, buildID, []string{tag})
	} else {
		tags, err = b.builds.AddBuildTag(ctx, projectID, buildID, tag)
	}
	if err != nil {
		return nil, fmt.Errorf("add tag '%s' to build %d: %w%s", tag, buildID, err, buildHint(err, buildID, projectID))
	}
	return tags, nil
}

// buildHint says what to do about the failures a user can fix.
func buildHint(err error, buildID int, projectID string) string {
	switch {
	case errors.Is(err, azdo.ErrAccessDenied):
		return "; the job's identity (the project's build service) lacks the 'Update build information' permission on this pipeline: grant it in the pipeline's security settings"
	case errors.Is(err, azdo.ErrNotFound):
		return fmt.Sprintf("; the service has no build %d in project %s that the job's token can see (check the job's Build.BuildId and System.TeamProjectId variables)", buildID, projectID)
	}
	return ""
}

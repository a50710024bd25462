package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/goagent-dev/goagent/internal/jobs/logcmd"
)

// BuildService is the Build REST area of the job's organization, called over
// the job's own connection (SystemVssConnection and the job access token) by
// ##vso[build.updatebuildnumber] and ##vso[build.addbuildtag] (BuildServer.cs).
// internal/jobs/report implements it; a nil BuildService makes both commands
// fail, as the official agent does without a connection.
type BuildService interface {
	// UpdateBuildNumber renames build buildID of project projectID (a GUID)
	// and returns the build number the service now has.
	UpdateBuildNumber(ctx context.Context, projectID string, buildID int, number string) (string, error)
	// AddBuildTag adds a tag to the build and returns the build's tags after
	// the call. bodyAPI selects the call that carries the tag in a JSON body
	// instead of the URL path (the knob AGENT_USE_BUILD_TAGS_BODY_API).
	AddBuildTag(ctx context.Context, projectID string, buildID int, tag string, bodyAPI bool) ([]string, error)
}

// Official messages (src/Misc/layoutbin/en-US/strings.json).
const (
	locUpdateBuildNumber = "Update Build Number" // UpdateBuildNumber: the async command's name
	locAddBuildTag       = "Add Build Tag"       // AddBuildTag
	locBuildNumberNeeded = "Build number is required."
	locBuildTagNeeded    = "Build tag is required."
)

// knobBuildTagsBodyAPI is AgentKnobs.UseBuildTagsBodyApi: a job variable,
// else the agent's environment; default false.
const knobBuildTagsBodyAPI = "AGENT_USE_BUILD_TAGS_BODY_API"

// buildTarget is the project and build the Build commands address, checked
// as BuildCommandExtension does (ArgUtil.NotEmpty / NotNull): a job without
// them, a release job for one, cannot run the commands.
func (jr *jobRun) buildTarget(cmd *logcmd.Command) (string, int, error) {
	where := "##vso[" + strings.ToLower(cmd.Area+"."+cmd.Event) + "]"
	p, _ := jr.vars.Get("system.teamProjectId")
	pid, err := uuid.Parse(strings.TrimSpace(p))
	if err != nil || pid == uuid.Nil {
		return "", 0, fmt.Errorf("Value cannot be null. (Parameter 'projectId'): the job has no valid System.TeamProjectId variable, so %s has no project to address; it works only in build pipeline jobs", where)
	}
	b, _ := jr.vars.Get("build.buildId")
	id, err := strconv.Atoi(strings.TrimSpace(b))
	if err != nil {
		return "", 0, fmt.Errorf("Value cannot be null. (Parameter 'buildId'): the job has no Build.BuildId variable (a release or deployment job has none), so %s has no build to change; it works only in build pipeline jobs", where)
	}
	return pid.String(), id, nil
}

// boolKnob reads an agent knob as Knob.GetValue does with a runtime (variable)
// and an environment source, then StringUtil.ConvertToBoolean.
func (jr *jobRun) boolKnob(name string) bool {
	v, _ := jr.vars.Get(name)
	if v == "" {
		for _, kv := range jr.r.Env {
			if k, val, ok := strings.Cut(kv, "="); ok && k == name {
				v = val
			}
		}
	}
	switch strings.ToLower(v) {
	case "1", "true", "$true":
		return true
	}
	return false
}

// noBuildService is the failure when the job has no Build connection
// (WorkerUtilities.GetVssConnection without SystemVssConnection).
func noBuildService(where string) error {
	return fmt.Errorf("%s: the job has no connection to the Build service (no SystemVssConnection endpoint)", where)
}

// updateBuildNumber is BuildUpdateBuildNumberCommand: Build.BuildNumber
// changes at once for the rest of the job; the build is renamed on the
// service in the background and the step waits for it when it ends. The
// number is not trimmed, as in the official command.
func (s *stepRun) updateBuildNumber(con *console, cmd *logcmd.Command) error {
	jr := s.jr
	project, buildID, err := jr.buildTarget(cmd)
	if err != nil {
		return err
	}
	number := cmd.Data
	if number == "" {
		return errors.New(locBuildNumberNeeded)
	}
	jr.vars.SetReadOnly("build.buildNumber", number, false)
	con.Debug(fmt.Sprintf("Update build number for build: %d to: %s at backend.", buildID, number))
	if jr.build == nil {
		return noBuildService("##vso[build.updatebuildnumber]")
	}
	svc := jr.build
	s.startAsync(locUpdateBuildNumber, func(ctx context.Context) ([]string, error) {
		got, err := svc.UpdateBuildNumber(ctx, project, buildID, number)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("Update build number to %s for build %d", got, buildID)}, nil
	})
	return nil
}

// addBuildTag is BuildAddBuildTagCommand: the tag (trimmed) is added in the
// background; the step fails when the service's answer lacks it.
func (s *stepRun) addBuildTag(con *console, cmd *logcmd.Command) error {
	jr := s.jr
	tag := strings.TrimSpace(cmd.Data)
	project, buildID, err := jr.buildTarget(cmd)
	if err != nil {
		return err
	}
	if tag == "" {
		return errors.New(locBuildTagNeeded)
	}
	con.Debug(fmt.Sprintf("Add build tag: %s to build: %d at backend.", tag, buildID))
	if jr.build == nil {
		return noBuildService("##vso[build.addbuildtag]")
	}
	svc, bodyAPI := jr.build, jr.boolKnob(knobBuildTagsBodyAPI)
	s.startAsync(locAddBuildTag, func(ctx context.Context) ([]string, error) {
		tags, err := svc.AddBuildTag(ctx, project, buildID, tag, bodyAPI)
		if err != nil {
			return nil, err
		}
		for _, t := range tags {
			if strings.EqualFold(t, tag) {
				return []string{fmt.Sprintf("Build '%d' has following tags now: %s", buildID, strings.Join(tags, ", "))}, nil
			}
		}
		return nil, fmt.Errorf("Build tag '%s' was not added successfully.", tag)
	})
	return nil
}

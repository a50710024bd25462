package jobs

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/goagent-dev/goagent/internal/wire"
)

// goagent has no container support. The official worker starts a job
// container (jobContainer), service containers (jobSidecarContainers, the
// YAML "services:") and the containers steps name in target: before the
// first step (ExecutionContext.InitializeJob, ContainerOperationProvider).
// Running such a job on the host would fail in confusing ways (no redis on
// localhost, tools missing), so the job fails at initialization and says why.

// containerProblem returns why goagent cannot run the job's containers, or
// "" when the job uses none.
func containerProblem(msg *wire.JobRequestMessage) string {
	if alias := jsonString(msg.JobContainer); alias != "" {
		return fmt.Sprintf("Container jobs are not supported by goagent: this job asks to run in the container '%s' (jobContainer). "+
			"Run it on an agent with Docker (the official agent), or remove 'container:' from the job.", alias)
	}
	if !emptyJSON(msg.JobContainer) { // not a string: an inline container
		return "Container jobs are not supported by goagent: this job asks to run in a container (jobContainer). " +
			"Run it on an agent with Docker (the official agent), or remove 'container:' from the job."
	}
	if services := sidecarNames(msg.JobSidecars); len(services) > 0 {
		return fmt.Sprintf("Service containers are not supported by goagent: this job declares services (%s), which the official agent "+
			"starts with Docker before the first step. Run it on an agent with Docker (the official agent), or remove 'services:' "+
			"from the job and reach the services some other way.", strings.Join(services, ", "))
	}
	aliases := containerAliases(msg.Resources.Containers)
	for _, s := range msg.Steps {
		if s.Target == nil || s.Target.Target == "" || strings.EqualFold(s.Target.Target, "host") {
			continue
		}
		// A target that names no container resource runs on the job's
		// default target, the host (ExecutionContext.SetStepTarget).
		if aliases[strings.ToLower(s.Target.Target)] {
			name := s.DisplayName
			if name == "" {
				name = s.Name
			}
			return fmt.Sprintf("Step targets are not supported by goagent: the step '%s' asks to run in the container '%s' (target:). "+
				"Run the job on an agent with Docker (the official agent), or remove 'target: %s' from the step.", name, s.Target.Target, s.Target.Target)
		}
	}
	return ""
}

// jsonString is the value of a JSON string, "" for anything else.
func jsonString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// emptyJSON reports null, "", {} and [].
func emptyJSON(raw json.RawMessage) bool {
	switch strings.TrimSpace(string(raw)) {
	case "", "null", `""`, "{}", "[]":
		return true
	}
	return false
}

// sidecarNames lists "network alias → container resource" of
// jobSidecarContainers, an object; anything else that is not empty counts
// as one unnamed service.
func sidecarNames(raw json.RawMessage) []string {
	if emptyJSON(raw) {
		return nil
	}
	var m map[string]string
	if json.Unmarshal(raw, &m) != nil {
		return []string{"jobSidecarContainers"}
	}
	var out []string
	for alias, resource := range m {
		if strings.EqualFold(alias, resource) {
			out = append(out, alias)
		} else {
			out = append(out, alias+" → "+resource)
		}
	}
	sort.Strings(out)
	return out
}

// containerAliases are the lower-cased aliases of the job's container
// resources.
func containerAliases(raw json.RawMessage) map[string]bool {
	var cs []struct {
		Alias string `json:"alias"`
	}
	if emptyJSON(raw) || json.Unmarshal(raw, &cs) != nil {
		return nil
	}
	out := map[string]bool{}
	for _, c := range cs {
		if c.Alias != "" {
			out[strings.ToLower(c.Alias)] = true
		}
	}
	return out
}

package jobs_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/wire"
)

// Jobs that need containers fail at initialization, naming what asked for
// them, and run no step; targets that name no container, or the host, run.
func TestContainerJobsFailClearly(t *testing.T) {
	redis := json.RawMessage(`[{"alias":"redis","image":"redis:7"},{"alias":"tools","image":"ubuntu:24.04"}]`)
	for _, c := range []struct {
		name      string
		edit      func(m *wire.JobRequestMessage)
		wantError string // "" → the job runs and succeeds
	}{
		{name: "job container by alias", edit: func(m *wire.JobRequestMessage) {
			m.JobContainer = json.RawMessage(`"tools"`)
			m.Resources.Containers = redis
		}, wantError: "Container jobs are not supported by goagent: this job asks to run in the container 'tools' (jobContainer)."},
		{name: "inline job container", edit: func(m *wire.JobRequestMessage) {
			m.JobContainer = json.RawMessage(`{"image":"ubuntu"}`)
		}, wantError: "Container jobs are not supported by goagent: this job asks to run in a container (jobContainer)."},
		{name: "service containers", edit: func(m *wire.JobRequestMessage) {
			m.JobSidecars = json.RawMessage(`{"cache":"redis","tools":"tools"}`)
			m.Resources.Containers = redis
		}, wantError: "Service containers are not supported by goagent: this job declares services (cache → redis, tools)"},
		{name: "step target naming a container", edit: func(m *wire.JobRequestMessage) {
			m.Resources.Containers = redis
			m.Steps[0].Target = &wire.StepTarget{Target: "Redis"}
		}, wantError: "Step targets are not supported by goagent: the step 'build' asks to run in the container 'Redis' (target:)."},
		{name: "null and empty fields", edit: func(m *wire.JobRequestMessage) {
			m.JobContainer = json.RawMessage(`null`)
			m.JobSidecars = json.RawMessage(`{}`)
			m.Resources.Containers = json.RawMessage(`[]`)
		}},
		{name: "empty alias", edit: func(m *wire.JobRequestMessage) {
			m.JobContainer = json.RawMessage(`""`)
		}},
		{name: "host target", edit: func(m *wire.JobRequestMessage) {
			m.Resources.Containers = redis
			m.Steps[0].Target = &wire.StepTarget{Target: "host"}
		}},
		{name: "target naming no container runs on the host", edit: func(m *wire.JobRequestMessage) {
			m.Steps[0].Target = &wire.StepTarget{Target: "somewhere"}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := message(nil, stepSpec{display: "build", script: "echo step-ran"})
			c.edit(m)
			res, rep := run(t, newRunner(t), m)
			ran := strings.Contains(rep.all(), "step-ran")
			if c.wantError == "" {
				if res != "succeeded" || !ran {
					t.Fatalf("result %q, step ran %v; log:\n%s", res, ran, rep.all())
				}
				return
			}
			if res != "failed" || ran {
				t.Fatalf("result %q, step ran %v; want a failed job and no step", res, ran)
			}
			if !strings.Contains(rep.all(), c.wantError) {
				t.Errorf("log lacks %q:\n%s", c.wantError, rep.all())
			}
		})
	}
}

package localrun

import (
	"fmt"
	"strings"

	"github.com/goagent-dev/goagent/internal/expr"
	"github.com/goagent-dev/goagent/internal/wire"
)

// jobSyntax is the service's job-condition language: the agent's plus the
// dependencies object and status functions naming jobs.
var jobSyntax = expr.Syntax{
	NamedValues: []string{"dependencies"},
	Functions: []expr.FuncSig{
		{Name: "succeeded", MinArgs: 0, MaxArgs: expr.MaxArgs},
		{Name: "failed", MinArgs: 0, MaxArgs: expr.MaxArgs},
		{Name: "succeededOrFailed", MinArgs: 0, MaxArgs: expr.MaxArgs},
	},
}

// Service spellings of results in dependencies.<job>.result.
var serviceResult = map[string]string{
	"succeeded":           "Succeeded",
	"succeededwithissues": "SucceededWithIssues",
	"failed":              "Failed",
	"canceled":            "Canceled",
	"skipped":             "Skipped",
	"abandoned":           "Abandoned",
}

func pascalResult(r string) string {
	if p, ok := serviceResult[strings.ToLower(r)]; ok {
		return p
	}
	return r
}

// depOutcome is what a job's dependents see of it.
type depOutcome struct {
	result  string            // camelCase TaskResult; continueOnError already applied
	outputs map[string]string // "<step>.<variable>" → value
}

// jobCondition evaluates a job's condition as the service does before it
// queues the job: status functions without arguments look at every direct
// dependency (a job without dependencies is judged by the run alone), with
// arguments at the named ones; canceled() is the run's cancellation.
type jobCondition struct {
	job      string
	vars     map[string]wire.VariableValue
	deps     []string // direct dependencies, as declared
	outcomes map[string]depOutcome
	canceled bool
}

func (c *jobCondition) Variable(name string) (string, bool) {
	for k, v := range c.vars {
		if strings.EqualFold(k, name) {
			return v.Value, true
		}
	}
	return "", false
}

// JobStatus is only consulted for functions Function declines; it is the
// run's status as far as the dependencies tell.
func (c *jobCondition) JobStatus() string {
	if c.canceled {
		return "canceled"
	}
	return ""
}

func (c *jobCondition) NamedValue(name string) (any, bool) {
	if !strings.EqualFold(name, "dependencies") {
		return nil, false
	}
	deps := map[string]any{}
	for _, d := range c.deps {
		o := c.outcomes[d]
		outs := map[string]any{}
		for k, v := range o.outputs {
			outs[k] = v
		}
		deps[d] = map[string]any{"result": pascalResult(o.result), "outputs": outs}
	}
	return deps, true
}

func (c *jobCondition) Function(name string, args []any) (any, bool, error) {
	var test func(result string) bool
	switch strings.ToLower(name) {
	case "succeeded":
		test = func(r string) bool { return r == "succeeded" || r == "succeededWithIssues" }
	case "failed":
		test = func(r string) bool { return r == "failed" }
	case "succeededorfailed":
		test = func(r string) bool { return r == "succeeded" || r == "succeededWithIssues" || r == "failed" }
	case "always":
		return true, true, nil
	case "canceled":
		return c.canceled, true, nil
	default:
		return nil, false, nil
	}
	if c.canceled {
		return false, true, nil
	}
	names := c.deps
	if len(args) > 0 {
		names = nil
		for _, a := range args {
			s, ok := a.(string)
			if !ok {
				return nil, false, fmt.Errorf("%s() takes job names, got %v", name, a)
			}
			found := ""
			for _, d := range c.deps {
				if strings.EqualFold(d, s) {
					found = d
				}
			}
			if found == "" {
				return nil, false, fmt.Errorf("job %q is not a dependency of job %q: add it to dependsOn", s, c.job)
			}
			names = append(names, found)
		}
	}
	if len(names) == 0 {
		// No dependency to fail: failed() is false, the others hold.
		return !strings.EqualFold(name, "failed"), true, nil
	}
	all := true
	anyFailed := false
	for _, n := range names {
		r := c.outcomes[n].result
		if !test(r) {
			all = false
		}
		if r == "failed" {
			anyFailed = true
		}
	}
	if strings.EqualFold(name, "failed") {
		// failed(): true when any of the jobs failed.
		return anyFailed, true, nil
	}
	return all, true, nil
}

// evalCondition parses and evaluates a job condition.
func evalCondition(c *jobCondition, condition string) (bool, error) {
	if strings.TrimSpace(condition) == "" {
		condition = "succeeded()"
	}
	e, err := jobSyntax.Parse(condition)
	if err != nil {
		return false, fmt.Errorf("condition %q of job %s: %w", condition, c.job, err)
	}
	ok, err := e.EvalBool(c)
	if err != nil {
		return false, fmt.Errorf("condition %q of job %s: %w", condition, c.job, err)
	}
	return ok, nil
}

package expr

import (
	"encoding/json"
	"errors"
	"strings"
)

type jobState string

// vars is a Context over a map, looked up ignoring case as the agent's
// variable store does.
type vars struct {
	m      map[string]string
	status string
}

func (v vars) Variable(name string) (string, bool) {
	for k, val := range v.m {
		if strings.EqualFold(k, name) {
			return val, true
		}
	}
	return "", false
}

func (v vars) JobStatus() string { return v.status }

// jobContext adds the service-side extension points: named values and
// job-level status functions over a dependencies object.
type jobContext struct {
	vars
	named map[string]any
}

func (j jobContext) NamedValue(name string) (any, bool) {
	v, ok := j.named[name]
	return v, ok
}

var errBoom = errors.New("boom")

func (j jobContext) Function(name string, args []any) (any, bool, error) {
	if len(args) == 0 {
		return nil, false, nil // let the agent's status semantics apply
	}
	if s, _ := args[0].(string); s == "boom" {
		return nil, false, errBoom
	}
	deps, _ := j.named["dependencies"].(map[string]any)
	for _, a := range args {
		job, _ := deps[a.(string)].(map[string]any)
		result, _ := job["result"].(string)
		var ok bool
		switch name {
		case "succeeded":
			ok = result == "Succeeded" || result == "SucceededWithIssues"
		case "failed":
			ok = result == "Failed"
		default:
			return nil, false, nil
		}
		if !ok {
			return false, true, nil
		}
	}
	return true, true, nil
}

// jobSyntax is what an emulator declares for job conditions.
var jobSyntax = Syntax{
	NamedValues: []string{"dependencies", "parameters"},
	Functions: []FuncSig{
		{Name: "succeeded", MinArgs: 0, MaxArgs: MaxArgs},
		{Name: "failed", MinArgs: 0, MaxArgs: MaxArgs},
		{Name: "custom", MinArgs: 1, MaxArgs: 1},
	},
}

var testVars = map[string]string{
	"Build.SourceBranch": "refs/heads/main",
	"Build.Reason":       "IndividualCI",
	"letters":            "ABC",
	"numbers":            "123",
	"empty":              "",
	"version":            "1.2.3",
	"spaced":             " 10 ",
	"hex":                "0x10",
	"SOMEvariable":       "SOMEvalue",
	"SOME.variable":      "SOMEvalue",
	"1":                  "one",
	"quote":              "it's",
}

func newJobContext(status string) jobContext {
	return jobContext{
		vars: vars{m: testVars, status: status},
		named: map[string]any{
			"dependencies": map[string]any{
				"A": map[string]any{
					"result":  "Succeeded",
					"outputs": map[string]string{"printvar.skipsubsequent": "false"},
				},
				"b": map[string]any{"result": "Skipped", "outputs": map[string]string{}},
				"c": map[string]any{"result": "Failed"},
			},
			"parameters": map[string]any{
				"branchOptions": []any{"refs/heads/main", "refs/heads/test"},
				"myArray":       []string{"FOO", "BAR", "ZOO"},
				"count":         3,
				"foo": []any{
					map[string]any{"id": 1, "a": "avalue1"},
					map[string]any{"id": 2, "a": "avalue2"},
					map[string]any{"id": 3, "a": "avalue3"},
				},
				"fruits": []any{
					map[string]any{"fruitName": "apple", "colors": []any{"red", "green"}},
					map[string]any{"fruitName": "lemon", "colors": []any{"yellow"}},
				},
				"listOfValues": map[string]any{
					"this_is": map[string]any{
						"a_complex": "object",
						"with":      []any{"one", "two"},
					},
				},
				"ver":     &Version{Major: 2, Minor: 0, Build: -1, Revision: -1},
				"jsonNum": json.Number("2.5"),
				"state":   jobState("ok"),
				"small":   uint8(7),
				"flag":    true,
			},
		},
	}
}

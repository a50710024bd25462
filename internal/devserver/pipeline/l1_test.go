package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// The real job message the official agent keeps as test data (see
// testdata/jobmessages/README.md at the module root).
var l1Sample = filepath.Join("..", "..", "..", "testdata", "jobmessages", "l1-checkout-cmdline.json")

// l1Options are the facts of the run the L1 sample was captured from, read
// off the sample itself.
func l1Options() Options {
	return Options{
		CollectionID:      "297a3210-e711-4ddf-857a-1df14915bb29",
		ProjectID:         "6302cb6f-c9d9-44c2-ae60-84eff8845059",
		ProjectName:       "MyFirstProject",
		DefinitionID:      2,
		DefinitionName:    "MyFirstProject (1)",
		DefinitionVersion: 1,
		BuildID:           5,
		Revision:          2, // with the default format: 20200210.2
		ContainerID:       12,
		PlanID:            "c7a42561-d84c-4972-b78f-ec97a3b63d53",
		StartTime:         time.Date(2020, 2, 10, 13, 29, 58, 0, time.FixedZone("EST", -5*3600)),
		Reason:            "IndividualCI",
		Debug:             true,
		QueuedBy:          Identity{Name: "[PII]", ID: "00000002-0000-8888-8000-000000000000", Email: "[PII]"},
		RequestedFor:      Identity{Name: "[PII]", ID: "8546ffd5-88f3-69c1-ad8f-30c41e8ce5ad", Email: "[PII]"},
		Repositories: map[string]Repo{"self": {
			URL:     "https://alpeck@codedev.ms/alpeck/MyFirstProject/_git/MyFirstProject",
			Commit:  "cf64a69d29ae2e01a655956f67ee0332ffb730a3",
			Ref:     "refs/heads/master",
			ID:      "05bbff1a-ac43-4a40-a1c1-99f4e17e61dd",
			Author:  "[PII]",
			Message: "Update azure-pipelines-1.yml for Azure Pipelines",
		}},
	}
}

// TestMatchesL1Sample compiles the pipeline behind the L1 sample with the
// sample's run facts, binds it as the emulator would, and requires the
// result to equal the real message except for a short, explained list.
func TestMatchesL1Sample(t *testing.T) {
	raw, err := os.ReadFile(l1Sample)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile([]byte("steps:\n- script: echo Hello World!\n"), l1Options())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(p.Jobs))
	}
	got, err := p.Jobs[0].Bind(Connection{CollectionURL: "https://codedev.ms/alpeck", AccessToken: "access"})
	if err != nil {
		t.Fatal(err)
	}

	// Decode the sample through the same type, so both sides go through the
	// agent-side model (and its case-insensitive isReadOnly/isReadonly).
	var sample wire.JobRequestMessage
	if err := json.Unmarshal(raw, &sample); err != nil {
		t.Fatal(err)
	}
	if n := len(sample.Variables); n != 62 {
		t.Fatalf("sample has %d variables, want 62: is the file intact?", n)
	}
	want, have := generic(t, &sample), generic(t, got)

	// Known differences, each for a reason outside the compiler's control:
	//
	// The agent's ScrubPiiData (A Agent.Worker/WorkerUtilties.cs) replaced
	// these values with [PII] before the message was logged, and rewrote
	// versionInfo to {author: [PII]}.
	vars := have["variables"].(map[string]any)
	for _, name := range []string{"build.sourceVersion", "build.sourceBranch", "build.sourceBranchName"} {
		vars[name].(map[string]any)["value"] = "[PII]"
	}
	repo := firstOf(have, "resources", "repositories")
	repo["properties"].(map[string]any)["versionInfo"] = map[string]any{"author": "[PII]"}
	// The sample's mask hints were edited to a placeholder; the token is
	// "access" everywhere else in it.
	for _, m := range have["mask"].([]any) {
		m.(map[string]any)["value"] = "accessTokenSecret"
	}
	// The task version resolved in 2020, and the condition the compiler
	// states explicitly (the agent treats a missing one as succeeded()).
	steps := have["steps"].([]any)
	cmd := steps[1].(map[string]any)
	cmd["reference"].(map[string]any)["version"] = "2.164.0"
	if cmd["condition"] != "succeeded()" {
		t.Errorf("script condition = %v, want succeeded()", cmd["condition"])
	}
	delete(cmd, "condition")
	// The timeline's change counter at dispatch.
	have["timeline"].(map[string]any)["changeId"] = want["timeline"].(map[string]any)["changeId"]
	// null in the sample; the wire type omits an empty container.
	if want["jobContainer"] == nil {
		delete(want, "jobContainer")
	}

	if !reflect.DeepEqual(want, have) {
		for _, d := range diffPaths("", want, have) {
			t.Error(d)
		}
	}
}

func generic(t *testing.T, m *wire.JobRequestMessage) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func firstOf(m map[string]any, keys ...string) map[string]any {
	var cur any = m
	for _, k := range keys {
		cur = cur.(map[string]any)[k]
	}
	return cur.([]any)[0].(map[string]any)
}

// diffPaths lists where two decoded JSON values differ.
func diffPaths(path string, want, have any) []string {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return []string{path + ": want an object, have " + short(have)}
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range h {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		var out []string
		for _, k := range sorted {
			wv, wok := w[k]
			hv, hok := h[k]
			switch {
			case !wok:
				out = append(out, path+"."+k+": not in the sample, have "+short(hv))
			case !hok:
				out = append(out, path+"."+k+": missing, the sample has "+short(wv))
			default:
				out = append(out, diffPaths(path+"."+k, wv, hv)...)
			}
		}
		return out
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return []string{path + ": want " + short(want) + ", have " + short(have)}
		}
		var out []string
		for i := range w {
			out = append(out, diffPaths(fmt.Sprintf("%s[%d]", path, i), w[i], h[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(want, have) {
		return []string{path + ": want " + short(want) + ", have " + short(have)}
	}
	return nil
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the compiler's output")

// testOptions are the run facts every golden file is compiled with; a
// pipeline adjusts them with a first line "# test: {json}" (testDirective).
func testOptions() Options {
	return Options{
		CollectionID:   "297a3210-e711-4ddf-857a-1df14915bb29",
		ProjectID:      "6302cb6f-c9d9-44c2-ae60-84eff8845059",
		ProjectName:    "MyFirstProject",
		DefinitionID:   2,
		DefinitionName: "golden",
		BuildID:        5,
		Revision:       2,
		StartTime:      time.Date(2020, 2, 10, 13, 29, 58, 0, time.FixedZone("", -5*3600)),
		Reason:         "IndividualCI",
		RequestedFor:   Identity{Name: "Ada", ID: "8546ffd5-88f3-69c1-ad8f-30c41e8ce5ad", Email: "ada@example.invalid"},
		Repositories: map[string]Repo{
			"self": {
				URL:     "https://dev.example.invalid/org/MyFirstProject/_git/app",
				Commit:  "cf64a69d29ae2e01a655956f67ee0332ffb730a3",
				Ref:     "main",
				Author:  "Ada",
				Message: "Update azure-pipelines.yml",
			},
			"tools": {URL: "https://dev.example.invalid/org/MyFirstProject/_git/tools", Commit: "1111111111111111111111111111111111111111"},
			"lib":   {URL: "https://dev.example.invalid/org/OtherProject/_git/lib", Ref: "refs/heads/dev", ID: "AAAAAAAA-0000-4000-8000-000000000001"},
			// "unused" has no URL: fine while no job checks it out.
		},
	}
}

// testDirective tweaks testOptions for one pipeline.
type testDirective struct {
	NoSelf    bool              `json:"noSelf"`
	Variables map[string]string `json:"variables"`
	Secrets   map[string]string `json:"secrets"`
}

func optionsFor(t *testing.T, src []byte) Options {
	t.Helper()
	o := testOptions()
	first, _, _ := bytes.Cut(src, []byte("\n"))
	rest, ok := bytes.CutPrefix(first, []byte("# test: "))
	if !ok {
		return o
	}
	var d testDirective
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("test directive %q: %v", rest, err)
	}
	if d.NoSelf {
		delete(o.Repositories, "self")
	}
	o.Variables, o.Secrets = d.Variables, d.Secrets
	return o
}

// goldenResult is what a golden file holds: the compiled pipeline and its
// job layers, or the error lines.
type goldenResult struct {
	Pipeline *Pipeline  `json:"pipeline,omitempty"`
	Order    [][]string `json:"order,omitempty"`
	Errors   []string   `json:"errors,omitempty"`
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d pipelines in testdata, want the full set", len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var res goldenResult
			p, err := Compile(src, optionsFor(t, src))
			wantErr := strings.HasPrefix(name, "err-")
			switch {
			case err != nil && !wantErr:
				t.Fatalf("compile: %v", err)
			case err == nil && wantErr:
				t.Fatalf("compile succeeded; a pipeline named err-* must fail")
			case err != nil:
				var list ErrorList
				if !errors.As(err, &list) {
					t.Fatalf("error is %T, want ErrorList", err)
				}
				for _, e := range list {
					res.Errors = append(res.Errors, e.Error())
				}
			default:
				res.Pipeline = p
				layers, err := p.Order()
				if err != nil {
					t.Fatalf("order: %v", err)
				}
				for _, l := range layers {
					var names []string
					for _, j := range l {
						names = append(names, j.Name)
					}
					res.Order = append(res.Order, names)
				}
				checkInvariants(t, p)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/devserver/pipeline -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (review, then rerun with -update):\n%s", golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// checkInvariants holds for every compiled pipeline, whatever the golden
// file says: what the agent relies on.
func checkInvariants(t *testing.T, p *Pipeline) {
	t.Helper()
	for _, j := range p.Jobs {
		m := j.Message
		if m.MessageType != "PipelineAgentJobRequest" || m.Plan.Version < 8 || m.Plan.PlanType != "Build" {
			t.Errorf("job %s: message type %q, plan %s v%d", j.Name, m.MessageType, m.Plan.PlanType, m.Plan.Version)
		}
		if m.JobID != recordID(j.Name+".__default") || m.Timeline.ID != p.PlanID || m.Plan.PlanID != p.PlanID {
			t.Errorf("job %s: ids jobId=%s timeline=%s plan=%s", j.Name, m.JobID, m.Timeline.ID, m.Plan.PlanID)
		}
		names, ids := map[string]bool{}, map[string]bool{}
		for i, s := range m.Steps {
			if s.Type != "task" || s.Name == "" || s.ID == "" || s.Reference.ID == "" || s.Reference.Version == "" || s.Condition == "" || !s.IsEnabled() {
				t.Errorf("job %s step %d incomplete: %+v", j.Name, i, s)
			}
			if names[strings.ToLower(s.Name)] || ids[s.ID] {
				t.Errorf("job %s step %d: name %q or id %s not unique", j.Name, i, s.Name, s.ID)
			}
			names[strings.ToLower(s.Name)], ids[s.ID] = true, true
			if s.ID != recordID(j.Name+".__default."+s.Name) {
				t.Errorf("job %s step %s: id %s is not the service's record id", j.Name, s.Name, s.ID)
			}
			if s.Reference.ID == "6d15af64-176c-496d-b583-fd2ae21d4df4" {
				alias := s.Inputs["repository"]
				found := false
				for _, r := range m.Resources.Repositories {
					found = found || r.Alias == alias
				}
				if !found {
					t.Errorf("job %s: checkout of %q has no repository resource", j.Name, alias)
				}
			}
		}
		for _, name := range []string{"system.collectionUri", "system.accessToken"} {
			if _, ok := m.Variables[name]; ok {
				t.Errorf("job %s: compiled message has %s, which the emulator fills", j.Name, name)
			}
		}
	}
}

// lineDiff shows the first differing lines of two texts.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl == gl {
			continue
		}
		fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		if shown++; shown == 10 {
			b.WriteString("…\n")
			break
		}
	}
	return b.String()
}

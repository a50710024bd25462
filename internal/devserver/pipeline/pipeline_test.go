package pipeline

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goagent-dev/goagent/internal/wire"
)

// The L1 sample's ids are the service's record ids of these instance names;
// the compiler must produce the same ids from the same names.
func TestRecordIDMatchesService(t *testing.T) {
	for _, tc := range []struct{ name, id string }{
		{"__default", "96ac2280-8cb4-5df5-99de-dd2da759617d"},              // system.stageId
		{"Job", "3a3a2a60-14c7-570b-14a4-fa42ad92f52a"},                    // system.phaseId
		{"Job.__default", "12f1170f-54f2-53f3-20dd-22fc7dff55f9"},          // jobId
		{"Job.__default.Checkout", "af08acd5-c28a-5b03-f5a9-06f9a40627bb"}, // checkout step id
		{"Job.__default.CmdLine", "9c939e41-62c2-5605-5e05-fc3554afc9f5"},  // script step id
		{"job.__DEFAULT.cmdline", "9c939e41-62c2-5605-5e05-fc3554afc9f5"},  // case-insensitive
		{"build.__default.CmdLine1", recordID("BUILD.__DEFAULT.CMDLINE1")}, // any case, any name
		{"stage.ünïcödé.__default", recordID("STAGE.ÜNÏCÖDÉ.__DEFAULT")},   // non-ASCII lower-cases too
		{"𝄞.__default", recordID("𝄞.__default")},                           // surrogate pairs
		{strings.Repeat("x", 200), recordID(strings.Repeat("X", 200))},     // multi-block input
	} {
		if got := recordID(tc.name); got != tc.id {
			t.Errorf("recordID(%q) = %s, want %s", tc.name, got, tc.id)
		}
	}
	if recordID("Job.__default.CmdLine") == recordID("Job.__default.CmdLine1") {
		t.Error("different names share an id")
	}
}

func TestNameUUID(t *testing.T) {
	a, b := nameUUID("plan/x"), nameUUID("plan/y")
	if a == b || a != nameUUID("plan/x") {
		t.Fatalf("nameUUID not stable or not distinct: %s %s", a, b)
	}
	for _, u := range []string{a, b} {
		if !isGUID(u) || u[14] != '5' || !strings.ContainsRune("89ab", rune(u[19])) {
			t.Errorf("%s is not an RFC 4122 version 5 UUID", u)
		}
	}
}

func TestIsGUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6302cb6f-c9d9-44c2-ae60-84eff8845059":   true,
		"6302CB6F-C9D9-44C2-AE60-84EFF8845059":   true,
		"6302cb6f-c9d9-44c2-ae60-84eff884505":    false,
		"6302cb6f-c9d9-44c2-ae60-84eff884505g":   false,
		"6302cb6fxc9d9-44c2-ae60-84eff8845059":   false,
		"{6302cb6f-c9d9-44c2-ae60-84eff8845059}": false,
		"":                                       false,
	} {
		if isGUID(s) != want {
			t.Errorf("isGUID(%q) = %v", s, !want)
		}
	}
}

func names(layers [][]*Job) [][]string {
	var out [][]string
	for _, l := range layers {
		var n []string
		for _, j := range l {
			n = append(n, j.Name)
		}
		out = append(out, n)
	}
	return out
}

func TestOrder(t *testing.T) {
	job := func(name string, deps ...string) *Job { return &Job{Name: name, DependsOn: deps} }
	for _, tc := range []struct {
		name    string
		jobs    []*Job
		want    [][]string
		wantErr string
	}{
		{name: "independent jobs share a layer", jobs: []*Job{job("a"), job("b")}, want: [][]string{{"a", "b"}}},
		{name: "chain", jobs: []*Job{job("c", "b"), job("b", "a"), job("a")}, want: [][]string{{"a"}, {"b"}, {"c"}}},
		{name: "diamond keeps YAML order in a layer", jobs: []*Job{job("a"), job("c", "a"), job("b", "a"), job("d", "b", "c")},
			want: [][]string{{"a"}, {"c", "b"}, {"d"}}},
		{name: "case-insensitive names", jobs: []*Job{job("Build"), job("test", "build", "BUILD")}, want: [][]string{{"Build"}, {"test"}}},
		{name: "empty pipeline", jobs: nil, want: nil},
		{name: "unknown dependency", jobs: []*Job{job("a", "ghost")}, wantErr: `job "a" depends on "ghost"`},
		{name: "self dependency", jobs: []*Job{job("a", "a")}, wantErr: "cycle: a -> a"},
		{name: "cycle names its jobs", jobs: []*Job{job("root"), job("x", "root", "z"), job("y", "x"), job("z", "y"), job("after", "z")},
			wantErr: "cycle: x -> z -> y -> x"},
		{name: "duplicate name", jobs: []*Job{job("a"), job("A")}, wantErr: `job name "A" is used twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			layers, err := (&Pipeline{Jobs: tc.jobs}).Order()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(layers); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("layers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestErrorsCarryLines(t *testing.T) {
	src := "jobs:\n- job: build\n  steps:\n  - script: echo\n    workingDir: x\n  stpes: []\n"
	_, err := Compile([]byte(src), testOptions())
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v (%T), want an ErrorList", err, err)
	}
	var lines []int
	for _, e := range list {
		lines = append(lines, e.Line)
	}
	if !reflect.DeepEqual(lines, []int{5, 6}) {
		t.Fatalf("lines = %v, want [5 6]; errors:\n%v", lines, err)
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 5 || !strings.Contains(one.Error(), `line 5: unknown key "workingDir"`) {
		t.Fatalf("first error = %v", one)
	}
	if !strings.Contains(err.Error(), "line 6: unknown key \"stpes\" in job \"build\"") {
		t.Fatalf("error text:\n%v", err)
	}
}

func TestSecretsStayOutOfErrors(t *testing.T) {
	const value = "hunter2-do-not-print"
	o := testOptions()
	o.Secrets = map[string]string{"secret.bad": value, "bad name": value, "good": value}
	o.Variables = map[string]string{"system.planId": value}
	_, err := Compile([]byte("steps:\n- script: echo $(good)\n  bogus: "+value+"x\n"), o)
	if err == nil {
		t.Fatal("compile succeeded")
	}
	for _, want := range []string{`"secret.bad"`, `"bad name"`, `"system.planId"`, `unknown key "bogus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), value) {
		t.Errorf("a secret value leaked into the error:\n%v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{ProjectID: "not-a-guid"},
		{CollectionID: "123"},
		{PlanID: "c7a42561d84c4972b78fec97a3b63d53"},
		{BuildID: -1},
		{Repositories: map[string]Repo{"self": {URL: "https://x/y", ID: "nope"}}},
	} {
		if _, err := Compile([]byte("steps:\n- checkout: none\n"), o); err == nil {
			t.Errorf("Compile accepted %+v", o)
		}
	}
}

func TestDefaults(t *testing.T) {
	before := time.Now().Add(-time.Minute)
	p, err := Compile([]byte("steps:\n- checkout: none\n- script: echo\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	j := p.Jobs[0]
	v := j.Message.Variables
	if j.Name != "Job" || j.DisplayName != "Job" || j.Condition != "succeeded()" || j.TimeoutInMinutes != 60 || j.CancelTimeoutInMinutes != 5 {
		t.Errorf("job defaults: %+v", j)
	}
	if v["build.buildId"].Value != "1" || v["build.reason"].Value != "Manual" || v["system.teamProjectId"].Value != defaultProjectID {
		t.Errorf("variables: buildId=%q reason=%q project=%q", v["build.buildId"].Value, v["build.reason"].Value, v["system.teamProjectId"].Value)
	}
	started, err := time.Parse("2006-01-02 15:04:05-07:00", v["system.pipelineStartTime"].Value)
	if err != nil || started.Before(before) {
		t.Errorf("pipelineStartTime %q (%v) is not now", v["system.pipelineStartTime"].Value, err)
	}
	if want := started.Format("20060102") + ".1"; p.Name != want {
		t.Errorf("run name %q, want %q", p.Name, want)
	}
	// Another build of the same pipeline is another plan; the job keeps its id.
	p2, err := Compile([]byte("steps:\n- checkout: none\n- script: echo\n"), Options{BuildID: 2})
	if err != nil {
		t.Fatal(err)
	}
	if p2.PlanID == p.PlanID || p2.Jobs[0].Message.JobID != j.Message.JobID {
		t.Errorf("plan ids %s/%s, job ids %s/%s", p.PlanID, p2.PlanID, j.Message.JobID, p2.Jobs[0].Message.JobID)
	}
}

func TestBind(t *testing.T) {
	p, err := Compile([]byte("steps:\n- script: echo\n"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	job := p.Jobs[0]
	before, _ := json.Marshal(job.Message)

	const token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.sig"
	m, err := job.Bind(Connection{CollectionURL: "https://127.0.0.1:8443/myorg", AccessToken: token, RequestID: 42})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := json.Marshal(job.Message)
	if string(before) != string(after) {
		t.Fatal("Bind changed the compiled message")
	}
	if m.RequestID != 42 {
		t.Errorf("requestId = %d", m.RequestID)
	}
	for _, name := range []string{"system.collectionUri", "system.teamFoundationCollectionUri", "system.taskDefinitionsUri"} {
		if v := m.Variables[name]; v.Value != "https://127.0.0.1:8443/myorg/" || !v.IsReadonly {
			t.Errorf("%s = %+v", name, v)
		}
	}
	if v := m.Variables["system.accessToken"]; v.Value != token || !v.IsSecret || v.IsReadonly {
		t.Errorf("system.accessToken = %+v", v)
	}
	conn := m.SystemConnection()
	if conn == nil {
		t.Fatal("no SystemVssConnection endpoint")
	}
	if conn.URL != "https://127.0.0.1:8443/myorg/" || conn.Authorization.Scheme != "OAuth" || conn.Authorization.Parameters["AccessToken"] != token ||
		conn.Data["ServerName"] != "myorg" || conn.Data["ServerId"] != testOptions().CollectionID || !conn.IsReady {
		t.Errorf("endpoint = %+v", *conn)
	}
	if len(m.Mask) != 2 || m.Mask[0] != (wire.MaskHint{Type: "regex", Value: token}) {
		t.Errorf("mask = %+v", m.Mask)
	}
	var owner struct {
		ID    int `json:"id"`
		Links struct {
			Web struct{ Href string } `json:"web"`
		} `json:"_links"`
	}
	if err := json.Unmarshal(m.Plan.Owner, &owner); err != nil || owner.ID != 5 ||
		owner.Links.Web.Href != "https://127.0.0.1:8443/myorg/6302cb6f-c9d9-44c2-ae60-84eff8845059/_build/results?buildId=5" {
		t.Errorf("plan.owner = %s (%v)", m.Plan.Owner, err)
	}

	// A second binding is independent of the first.
	m2, err := job.Bind(Connection{CollectionURL: "http://localhost:1/o/", AccessToken: "other", RequestID: 43})
	if err != nil {
		t.Fatal(err)
	}
	if m.Variables["system.accessToken"].Value != token || len(m2.Resources.Endpoints) != 1 || m2.Variables["system.collectionUri"].Value != "http://localhost:1/o/" {
		t.Error("bindings share state")
	}

	for _, c := range []Connection{{CollectionURL: "relative/path", AccessToken: "x"}, {CollectionURL: "https://h/o"}} {
		if _, err := job.Bind(c); err == nil {
			t.Errorf("Bind(%+v) succeeded", c)
		}
	}
}

func TestRunName(t *testing.T) {
	at := time.Date(2024, 3, 7, 9, 5, 4, 0, time.UTC)
	for _, tc := range []struct{ format, want string }{
		{"", "20240307.3"},
		{"$(Date:yyyyMMdd)$(Rev:.r)", "20240307.3"},
		{"$(Rev:rrr)", "003"},
		{"v$(Rev:r).$(Rev:rr)", "v3.03"},
		{"$(Date:yy-M-d H:mm:ss)", "24-3-7 9:05:04"},
		{"$(Year:yy)$(Year:yyyy)$(Month)$(DayOfMonth)$(DayOfYear)$(Hours)$(Minutes)$(Seconds)", "2420240307067090504"},
		{"$(BuildID)-$(DefinitionName)-$(TeamProject)-$(SourceBranch)-$(SourceBranchName)", "5-golden-MyFirstProject-refs/heads/main-main"},
		{"$(myVar)_$(MYVAR)_$(other)_$(Rev)_$(", "from yaml_from yaml_$(other)_$(Rev)_$("},
		{"literal", "literal"},
	} {
		o := testOptions()
		o.StartTime, o.Revision = at, 3
		src := "variables:\n  myVar: from yaml\nsteps:\n- script: echo\n"
		if tc.format != "" {
			src = "name: '" + tc.format + "'\n" + src
		}
		p, err := Compile([]byte(src), o)
		if err != nil {
			t.Fatalf("%q: %v", tc.format, err)
		}
		if p.Name != tc.want || p.Jobs[0].Message.Variables["build.buildNumber"].Value != tc.want {
			t.Errorf("name %q → %q, want %q", tc.format, p.Name, tc.want)
		}
	}
	o := testOptions()
	o.BuildNumber = "given"
	if p, err := Compile([]byte("name: ignored\nsteps:\n- script: echo\n"), o); err != nil || p.Name != "given" {
		t.Errorf("Options.BuildNumber not used: %v", err)
	}
}

func TestReferenceNames(t *testing.T) {
	r := &refNames{used: map[string]bool{}, next: map[string]int{}}
	if !r.reserve("CmdLine1") || r.reserve("cmdline1") {
		t.Fatal("reserve is not case-insensitive")
	}
	var got []string
	for _, base := range []string{"CmdLine", "CmdLine", "cmdline", "Bash", "Publisher.Ext-Task", "9lives", "", "CmdLine"} {
		got = append(got, r.generate(base))
	}
	want := []string{"CmdLine", "CmdLine2", "cmdline3", "Bash", "Publisher_Ext_Task", "_9lives", "step", "CmdLine4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("names = %q, want %q", got, want)
	}
	long := strings.Repeat("x", 120)
	a, b := r.generate(long), r.generate(long)
	if len(a) != maxNodeName || len(b) != maxNodeName || a == b || !strings.HasSuffix(b, "1") {
		t.Fatalf("long names %q, %q", a, b)
	}
}

package logcmd

import (
	"errors"
	"maps"
	"reflect"
	"testing"
)

type props = map[string]string

func mustParse(t *testing.T, o Options, line string) *Command {
	t.Helper()
	cmd, found, err := o.Parse(line)
	if err != nil || !found || cmd == nil {
		t.Fatalf("Parse(%q) = %v, %v, %v; want a command", line, cmd, found, err)
	}
	return cmd
}

// Every command of worker.md §5.2, written as scripts and tasks write them.
func TestParseKnownCommands(t *testing.T) {
	tests := []struct {
		line        string
		area, event string
		props       props
		data        string
	}{
		{"##vso[task.setvariable variable=myVar;issecret=true;isoutput=false;isreadonly=true;preservecase=true]the value",
			"task", "setvariable", props{"variable": "myVar", "issecret": "true", "isoutput": "false", "isreadonly": "true", "preservecase": "true"}, "the value"},
		{"##vso[task.setsecret]s3cr3t", "task", "setsecret", props{}, "s3cr3t"},
		{"##vso[task.logissue type=error;sourcepath=src/a.go;linenumber=12;columnnumber=3;code=E100;]Something failed",
			"task", "logissue", props{"type": "error", "sourcepath": "src/a.go", "linenumber": "12", "columnnumber": "3", "code": "E100"}, "Something failed"},
		{"##vso[task.issue type=warning]old alias", "task", "issue", props{"type": "warning"}, "old alias"},
		{"##vso[task.complete result=SucceededWithIssues;done=true]DONE", "task", "complete", props{"result": "SucceededWithIssues", "done": "true"}, "DONE"},
		{"##vso[task.setprogress value=75;]Upload Log", "task", "setprogress", props{"value": "75"}, "Upload Log"},
		{"##vso[task.logdetail id=3f0c6a1e-6a6b-4d49-9a3e-0d4d7e6c2a10;parentid=1b1c2d3e-0000-4000-8000-000000000001;type=build;name=compile;order=1;starttime=2025-01-02T03:04:05Z;finishtime=2025-01-02T03:05:05Z;progress=50;state=InProgress;result=Succeeded]sub step",
			"task", "logdetail", props{"id": "3f0c6a1e-6a6b-4d49-9a3e-0d4d7e6c2a10", "parentid": "1b1c2d3e-0000-4000-8000-000000000001",
				"type": "build", "name": "compile", "order": "1", "starttime": "2025-01-02T03:04:05Z", "finishtime": "2025-01-02T03:05:05Z",
				"progress": "50", "state": "InProgress", "result": "Succeeded"}, "sub step"},
		{"##vso[task.prependpath]/opt/tool/bin", "task", "prependpath", props{}, "/opt/tool/bin"},
		{"##vso[task.uploadfile]/tmp/a.log", "task", "uploadfile", props{}, "/tmp/a.log"},
		{"##vso[task.addattachment type=myAttachmentType;name=myAttachmentName;]/tmp/x.md", "task", "addattachment",
			props{"type": "myAttachmentType", "name": "myAttachmentName"}, "/tmp/x.md"},
		{"##vso[task.uploadsummary]/tmp/summary.md", "task", "uploadsummary", props{}, "/tmp/summary.md"},
		{"##vso[task.debug]details here", "task", "debug", props{}, "details here"},
		{"##vso[task.settaskvariable variable=tv;issecret=false;isreadonly=true;preservecase=false]v", "task", "settaskvariable",
			props{"variable": "tv", "issecret": "false", "isreadonly": "true", "preservecase": "false"}, "v"},
		{"##vso[task.setendpoint id=000-0000-0000;field=authParameter;key=AccessToken]testvalue", "task", "setendpoint",
			props{"id": "000-0000-0000", "field": "authParameter", "key": "AccessToken"}, "testvalue"},
		{"##vso[build.updatebuildnumber]1.2.3-ci", "build", "updatebuildnumber", props{}, "1.2.3-ci"},
		{"##vso[build.addbuildtag]nightly", "build", "addbuildtag", props{}, "nightly"},
		{"##vso[build.uploadlog]/tmp/tool.log", "build", "uploadlog", props{}, "/tmp/tool.log"},
		{"##vso[build.uploadsummary]/tmp/s.md", "build", "uploadsummary", props{}, "/tmp/s.md"},
		{`##vso[artifact.upload containerfolder=testresult;artifactname=uploadedresult;artifacttype=container]c:\testresult.trx`,
			"artifact", "upload", props{"containerfolder": "testresult", "artifactname": "uploadedresult", "artifacttype": "container"}, `c:\testresult.trx`},
		{"##vso[artifact.associate artifacttype=container;artifactname=MyServerDrop]#/1/build", "artifact", "associate",
			props{"artifacttype": "container", "artifactname": "MyServerDrop"}, "#/1/build"},
		{"##vso[release.updatereleasename]Release-42", "release", "updatereleasename", props{}, "Release-42"},
		{`##vso[telemetry.publish area=Tasks;feature=Bash]{"k":"v"}`, "telemetry", "publish", props{"area": "Tasks", "feature": "Bash"}, `{"k":"v"}`},
		{"##vso[codecoverage.publish codecoveragetool=Cobertura;summaryfile=/s/coverage.xml;reportdirectory=/s/html;]", "codecoverage", "publish",
			props{"codecoveragetool": "Cobertura", "summaryfile": "/s/coverage.xml", "reportdirectory": "/s/html"}, ""},
		{"##vso[results.publish type=JUnit;mergeResults=true;resultFiles=/s/a.xml,/s/b.xml;runTitle=Unit]", "results", "publish",
			props{"type": "JUnit", "mergeresults": "true", "resultfiles": "/s/a.xml,/s/b.xml", "runtitle": "Unit"}, ""},
	}
	for _, tt := range tests {
		cmd := mustParse(t, Options{}, tt.line)
		want := &Command{Area: tt.area, Event: tt.event, Properties: tt.props, Data: tt.data}
		if !reflect.DeepEqual(cmd, want) {
			t.Errorf("Parse(%q)\n got %#v\nwant %#v", tt.line, cmd, want)
		}
		spec, ok := Lookup(cmd.Area, cmd.Event)
		if !ok {
			t.Errorf("%s.%s is not Known", cmd.Area, cmd.Event)
			continue
		}
		for k := range cmd.Properties {
			if !contains(spec.Properties, k) {
				t.Errorf("%s.%s: property %q is not in the table %q", cmd.Area, cmd.Event, k, spec.Properties)
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// The official CommandStringConvertor and LoggingCommandL0 cases.
func TestUnescape(t *testing.T) {
	tests := []struct {
		in         string
		keep, want string // keep: KeepPercentEscapes; want: default
	}{
		{"%3B", ";", ";"},
		{"%0D%0A", "\r\n", "\r\n"},
		{"%5D", "]", "]"},
		{"%AZP25", "%AZP25", "%"},
		{"%25", "%25", "%25"},
		{"100%", "100%", "100%"},
		{"%AZP253B", "%AZP253B", "%3B"}, // no double decoding
		{"%3b%0d%5d", "%3b%0d%5d", "%3b%0d%5d"},
		{"%3B=%0D=%0A=%5D%AZP25", ";=\r=\n=]%AZP25", ";=\r=\n=]%"},
		{"%3B-%0D-%0A-%5D%AZP253B", ";-\r-\n-]%AZP253B", ";-\r-\n-]%3B"},
		{"%%3B3B", "%;3B", "%;3B"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := Unescape(tt.in); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := (Options{KeepPercentEscapes: true}).Unescape(tt.in); got != tt.keep {
			t.Errorf("KeepPercentEscapes Unescape(%q) = %q, want %q", tt.in, got, tt.keep)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want, keep string }{
		{"a;b\r\nc]d%e", "a%3Bb%0D%0Ac%5Dd%AZP25e", "a%3Bb%0D%0Ac%5Dd%e"},
		{"%3B", "%AZP253B", "%3B"},
		{"plain", "plain", "plain"},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := (Options{KeepPercentEscapes: true}).Escape(tt.in); got != tt.keep {
			t.Errorf("KeepPercentEscapes Escape(%q) = %q, want %q", tt.in, got, tt.keep)
		}
	}
}

func TestParseDetails(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		line  string
		props props
		data  string
	}{
		{"official escaped values", Options{}, "##vso[area.event k1=%3B=%0D=%0A=%5D%AZP25;]%3B-%0D-%0A-%5D%AZP253B",
			props{"k1": ";=\r=\n=]%"}, ";-\r-\n-]%3B"},
		{"official escaped values, percents kept", Options{KeepPercentEscapes: true}, "##vso[area.event k1=%3B=%0D=%0A=%5D%AZP25;]%3B-%0D-%0A-%5D%AZP253B",
			props{"k1": ";=\r=\n=]%AZP25"}, ";-\r-\n-]%AZP253B"},
		{"official empty values dropped", Options{}, "##vso[area.event k1=;k2=;]", props{}, ""},
		{"text before the command", Options{}, ">>>   ##vso[area.event k1=v1;]msg", props{"k1": "v1"}, "msg"},
		{"] in data", Options{}, "##vso[area.event]a]b]c", props{}, "a]b]c"},
		{"escaped ] in a value", Options{}, "##vso[area.event k=a%5Db]", props{"k": "a]b"}, ""},
		{"; and = in values", Options{}, "##vso[area.event k=x%3By=z;k2=a=b]", props{"k": "x;y=z", "k2": "a=b"}, ""},
		{"%25 left alone", Options{}, "##vso[area.event k=100%25]50%25", props{"k": "100%25"}, "50%25"},
		{"leading = of a value skipped", Options{}, "##vso[area.event k==v;k2===w=x]", props{"k": "v", "k2": "w=x"}, ""},
		{"leading = of a key skipped", Options{}, "##vso[area.event =k=v]", props{"k": "v"}, ""},
		{"no = or no key", Options{}, "##vso[area.event novalue;=orphan;;;]", props{}, ""},
		{"keys lower-cased", Options{}, "##vso[area.event Variable=x;ISSECRET=True]", props{"variable": "x", "issecret": "True"}, ""},
		{"later duplicate wins", Options{}, "##vso[area.event K=1;k=2]", props{"k": "2"}, ""},
		{"space after the name only", Options{}, "##vso[area.event ]data", props{}, "data"},
		{"spaces belong to keys", Options{}, "##vso[area.event  k=v; j=w]", props{" k": "v", " j": "w"}, ""},
		{"empty name parts dropped", Options{}, "##vso[area..event]x", props{}, "x"},
		{"second command in data", Options{}, "##vso[area.event]##vso[task.debug]x", props{}, "##vso[task.debug]x"},
		{"data keeps spaces and CR", Options{}, "##vso[area.event]  spaced \r", props{}, "  spaced \r"},
		{"multi-byte", Options{}, "##vso[area.event name=héllo€]wörld", props{"name": "héllo€"}, "wörld"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := mustParse(t, tt.opts, tt.line)
			if cmd.Area != "area" || cmd.Event != "event" {
				t.Errorf("area.event = %q.%q", cmd.Area, cmd.Event)
			}
			if !maps.Equal(cmd.Properties, tt.props) {
				t.Errorf("properties = %q, want %q", cmd.Properties, tt.props)
			}
			if cmd.Data != tt.data {
				t.Errorf("data = %q, want %q", cmd.Data, tt.data)
			}
		})
	}
}

func TestParseNotACommand(t *testing.T) {
	for _, line := range []string{"", "plain output", "##[error]not a command", "##VSO[task.debug]upper-case prefix", "##Vso[task.debug]x", "#vso[task.debug]x"} {
		cmd, found, err := Parse(line)
		if cmd != nil || found || err != nil {
			t.Errorf("Parse(%q) = %v, %v, %v; want nothing found", line, cmd, found, err)
		}
	}
}

func TestParseIllegal(t *testing.T) {
	for _, line := range []string{
		"##vso[task.debug",
		"##vso[taskdebug]x",
		"##vso[a.b.c]x",
		"##vso[ task.debug]x",
		"##vso[]",
		"##vso[.]",
		"see ##vso for details",
		"##vso [task.debug]x",
		"prefix ##vso[task.]x",
	} {
		cmd, found, err := Parse(line)
		if cmd != nil || !found {
			t.Errorf("Parse(%q) = %v, %v; want found and no command", line, cmd, found)
		}
		var se *SyntaxError
		if !errors.As(err, &se) || !errors.Is(err, ErrIllegal) || se.Line != line || se.Reason == "" {
			t.Errorf("Parse(%q) error = %#v", line, err)
		}
	}
	_, _, err := Parse("##vso[task.debug")
	want := "'##vso[task.debug' contains logging command keyword '##vso', but it's not a legal command. " +
		"Please see the list of accepted commands: https://go.microsoft.com/fwlink/?LinkId=817296"
	if err == nil || err.Error() != want {
		t.Errorf("error text = %q, want %q", err, want)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	cmds := []*Command{
		{Area: "task", Event: "setvariable", Properties: props{"variable": "v", "issecret": "true"}, Data: "a;b]c\r\nd%e%AZP25f"},
		{Area: "task", Event: "debug", Properties: props{}, Data: ""},
		{Area: "build", Event: "addbuildtag", Properties: props{}, Data: "%3B literal"},
		{Area: "task", Event: "logissue", Properties: props{"type": "error", "code": "x=y;z"}, Data: "é€"},
	}
	for _, o := range []Options{{}, {KeepPercentEscapes: true}} {
		for _, c := range cmds {
			line := o.Format(c)
			back := mustParse(t, o, line)
			if o.KeepPercentEscapes && c.Data == "%3B literal" {
				// Without percent escaping "%3B" cannot be written: it
				// reads back as ';', exactly as in the official agent.
				if back.Data != "; literal" {
					t.Errorf("%q read back as %q", line, back.Data)
				}
				continue
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("opts %+v: %q\n read back %#v\n want      %#v", o, line, back, c)
			}
		}
	}
	got := (&Command{Area: "task", Event: "setvariable", Properties: props{"variable": "x", "isoutput": "true"}, Data: "1;2"}).String()
	if want := "##vso[task.setvariable isoutput=true;variable=x;]1%3B2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestRestrictedAndKnown(t *testing.T) {
	allowed := [][2]string{
		{"task", "logdetail"}, {"task", "logissue"}, {"task", "issue"}, {"task", "complete"}, {"task", "setprogress"},
		{"task", "setsecret"}, {"task", "setvariable"}, {"task", "debug"}, {"task", "settaskvariable"},
		{"task", "prependpath"}, {"telemetry", "publish"}, {"Task", "SetVariable"}, {"TASK", "ISSUE"},
	}
	for _, c := range allowed {
		if !AllowedInRestricted(c[0], c[1]) || !Known(c[0], c[1]) {
			t.Errorf("%s.%s: AllowedInRestricted=%v Known=%v, want both", c[0], c[1], AllowedInRestricted(c[0], c[1]), Known(c[0], c[1]))
		}
	}
	refused := [][2]string{
		{"task", "addattachment"}, {"task", "uploadfile"}, {"task", "uploadsummary"}, {"task", "setendpoint"},
		{"artifact", "upload"}, {"artifact", "associate"}, {"build", "addbuildtag"}, {"build", "updatebuildnumber"},
		{"build", "uploadlog"}, {"build", "uploadsummary"}, {"release", "updatereleasename"}, {"codecoverage", "publish"},
		{"results", "publish"}, {"results", "publishtoevidencestore"},
	}
	for _, c := range refused {
		if AllowedInRestricted(c[0], c[1]) || !Known(c[0], c[1]) {
			t.Errorf("%s.%s: AllowedInRestricted=%v Known=%v, want known and refused", c[0], c[1], AllowedInRestricted(c[0], c[1]), Known(c[0], c[1]))
		}
	}
	for _, c := range [][2]string{{"task", "nosuch"}, {"nosuch", "debug"}, {"plugininternal", "updaterepositorypath"}, {"", ""}} {
		if Known(c[0], c[1]) || AllowedInRestricted(c[0], c[1]) {
			t.Errorf("%s.%s reported known", c[0], c[1])
		}
	}
	if !KnownArea("Artifact") || KnownArea("nosuch") || KnownArea("plugininternal") {
		t.Error("KnownArea wrong")
	}
	if s, _ := Lookup("task", "issue"); s.Event != "logissue" {
		t.Errorf("alias issue resolves to %q", s.Event)
	}
	s, _ := Lookup("task", "setvariable")
	s.Properties[0] = "mutated"
	if again, _ := Lookup("task", "setvariable"); again.Properties[0] != "variable" {
		t.Error("Lookup exposes the table to mutation")
	}
	if s, _ := Lookup("codecoverage", "publish"); s.Hosts != HostBuild {
		t.Errorf("codecoverage hosts = %b", s.Hosts)
	}
}

func TestMessages(t *testing.T) {
	tests := []struct{ got, want string }{
		{UnknownAreaWarning("foo"), "Cannot find command extension for ##vso[foo.command]. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"},
		{UnknownEventError("Task", "nosuch"), "##vso[task.nosuch] is not a recognized command for task command extension. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)."},
		{NotAllowedWarning("task", "uploadfile"), "##vso[task.uploadfile] is not allowed in this step due to policy restrictions. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"},
		{ProcessFailedError("##vso[task.complete result=x]"), "Unable to process command '##vso[task.complete result=x]' successfully. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"},
		{NotSupportedError("codecoverage", "Release"), "codecoverage commands are not supported for Release flow. Please reference documentation (http://go.microsoft.com/fwlink/?LinkId=817296)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %q\nwant %q", tt.got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"##vso[task.setvariable variable=x;issecret=true]value",
		"##vso[area.event k1=%3B=%0D=%0A=%5D%AZP25;]%3B-%0D-%0A-%5D%AZP253B",
		">>> ##vso[a.b k==v;=k2=w;;x]d]e",
		"##vso[task.debug",
		"##vso[a..b  k=v]",
		"##vso[##vso[a.b]x",
		"##vso[a.b İ=x;K=y]",
		"plain",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, line string, keep bool) {
		o := Options{KeepPercentEscapes: keep}
		cmd, found, err := o.Parse(line)
		if !found {
			if cmd != nil || err != nil {
				t.Fatalf("not found but cmd=%v err=%v", cmd, err)
			}
			return
		}
		if err != nil {
			if cmd != nil || !errors.Is(err, ErrIllegal) {
				t.Fatalf("error %v with cmd %v", err, cmd)
			}
			return
		}
		again, found2, err2 := o.Parse(o.Format(cmd))
		if err2 != nil || !found2 || !reflect.DeepEqual(again, cmd) {
			t.Fatalf("round trip of %q via %q:\n got %#v (%v)\nwant %#v", line, o.Format(cmd), again, err2, cmd)
		}
	})
}

package jobs_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/goagent-dev/goagent/internal/devserver"
	"github.com/goagent-dev/goagent/internal/wire"
)

// TestEmulatorOutputVariables: isOutput variables reach the step's record on
// the service, are visible to later steps as $(step.var), and the record
// update carrying them is delivered before JobCompleted — also for the last
// step of the job.
func TestEmulatorOutputVariables(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	const secretOut = "sec-out-value-9f3a71"
	j := l.queue(emuMessage(nil,
		stepSpec{name: "producer", script: strings.Join([]string{
			"echo '##vso[task.setvariable variable=out;isOutput=true]value1'",
			"echo '##vso[task.setvariable variable=sec;isOutput=true;issecret=true]" + secretOut + "'",
			"echo '##vso[task.setvariable variable=plain]p2'",
		}, "\n")},
		stepSpec{name: "consumer", script: `echo "out=$(producer.out) sec=$(producer.sec) plain=$PLAIN env=$PRODUCER_OUT"`},
		stepSpec{name: "last", script: "echo '##vso[task.setvariable variable=final;isOutput=true]done'"},
	))
	if res := l.wait(j); res != "succeeded" {
		t.Fatalf("result %s", res)
	}
	vars := recordVars(t, j, stepID(0))
	if v := vars["out"]; v.Value != "value1" || v.IsSecret {
		t.Errorf("out = %+v", v)
	}
	// A secret output travels to the service marked secret, as the official
	// agent sends it (ExecutionContext.SetVariable); it is never logged.
	if v := vars["sec"]; v.Value != secretOut || !v.IsSecret {
		t.Errorf("sec = %+v", v)
	}
	if _, ok := vars["plain"]; ok {
		t.Error("a non-output variable reached the record")
	}
	if !hasLine(logMessages(j, stepID(1)), "out=value1 sec=*** plain=p2 env=value1") {
		t.Errorf("consumer log:\n%s", logText(j, stepID(1)))
	}
	if v := recordVars(t, j, stepID(2)); v["final"].Value != "done" {
		t.Fatalf("last step's output not on its record: %+v", v)
	}
	// The PATCH that carried "final" came before the JobCompleted event.
	finalAt, completedAt := -1, -1
	for i, ex := range l.srv.Recorder().Exchanges() {
		if ex.Resource == "records" && ex.Status == http.StatusOK && bytes.Contains(ex.RequestBody, []byte(`"final"`)) && finalAt < 0 {
			finalAt = i
		}
		if ex.Resource == "events" && bytes.Contains(ex.RequestBody, []byte("JobCompleted")) {
			completedAt = i
		}
	}
	if finalAt < 0 || completedAt < 0 || finalAt > completedAt {
		t.Errorf("output PATCH at %d, JobCompleted at %d", finalAt, completedAt)
	}
	for id, lines := range j.Logs() {
		if strings.Contains(lines, secretOut) {
			t.Errorf("log %d holds the secret output", id)
		}
	}
	l.checkViolations()
}

// TestEmulatorOutputsNotDelivered: when the record updates cannot be
// delivered, a job whose steps set output variables fails ("Failed to
// publish output variables."), a job without outputs does not.
func TestEmulatorOutputsNotDelivered(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{agents: 2})
	l.srv.Faults().Add(devserver.Fault{Method: http.MethodPatch, Resource: "records", Status: http.StatusBadRequest, Times: -1})
	with := l.queue(emuMessage(nil, stepSpec{name: "producer", script: "echo '##vso[task.setvariable variable=out;isOutput=true]v'"}))
	without := l.queue(emuMessage(nil, stepSpec{script: "echo no outputs"}))
	if res := l.wait(with); res != "failed" {
		t.Errorf("job with outputs: %s, want failed", res)
	}
	if res := l.wait(without); res != "succeeded" {
		t.Errorf("job without outputs: %s, want succeeded", res)
	}
}

type recordVar struct {
	Value    string `json:"value"`
	IsSecret bool   `json:"isSecret"`
}

// recordVars decodes a record's variables as the emulator stored them.
func recordVars(t *testing.T, j *devserver.Job, id string) map[string]recordVar {
	t.Helper()
	fields, ok := j.RecordJSON(id)
	if !ok {
		t.Fatalf("no record %s", id)
	}
	out := map[string]recordVar{}
	if raw, ok := fields["variables"]; ok {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("record %s variables %s: %v", id, raw, err)
		}
	}
	return out
}

// uriDataEscape is Uri.EscapeDataString: everything but the RFC 3986
// unreserved characters percent-encoded.
func uriDataEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// jsonEscape is s as it appears inside a JSON string.
func jsonEscape(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	out := strings.TrimSpace(b.String())
	return out[1 : len(out)-1]
}

// TestEmulatorSecretsNeverRecorded: secrets from every source, printed by
// steps raw and encoded, are absent from every byte the emulator recorded
// (request and response bodies, paths, headers), and the steps' logs show
// them masked.
func TestEmulatorSecretsNeverRecorded(t *testing.T) {
	t.Parallel()
	l := newLab(t, labOptions{})
	secrets := map[string]string{
		"variable":     `Var 50%off "quoted" & sl/ash+eq=x\b`,
		"issecret":     `Set-var:secret/val "two"`,
		"setsecret":    `Set secret & more+plus`,
		"endpoint":     `endpoint-P@ss w/"x"&y`,
		"endpointUser": `svc-user-4417`,
	}
	const hint = "hint-424242-x"
	var lines []string
	expect := map[string]bool{} // exact log lines the steps must show
	literal := func(label, v string) {
		lines = append(lines, "echo '"+label+"="+v+"'")
		expect[label+"=***"] = true
	}
	encoded := func(label, v string) {
		literal(label+"_raw", v)
		literal(label+"_b64", base64.StdEncoding.EncodeToString([]byte(v)))
		literal(label+"_url", uriDataEscape(v))
		literal(label+"_json", jsonEscape(v))
	}
	for _, k := range []string{"variable", "setsecret", "endpoint", "endpointUser"} {
		encoded(k, secrets[k])
	}
	// The logging-command escape of a value with '%' (%AZP25).
	literal("variable_cmd", strings.ReplaceAll(secrets["variable"], "%", "%AZP25"))
	literal("hint", hint)
	printer := strings.Join(append([]string{
		"echo '##vso[task.setsecret]" + secrets["setsecret"] + "'",
		`echo "variable_env=$SV"`,
		`echo "variable_envb64=$(printf %s "$SV" | base64 -w0)"`,
		`echo "token_env=$TOKEN"`,
		`echo "token_envb64=$(printf %s "$TOKEN" | base64 -w0)"`,
	}, lines...), "\n")
	for _, k := range []string{"variable_env", "variable_envb64", "token_env", "token_envb64"} {
		expect[k+"=***"] = true
	}
	m := emuMessage(map[string]wire.VariableValue{"mySecret": {Value: secrets["variable"], IsSecret: true}},
		stepSpec{name: "setter", script: "echo '##vso[task.setvariable variable=later;issecret=true]" + secrets["issecret"] + "'"},
		stepSpec{name: "printer", script: printer, env: map[string]string{"SV": "$(mySecret)", "TOKEN": "$(System.AccessToken)"}},
		stepSpec{name: "macro", script: `echo 'issecret_raw=$(later)'; echo "issecret_b64=$(printf %s '$(later)' | base64 -w0)"`},
	)
	expect2 := []string{"issecret_raw=***", "issecret_b64=***"}
	m.Mask = append(m.Mask, wire.MaskHint{Type: "regex", Value: `hint-[0-9]{6}-x`})
	m.Resources.Endpoints = append(m.Resources.Endpoints, wire.ServiceEndpoint{
		ID: "8d2f3c4e-1111-4222-8333-944455556666", Name: "svc", Type: "generic", URL: "https://127.0.0.1:9/svc",
		Authorization: wire.EndpointAuth{Scheme: "UsernamePassword", Parameters: map[string]string{"username": secrets["endpointUser"], "password": secrets["endpoint"]}},
	})
	j := l.queue(m)
	if res := l.wait(j); res != "succeeded" {
		t.Fatalf("result %s\n%s", res, logText(j, stepID(1)))
	}
	got := logMessages(j, stepID(1))
	for line := range expect {
		if !hasLine(got, line) {
			t.Errorf("printer log lacks %q", line)
		}
	}
	got = logMessages(j, stepID(2))
	for _, line := range expect2 {
		if !hasLine(got, line) {
			t.Errorf("macro log lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("printer log:\n%s\nmacro log:\n%s", logText(j, stepID(1)), logText(j, stepID(2)))
	}

	forms := map[string]string{"hint": hint}
	add := func(name, v string) {
		forms[name] = v
		forms[name+" base64"] = base64.StdEncoding.EncodeToString([]byte(v))
		forms[name+" url"] = uriDataEscape(v)
		forms[name+" json"] = jsonEscape(v)
	}
	for k, v := range secrets {
		add(k, v)
	}
	add("job token", j.Token())
	secretsAbsent(t, l.srv, forms)
	// The check is not vacuous: the masked lines are among the recorded bytes.
	seen := false
	for _, ex := range l.srv.Recorder().Exchanges() {
		seen = seen || bytes.Contains(ex.RequestBody, []byte("variable_raw=***"))
	}
	if !seen {
		t.Error("the recorder holds no uploaded log with the printed lines")
	}
	l.checkViolations()
}

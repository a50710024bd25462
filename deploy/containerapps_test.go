package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
)

// adoResource is Azure DevOps' Entra resource (application) id.
const adoResource = "499b84ac-1321-427f-aa17-267ca6975798"

// jobCreateFlags and jobStartFlags are the options of `az containerapp job
// create` and `az containerapp job start` (azure-cli-extensions,
// src/containerapp: custom.py create_containerappsjob/start_containerappsjob
// and _params.py), so a misspelled flag fails here rather than in Azure.
var (
	jobCreateFlags = []string{
		"--name", "-n", "--resource-group", "-g", "--yaml", "--image", "--container-name", "--environment",
		"--trigger-type", "--replica-timeout", "--replica-retry-limit", "--replica-completion-count", "--rcc",
		"--parallelism", "--cron-expression", "--secrets", "-s", "--env-vars", "--cpu", "--memory",
		"--registry-server", "--registry-username", "--registry-password", "--registry-identity",
		"--command", "--args", "--scale-rule-metadata", "--scale-rule-name", "--scale-rule-type",
		"--scale-rule-auth", "--polling-interval", "--min-executions", "--max-executions", "--tags",
		"--no-wait", "--mi-system-assigned", "--mi-user-assigned", "--workload-profile-name", "-w",
		"--output", "-o",
	}
	jobStartFlags = []string{
		"--name", "-n", "--resource-group", "-g", "--image", "--container-name", "--env-vars",
		"--command", "--args", "--cpu", "--memory", "--registry-identity", "--yaml", "--output", "-o",
	}
)

// TestContainerAppsScript reads containerapps/deploy.sh as bash and checks
// the job it creates, the placeholder execution it starts and the call that
// adds the identity to the organization.
func TestContainerAppsScript(t *testing.T) {
	facts := readGoagentFacts(t)
	b, err := os.ReadFile(filepath.Join("containerapps", "deploy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	if !strings.HasPrefix(src, "#!/usr/bin/env bash\n") || !strings.Contains(src, "\nset -euo pipefail\n") {
		t.Error("deploy.sh must be a bash script with set -euo pipefail")
	}
	if st, err := os.Stat(filepath.Join("containerapps", "deploy.sh")); err != nil || st.Mode()&0o111 == 0 {
		t.Error("deploy.sh must be executable")
	}
	known, err := literalAssignments(src)
	if err != nil {
		t.Fatalf("deploy.sh: %v", err)
	}
	calls, err := shellCalls(src, syntax.LangBash, known)
	if err != nil {
		t.Fatalf("deploy.sh: %v", err)
	}

	creates := findCalls(calls, "az", "containerapp", "job", "create")
	if len(creates) != 1 {
		t.Fatalf("deploy.sh: want one `az containerapp job create`, found %d", len(creates))
	}
	create := azFlags(t, "job create", creates[0].args[4:], jobCreateFlags)
	if _, ok := create["--mi-system-assigned"]; !ok {
		t.Error("job create: no --mi-system-assigned: the agents need the job's managed identity")
	}
	wantValues(t, "job create", create, "--trigger-type", "Event")
	wantValues(t, "job create", create, "--scale-rule-type", "azure-pipelines")
	wantValues(t, "job create", create, "--replica-retry-limit", "0")
	wantValues(t, "job create", create, "--parallelism", "1")

	metadata := keyValues(t, "job create --scale-rule-metadata", create["--scale-rule-metadata"])
	if err := checkAzurePipelinesMetadata(metadata); err != nil {
		t.Errorf("job create: scale rule %v", err)
	}
	secrets := keyValues(t, "job create --secrets", create["--secrets"])
	for param, secret := range keyValues(t, "job create --scale-rule-auth", create["--scale-rule-auth"]) {
		if !slices.Contains(azurePipelinesAuthParams, param) {
			t.Errorf("job create: scale rule auth parameter %q is not one KEDA's azure-pipelines scaler reads %v", param, azurePipelinesAuthParams)
		}
		if _, ok := secrets[secret]; !ok {
			t.Errorf("job create: scale rule auth %s refers to secret %q, which --secrets does not define", param, secret)
		}
	}
	agent := agentEnv{where: "deploy.sh job create --env-vars", vars: keyValues(t, "job create --env-vars", create["--env-vars"])}
	agent.check(t, facts, "managed-identity")
	for name, v := range agent.vars {
		if strings.HasPrefix(v, "secretref:") {
			t.Errorf("job create: %s=%s hands a secret to the agent; it needs none", name, v)
		}
	}
	if agent.placeholder() {
		t.Error("job create: the agents must not be placeholders")
	}
	if metadata["poolName"] != agent.vars["AZP_POOL"] {
		t.Errorf("job create: KEDA watches pool %q but the agents join %q", metadata["poolName"], agent.vars["AZP_POOL"])
	}

	starts := findCalls(calls, "az", "containerapp", "job", "start")
	if len(starts) != 1 {
		t.Fatalf("deploy.sh: want one `az containerapp job start` (the placeholder), found %d", len(starts))
	}
	start := azFlags(t, "job start", starts[0].args[4:], jobStartFlags)
	checkPlaceholderStart(t, "deploy.sh job start", start, facts)
	// The override must replace the job's own container, named after the
	// job since create sets no --container-name.
	if got, want := start["--container-name"], create["--name"]; !slices.Equal(got, want) {
		t.Errorf("job start: --container-name %v, want the job's container %v", got, want)
	}
	if !slices.Equal(start["--name"], create["--name"]) || !slices.Equal(start["--image"], create["--image"]) {
		t.Errorf("job start must start the created job with its image: --name %v/%v, --image %v/%v",
			start["--name"], create["--name"], start["--image"], create["--image"])
	}

	rests := findCalls(calls, "az", "rest")
	if len(rests) != 1 {
		t.Fatalf("deploy.sh: want one `az rest` (adding the identity to the organization), found %d", len(rests))
	}
	rest, err := cliFlags(rests[0].args[2:])
	if err != nil {
		t.Fatal(err)
	}
	wantValues(t, "az rest", rest, "--resource", adoResource)
	wantValues(t, "az rest", rest, "--method", "post")
	if uri := strings.Join(rest["--uri"], " "); !strings.HasPrefix(uri, "https://vsaex.dev.azure.com/") || !strings.Contains(uri, "/_apis/serviceprincipalentitlements?api-version=") {
		t.Errorf("az rest --uri %q is not the service principal entitlements API", uri)
	}
	if body := strings.Join(rest["--body"], " "); !strings.Contains(body, `"originId":"<principal>"`) || !strings.Contains(body, `"subjectKind":"servicePrincipal"`) {
		t.Errorf("az rest --body %q does not add the job's identity as a service principal", body)
	}
	for _, c := range calls {
		if len(c.args) > 0 && strings.Contains(strings.Join(c.args, " "), "AZP_TOKEN") {
			t.Errorf("deploy.sh passes AZP_TOKEN to something: %v", c.args)
		}
	}
}

// TestContainerAppsBicep reads containerapps/main.bicep and checks the job
// resource and the placeholder command it outputs.
func TestContainerAppsBicep(t *testing.T) {
	facts := readGoagentFacts(t)
	b, err := os.ReadFile(filepath.Join("containerapps", "main.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	decls, err := parseBicep(string(b))
	if err != nil {
		t.Fatalf("main.bicep: %v", err)
	}
	var job *bicepValue
	var jobName string
	outputs := map[string]*bicepValue{}
	params := map[string]*bicepValue{} // name → default (nil: none)
	for _, d := range decls {
		switch d.Keyword {
		case "resource":
			if strings.HasPrefix(d.Type, "Microsoft.App/jobs@") {
				if job != nil {
					t.Fatal("main.bicep declares more than one Microsoft.App/jobs")
				}
				job, jobName = d.Value, d.Name
			}
		case "output":
			outputs[d.Name] = d.Value
		case "param":
			params[d.Name] = d.Value
		}
	}
	if job == nil {
		t.Fatal("main.bicep declares no Microsoft.App/jobs resource")
	}
	if got := job.get("identity", "type").text(); got != "SystemAssigned" {
		t.Errorf("job identity type %q, want SystemAssigned", got)
	}
	cfg := job.get("properties", "configuration")
	if got := cfg.get("triggerType").text(); got != "Event" {
		t.Errorf("triggerType %q, want Event", got)
	}
	if got := cfg.get("replicaRetryLimit").text(); got != "0" {
		t.Errorf("replicaRetryLimit %q, want 0", got)
	}
	secrets := map[string]bool{}
	for _, s := range cfg.get("secrets").Arr {
		secrets[s.get("name").text()] = true
	}
	rules := cfg.get("eventTriggerConfig", "scale", "rules")
	if rules == nil || len(rules.Arr) != 1 {
		t.Fatalf("want one scale rule under eventTriggerConfig.scale.rules, got %+v", rules)
	}
	rule := rules.Arr[0]
	if got := rule.get("type").text(); got != "azure-pipelines" {
		t.Errorf("scale rule type %q, want azure-pipelines", got)
	}
	metadata := map[string]string{}
	if md := rule.get("metadata"); md != nil {
		for _, k := range md.Keys {
			metadata[k] = md.Obj[k].text()
		}
	}
	if err := checkAzurePipelinesMetadata(metadata); err != nil {
		t.Errorf("scale rule: %v", err)
	}
	for _, a := range rule.get("auth").Arr {
		param, secret := a.get("triggerParameter").text(), a.get("secretRef").text()
		if !slices.Contains(azurePipelinesAuthParams, param) {
			t.Errorf("scale rule auth parameter %q is not one KEDA's azure-pipelines scaler reads %v", param, azurePipelinesAuthParams)
		}
		if !secrets[secret] {
			t.Errorf("scale rule auth %s refers to secret %q, which configuration.secrets does not define", param, secret)
		}
	}

	containers := job.get("properties", "template", "containers")
	if containers == nil || len(containers.Arr) != 1 {
		t.Fatalf("want one container in properties.template.containers, got %+v", containers)
	}
	c := containers.Arr[0]
	agent := agentEnv{where: "main.bicep container env", vars: map[string]string{}}
	raw := map[string]string{} // values as written
	for _, e := range c.get("env").Arr {
		name := e.get("name")
		if name == nil || !name.IsStr {
			t.Fatalf("an env entry without a literal name: %+v", e)
		}
		if e.get("secretRef") != nil {
			t.Errorf("env %s comes from a secret; the agent needs none", name.Str)
		}
		v := e.get("value")
		raw[name.Str] = v.text()
		// A parameter with a literal default stands for that default.
		if def, ok := params[v.text()]; ok && def != nil && def.IsStr {
			v = def
		}
		agent.vars[name.Str] = v.text()
	}
	agent.check(t, facts, "managed-identity")
	if agent.placeholder() {
		t.Error("the job's agents must not be placeholders")
	}
	if _, isParam := params[raw["AZP_POOL"]]; metadata["poolName"] != raw["AZP_POOL"] || !isParam {
		t.Errorf("KEDA watches pool %q but the agents join %q; both should be the same parameter", metadata["poolName"], raw["AZP_POOL"])
	}

	// principalId: what to grant in Azure DevOps.
	if got := outputs["principalId"].text(); got != jobName+".identity.principalId" {
		t.Errorf("output principalId = %q, want %s.identity.principalId", got, jobName)
	}
	// placeholderCommand: a Bicep string with ${…} holes; as a command line
	// it must start the placeholder just as deploy.sh does.
	pc := outputs["placeholderCommand"]
	if pc == nil || !strings.HasPrefix(pc.Expr, "'") {
		t.Fatalf("main.bicep has no placeholderCommand string output")
	}
	cmdline := bicepHoles(strings.Trim(pc.Expr, "'"))
	calls, err := shellCalls(cmdline, syntax.LangBash, nil)
	if err != nil || len(calls) != 1 {
		t.Fatalf("placeholderCommand %q does not read as one command: %v", cmdline, err)
	}
	if len(findCalls(calls, "az", "containerapp", "job", "start")) != 1 {
		t.Fatalf("placeholderCommand runs %v, want az containerapp job start", calls[0].args)
	}
	start := azFlags(t, "placeholderCommand", calls[0].args[4:], jobStartFlags)
	checkPlaceholderStart(t, "main.bicep placeholderCommand", start, facts)
	if got, want := start["--container-name"], []string{"{" + c.get("name").text() + "}"}; !slices.Equal(got, want) {
		t.Errorf("placeholderCommand --container-name %v, want the job's container %v", got, want)
	}
}

// checkPlaceholderStart checks a job start that registers the placeholder.
func checkPlaceholderStart(t *testing.T, where string, start map[string][]string, facts goagentFacts) {
	t.Helper()
	env := agentEnv{where: where + " --env-vars", vars: keyValues(t, where+" --env-vars", start["--env-vars"])}
	env.check(t, facts, "managed-identity")
	if !env.placeholder() {
		t.Errorf("%s: AZP_PLACEHOLDER=%q, want a placeholder registration", where, env.vars["AZP_PLACEHOLDER"])
	}
	if env.vars["AZP_AGENT_NAME"] == "" {
		t.Errorf("%s: the placeholder needs a fixed AZP_AGENT_NAME", where)
	}
	if len(start["--image"]) != 1 {
		t.Errorf("%s: --image is required with --env-vars (the override replaces the container)", where)
	}
}

// bicepHoles turns ${expr} into {expr}, non-word characters as _, so the
// string reads as one shell command line.
func bicepHoles(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		hole := strings.Map(func(r rune) rune {
			if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '_'
		}, s[i+2:i+j])
		b.WriteString(s[:i] + "{" + hole + "}")
		s = s[i+j+1:]
	}
}

func azFlags(t *testing.T, what string, args []string, allowed []string) map[string][]string {
	t.Helper()
	flags, err := cliFlags(args)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for f := range flags {
		if !slices.Contains(allowed, f) {
			t.Errorf("%s: unknown flag %s", what, f)
		}
	}
	return flags
}

func wantValues(t *testing.T, what string, flags map[string][]string, flag string, want ...string) {
	t.Helper()
	if got := flags[flag]; !slices.Equal(got, want) {
		t.Errorf("%s: %s %v, want %v", what, flag, got, want)
	}
}

// keyValues reads KEY=VALUE arguments.
func keyValues(t *testing.T, what string, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			t.Errorf("%s: %q is not KEY=VALUE", what, a)
			continue
		}
		if _, dup := out[k]; dup {
			t.Errorf("%s: %s given twice", what, k)
		}
		out[k] = v
	}
	return out
}

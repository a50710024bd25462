package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The annotation and label of AKS workload identity.
const (
	wiClientIDAnnotation = "azure.workload.identity/client-id"
	wiUseLabel           = "azure.workload.identity/use"
)

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// manifest is one decoded YAML document.
type manifest struct {
	where string // file#index, for messages
	obj   any    // *corev1.Namespace, *batchv1.Job, *kedaScaledJob, …
}

// splitDocuments splits a multi-document YAML stream at "---" lines and
// drops documents holding only comments and blank lines.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		content := false
		for _, line := range strings.Split(cur.String(), "\n") {
			if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
				content = true
				break
			}
		}
		if content {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if strings.TrimRight(line, " \t\r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}

// decodeManifest decodes one document strictly (unknown and duplicate
// fields fail) into the API type its apiVersion and kind name.
func decodeManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "batch/v1 Job":
		obj = &batchv1.Job{}
	case "keda.sh/v1alpha1 ScaledJob":
		obj = &kedaScaledJob{}
	case "keda.sh/v1alpha1 TriggerAuthentication":
		obj = &kedaTriggerAuthentication{}
	default:
		return nil, fmt.Errorf("apiVersion %q kind %q: not a kind these examples use", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	switch o := obj.(type) {
	case *kedaScaledJob:
		if err := o.Spec.validate(); err != nil {
			return nil, fmt.Errorf("ScaledJob %s: %w", o.Name, err)
		}
	case *kedaTriggerAuthentication:
		if err := o.Spec.validate(); err != nil {
			return nil, fmt.Errorf("TriggerAuthentication %s: %w", o.Name, err)
		}
	}
	return obj, nil
}

func loadManifests(t *testing.T, dir string) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	sort.Strings(files)
	var out []manifest
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			where := fmt.Sprintf("%s#%d", filepath.Base(f), i)
			obj, err := decodeManifest(doc)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			out = append(out, manifest{where, obj})
		}
	}
	return out
}

// TestStrictDecoding shows the decoder rejects what the API server (or
// KEDA's CRD validation) would, so a passing manifest test means something.
func TestStrictDecoding(t *testing.T) {
	const job = `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: i, resources: {requests: {cpu: %s}}}]
      %s
`
	const scaledJob = `apiVersion: keda.sh/v1alpha1
kind: ScaledJob
metadata: {name: s}
spec:
  rollout: {strategy: %s}
  jobTargetRef:
    template: {spec: {containers: [{name: c, image: i}]}}
  triggers:
  - type: azure-pipelines
    %s: {poolName: p}
`
	cases := []struct {
		name, doc, wantErr string
	}{
		{"valid job", fmt.Sprintf(job, "500m", "serviceAccountName: sa"), ""},
		{"valid scaled job", fmt.Sprintf(scaledJob, "gradual", "metadata"), ""},
		{"misspelled pod field", fmt.Sprintf(job, "500m", "serviceAcountName: sa"), `unknown field "serviceAcountName"`},
		{"bad quantity", fmt.Sprintf(job, "lots", ""), "quantities must match"},
		{"duplicate field", fmt.Sprintf(job, "500m", "serviceAccountName: a\n      serviceAccountName: b"), "already set"},
		{"misspelled trigger field", fmt.Sprintf(scaledJob, "gradual", "metdata"), `unknown field "metdata"`},
		{"rollout enum", fmt.Sprintf(scaledJob, "sometimes", "metadata"), `spec.rollout.strategy "sometimes"`},
		{"status is not for manifests", "apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: t}\nspec: {}\nstatus: {scaledjobs: x}\n", `unknown field "status"`},
		{"pod identity provider", "apiVersion: keda.sh/v1alpha1\nkind: TriggerAuthentication\nmetadata: {name: t}\nspec: {podIdentity: {provider: azure}}\n", `spec.podIdentity.provider "azure"`},
		{"other kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n", "not a kind these examples use"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(c.doc))
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("rejected a valid document: %v", err)
			case c.wantErr != "" && err == nil:
				t.Fatalf("accepted a document that must fail with %q", c.wantErr)
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Fatalf("error %q, want it to mention %q", err, c.wantErr)
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	in := "# header only\n---\na: 1\n---   \n# c\nb: 2\n---\n\n"
	got := splitDocuments([]byte(in))
	if len(got) != 2 || !strings.Contains(string(got[0]), "a: 1") || !strings.Contains(string(got[1]), "b: 2") {
		t.Fatalf("split into %q", got)
	}
}

// TestAKSManifests checks deploy/aks as a whole: every document decodes
// strictly, and the objects agree with each other, with KEDA's scaler and
// with what goagent reads.
func TestAKSManifests(t *testing.T) {
	facts := readGoagentFacts(t)
	ms := loadManifests(t, "aks")

	var (
		namespaces  = map[string]bool{}
		accounts    = map[string]*corev1.ServiceAccount{}
		configMaps  = map[string]*corev1.ConfigMap{}
		auths       = map[string]*kedaTriggerAuthentication{}
		scaledJobs  []*kedaScaledJob
		jobs        []*batchv1.Job
		objectMetas = map[string]metav1.ObjectMeta{}
	)
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *corev1.Namespace:
			namespaces[o.Name] = true
		case *corev1.ServiceAccount:
			accounts[o.Name] = o
			objectMetas[m.where] = o.ObjectMeta
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
			objectMetas[m.where] = o.ObjectMeta
		case *kedaTriggerAuthentication:
			auths[o.Name] = o
			objectMetas[m.where] = o.ObjectMeta
		case *kedaScaledJob:
			scaledJobs = append(scaledJobs, o)
			objectMetas[m.where] = o.ObjectMeta
		case *batchv1.Job:
			jobs = append(jobs, o)
			objectMetas[m.where] = o.ObjectMeta
		}
	}
	if len(namespaces) != 1 || len(scaledJobs) != 1 || len(jobs) != 1 || len(auths) != 1 || len(accounts) != 1 {
		t.Fatalf("want one Namespace, ServiceAccount, TriggerAuthentication, ScaledJob and placeholder Job; got %d, %d, %d, %d, %d",
			len(namespaces), len(accounts), len(auths), len(scaledJobs), len(jobs))
	}
	for where, om := range objectMetas {
		if !namespaces[om.Namespace] {
			t.Errorf("%s: namespace %q is not the one the manifests create", where, om.Namespace)
		}
	}

	var sa *corev1.ServiceAccount
	for _, a := range accounts {
		sa = a
	}
	clientID := sa.Annotations[wiClientIDAnnotation]
	if !guidPattern.MatchString(clientID) {
		t.Errorf("ServiceAccount %s: annotation %s=%q, want the identity's client id (a GUID)", sa.Name, wiClientIDAnnotation, clientID)
	}

	sj := scaledJobs[0]
	if len(sj.Spec.Triggers) != 1 {
		t.Fatalf("ScaledJob %s: want one trigger, got %d", sj.Name, len(sj.Spec.Triggers))
	}
	tr := sj.Spec.Triggers[0]
	if tr.Type != "azure-pipelines" {
		t.Fatalf("ScaledJob %s: trigger type %q, want azure-pipelines", sj.Name, tr.Type)
	}
	if err := checkAzurePipelinesMetadata(tr.Metadata); err != nil {
		t.Errorf("ScaledJob %s: %v", sj.Name, err)
	}
	if _, ok := tr.Metadata["personalAccessTokenFromEnv"]; ok {
		t.Errorf("ScaledJob %s: the trigger reads a PAT; authenticate KEDA with workload identity (TriggerAuthentication podIdentity)", sj.Name)
	}

	// KEDA's authentication: workload identity, the agents' identity, no secret.
	if tr.AuthenticationRef == nil {
		t.Fatalf("ScaledJob %s: the trigger has no authenticationRef", sj.Name)
	}
	ta := auths[tr.AuthenticationRef.Name]
	if ta == nil || (tr.AuthenticationRef.Kind != "" && tr.AuthenticationRef.Kind != "TriggerAuthentication") {
		t.Fatalf("ScaledJob %s: authenticationRef %+v names no TriggerAuthentication of these manifests", sj.Name, *tr.AuthenticationRef)
	}
	if ta.Spec.PodIdentity == nil || ta.Spec.PodIdentity.Provider != "azure-workload" {
		t.Errorf("TriggerAuthentication %s: want podIdentity.provider azure-workload", ta.Name)
	} else if id := ta.Spec.PodIdentity.IdentityID; id == nil || *id != clientID {
		t.Errorf("TriggerAuthentication %s: podIdentity.identityId should be the ServiceAccount's client id %s", ta.Name, clientID)
	}
	if len(ta.Spec.SecretTargetRef)+len(ta.Spec.ConfigMapTargetRef)+len(ta.Spec.Env) > 0 || ta.Spec.FilePath != "" {
		t.Errorf("TriggerAuthentication %s: takes parameters from secrets, config maps, env or files; workload identity needs none", ta.Name)
	}

	if sj.Spec.JobTargetRef.BackoffLimit == nil || *sj.Spec.JobTargetRef.BackoffLimit != 0 {
		t.Errorf("ScaledJob %s: jobTargetRef.backoffLimit must be 0: a retried agent would register again for a job that is gone", sj.Name)
	}
	if sj.Spec.Rollout.Strategy != "gradual" {
		t.Errorf("ScaledJob %s: rollout.strategy %q; gradual keeps running agents when the ScaledJob changes", sj.Name, sj.Spec.Rollout.Strategy)
	}
	agent := checkPod(t, "ScaledJob "+sj.Name, sj.Spec.JobTargetRef.Template, sa.Name, configMaps, facts)
	if agent.placeholder() {
		t.Errorf("ScaledJob %s: the agents must not be placeholders", sj.Name)
	}
	if got := agent.vars["AZP_AGENT_NAME"]; got != "<fieldRef:metadata.name>" {
		t.Errorf("ScaledJob %s: AZP_AGENT_NAME=%q; use the pod name (fieldRef metadata.name) so every agent is unique", sj.Name, got)
	}
	if pool := tr.Metadata["poolName"]; pool != agent.vars["AZP_POOL"] {
		t.Errorf("ScaledJob %s: KEDA watches pool %q but the agents join %q", sj.Name, pool, agent.vars["AZP_POOL"])
	}
	if env := tr.Metadata["organizationURLFromEnv"]; env != "" {
		if _, ok := agent.vars[env]; !ok {
			t.Errorf("ScaledJob %s: organizationURLFromEnv names %s, which the agent container does not have", sj.Name, env)
		}
	}

	ph := jobs[0]
	holder := checkPod(t, "Job "+ph.Name, ph.Spec.Template, sa.Name, configMaps, facts)
	if !holder.placeholder() {
		t.Errorf("Job %s: AZP_PLACEHOLDER=%q, want a placeholder registration", ph.Name, holder.vars["AZP_PLACEHOLDER"])
	}
	if name := holder.vars["AZP_AGENT_NAME"]; name == "" || strings.HasPrefix(name, "<") {
		t.Errorf("Job %s: the placeholder needs a fixed AZP_AGENT_NAME so it is registered once, got %q", ph.Name, name)
	}
	if a, b := sj.Spec.JobTargetRef.Template.Spec.Containers[0].Image, ph.Spec.Template.Spec.Containers[0].Image; a != b {
		t.Errorf("the agents run image %q but the placeholder %q", a, b)
	}
}

// checkPod checks a pod template that runs goagent with workload identity
// and returns its resolved environment.
func checkPod(t *testing.T, where string, tmpl corev1.PodTemplateSpec, serviceAccount string, configMaps map[string]*corev1.ConfigMap, facts goagentFacts) agentEnv {
	t.Helper()
	spec := tmpl.Spec
	if tmpl.Labels[wiUseLabel] != "true" {
		t.Errorf("%s: pod label %s=%q, want \"true\" (or the webhook injects no identity)", where, wiUseLabel, tmpl.Labels[wiUseLabel])
	}
	if spec.ServiceAccountName != serviceAccount {
		t.Errorf("%s: serviceAccountName %q, want %q", where, spec.ServiceAccountName, serviceAccount)
	}
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q, want Never: a restarted agent would register for a job that is gone", where, spec.RestartPolicy)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: want one container (goagent), got %d", where, len(spec.Containers))
	}
	c := spec.Containers[0]
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != imageUID {
		t.Errorf("%s: pod securityContext must set runAsNonRoot and runAsUser %d (the image's user)", where, imageUID)
	}
	csc := c.SecurityContext
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Errorf("%s: container must set allowPrivilegeEscalation: false", where)
	}
	env := agentEnv{where: where, vars: map[string]string{}}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("%s: envFrom other than a ConfigMap (a Secret?) is not expected", where)
			continue
		}
		cm := configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Fatalf("%s: envFrom names ConfigMap %q, which the manifests do not define", where, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env.vars[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env.vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			env.vars[e.Name] = "<fieldRef:" + e.ValueFrom.FieldRef.FieldPath + ">"
		case e.ValueFrom.ConfigMapKeyRef != nil:
			cm := configMaps[e.ValueFrom.ConfigMapKeyRef.Name]
			if cm == nil {
				t.Fatalf("%s: %s reads ConfigMap %q, which the manifests do not define", where, e.Name, e.ValueFrom.ConfigMapKeyRef.Name)
			}
			env.vars[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
		default:
			t.Errorf("%s: %s comes from a Secret or resource field; the agent needs no secret", where, e.Name)
		}
	}
	env.check(t, facts, "workload-identity")

	// With a read-only root, the work directory and /tmp must be volumes.
	if csc != nil && csc.ReadOnlyRootFilesystem != nil && *csc.ReadOnlyRootFilesystem {
		work := env.vars["AZP_WORK"]
		if work == "" {
			work = "/azp/_work" // the image's ENV (TestDockerfile checks it)
		}
		for _, p := range []string{work, "/tmp"} {
			if !mounted(c.VolumeMounts, p) {
				t.Errorf("%s: the root file system is read-only but %s is on no volume", where, p)
			}
		}
	}
	return env
}

func mounted(mounts []corev1.VolumeMount, p string) bool {
	for _, m := range mounts {
		mp := path.Clean(m.MountPath)
		if !m.ReadOnly && (p == mp || strings.HasPrefix(p, mp+"/")) {
			return true
		}
	}
	return false
}

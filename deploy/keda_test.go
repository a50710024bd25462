package deploy

import (
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KEDA's API types, as a typed subset: the fields a manifest may set on
// keda.sh/v1alpha1 ScaledJob and TriggerAuthentication in KEDA v2.20.2
// (apis/keda/v1alpha1/scaledjob_types.go, scaletriggers_types.go,
// triggerauthentication_types.go). Importing github.com/kedacore/keda/v2
// itself would pull controller-runtime, client-go and the Prometheus client
// into this module (its webhooks live in the same package) and repeat
// KEDA's replace directives for k8s.io; cold, that compile alone took three
// minutes of the test budget. Strict decoding (unknown fields fail) against
// these types, with the real k8s.io/api JobSpec inside, catches the same
// mistakes a manifest can make. Status is left out on purpose: a manifest
// must not set it. Secret-store authentication (Vault, Key Vault, AWS, GCP)
// is left out too: these manifests must not use secrets at all.

type kedaScaledJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kedaScaledJobSpec `json:"spec"`
}

type kedaScaledJobSpec struct {
	JobTargetRef               *batchv1.JobSpec    `json:"jobTargetRef"`
	PollingInterval            *int32              `json:"pollingInterval,omitempty"`
	SuccessfulJobsHistoryLimit *int32              `json:"successfulJobsHistoryLimit,omitempty"`
	FailedJobsHistoryLimit     *int32              `json:"failedJobsHistoryLimit,omitempty"`
	RolloutStrategy            string              `json:"rolloutStrategy,omitempty"` // deprecated for rollout.strategy
	Rollout                    kedaRollout         `json:"rollout,omitempty"`
	EnvSourceContainerName     string              `json:"envSourceContainerName,omitempty"`
	MinReplicaCount            *int32              `json:"minReplicaCount,omitempty"`
	MaxReplicaCount            *int32              `json:"maxReplicaCount,omitempty"`
	ScalingStrategy            kedaScalingStrategy `json:"scalingStrategy,omitempty"`
	Triggers                   []kedaTrigger       `json:"triggers"`
}

type kedaRollout struct {
	Strategy          string `json:"strategy,omitempty"`
	PropagationPolicy string `json:"propagationPolicy,omitempty"`
}

type kedaScalingStrategy struct {
	Strategy                          string   `json:"strategy,omitempty"`
	CustomScalingQueueLengthDeduction *int32   `json:"customScalingQueueLengthDeduction,omitempty"`
	CustomScalingRunningJobPercentage string   `json:"customScalingRunningJobPercentage,omitempty"`
	PendingPodConditions              []string `json:"pendingPodConditions,omitempty"`
	MultipleScalersCalculation        string   `json:"multipleScalersCalculation,omitempty"`
}

type kedaTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *kedaAuthRef      `json:"authenticationRef,omitempty"`
	MetricType        string            `json:"metricType,omitempty"`
}

type kedaAuthRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

type kedaTriggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kedaTriggerAuthenticationSpec `json:"spec"`
}

type kedaTriggerAuthenticationSpec struct {
	PodIdentity        *kedaPodIdentity `json:"podIdentity,omitempty"`
	SecretTargetRef    []kedaTargetRef  `json:"secretTargetRef,omitempty"`
	ConfigMapTargetRef []kedaTargetRef  `json:"configMapTargetRef,omitempty"`
	Env                []kedaAuthEnv    `json:"env,omitempty"`
	FilePath           string           `json:"filePath,omitempty"`
}

type kedaPodIdentity struct {
	Provider              string  `json:"provider"`
	IdentityID            *string `json:"identityId,omitempty"`
	IdentityTenantID      *string `json:"identityTenantId,omitempty"`
	IdentityAuthorityHost *string `json:"identityAuthorityHost,omitempty"`
	RoleArn               *string `json:"roleArn,omitempty"`
	ExternalID            *string `json:"externalID,omitempty"`
	IdentityOwner         *string `json:"identityOwner,omitempty"`
}

type kedaTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

type kedaAuthEnv struct {
	Parameter     string `json:"parameter"`
	Name          string `json:"name"`
	ContainerName string `json:"containerName,omitempty"`
}

// The enumerations and bounds of KEDA's CRD validation (its kubebuilder
// markers), which the API server enforces.
var (
	kedaRolloutStrategies    = []string{"gradual", "immediate"}
	kedaPropagationPolicies  = []string{"foreground", "background"}
	kedaScalingStrategies    = []string{"default", "custom", "accurate", "eager"}
	kedaMultipleCalculations = []string{"min", "avg", "sum", "max"}
	kedaAuthRefKinds         = []string{"TriggerAuthentication", "ClusterTriggerAuthentication"}
	kedaPodIdentityProviders = []string{"none", "azure-workload", "gcp", "aws-eks", "aws"}
	kedaMetricTypes          = []string{"AverageValue", "Value", "Utilization"}
)

func (s kedaScaledJobSpec) validate() error {
	if s.JobTargetRef == nil {
		return fmt.Errorf("spec.jobTargetRef is required")
	}
	if len(s.Triggers) == 0 {
		return fmt.Errorf("spec.triggers needs at least one trigger")
	}
	if err := oneOf("spec.rolloutStrategy", s.RolloutStrategy, kedaRolloutStrategies); err != nil {
		return err
	}
	if err := oneOf("spec.rollout.strategy", s.Rollout.Strategy, kedaRolloutStrategies); err != nil {
		return err
	}
	if err := oneOf("spec.rollout.propagationPolicy", s.Rollout.PropagationPolicy, kedaPropagationPolicies); err != nil {
		return err
	}
	if err := oneOf("spec.scalingStrategy.strategy", s.ScalingStrategy.Strategy, kedaScalingStrategies); err != nil {
		return err
	}
	if err := oneOf("spec.scalingStrategy.multipleScalersCalculation", s.ScalingStrategy.MultipleScalersCalculation, kedaMultipleCalculations); err != nil {
		return err
	}
	for name, p := range map[string]*int32{"pollingInterval": s.PollingInterval, "maxReplicaCount": s.MaxReplicaCount} {
		if p != nil && *p < 1 {
			return fmt.Errorf("spec.%s must be at least 1", name)
		}
	}
	for name, p := range map[string]*int32{"minReplicaCount": s.MinReplicaCount, "successfulJobsHistoryLimit": s.SuccessfulJobsHistoryLimit, "failedJobsHistoryLimit": s.FailedJobsHistoryLimit} {
		if p != nil && *p < 0 {
			return fmt.Errorf("spec.%s must not be negative", name)
		}
	}
	names := map[string]bool{}
	for i, tr := range s.Triggers {
		if tr.Type == "" {
			return fmt.Errorf("spec.triggers[%d].type is required", i)
		}
		if tr.Name != "" && names[tr.Name] {
			return fmt.Errorf("spec.triggers[%d].name %q is used twice", i, tr.Name)
		}
		names[tr.Name] = true
		if err := oneOf(fmt.Sprintf("spec.triggers[%d].metricType", i), tr.MetricType, kedaMetricTypes); err != nil {
			return err
		}
		if tr.AuthenticationRef != nil {
			if err := oneOf(fmt.Sprintf("spec.triggers[%d].authenticationRef.kind", i), tr.AuthenticationRef.Kind, kedaAuthRefKinds); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s kedaTriggerAuthenticationSpec) validate() error {
	if s.PodIdentity != nil {
		return oneOf("spec.podIdentity.provider", s.PodIdentity.Provider, kedaPodIdentityProviders)
	}
	return nil
}

// oneOf accepts "" (the field is optional) or one of allowed.
func oneOf(field, v string, allowed []string) error {
	if v == "" || slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%s %q: want one of %v", field, v, allowed)
}

// azurePipelinesKeys are the trigger metadata keys KEDA's azure-pipelines
// scaler reads (pkg/scalers/azure_pipelines_scaler.go), with the oldest of
// two releases checked that reads each: v2.14.0, as still shipped by managed
// KEDA offerings, and v2.20.2 (typed config: a name in triggerMetadata
// order, or NAME+"FromEnv" in resolvedEnv order). Keys that only v2.20.2
// reads are ignored by older operators, silently.
var azurePipelinesKeys = map[string]string{
	"organizationURLFromEnv":               "v2.14.0",
	"personalAccessTokenFromEnv":           "v2.14.0",
	"poolName":                             "v2.14.0",
	"poolID":                               "v2.14.0",
	"parent":                               "v2.14.0",
	"demands":                              "v2.14.0",
	"requireAllDemands":                    "v2.14.0",
	"targetPipelinesQueueLength":           "v2.14.0",
	"activationTargetPipelinesQueueLength": "v2.14.0",
	"jobsToFetch":                          "v2.14.0",
	"organizationURL":                      "v2.20.2",
	"fetchUnfinishedJobsOnly":              "v2.20.2",
	"requireAllDemandsAndIgnoreOthers":     "v2.20.2",
	"caseInsensitiveDemandsProcessing":     "v2.20.2",
}

// azurePipelinesAuthParams are the parameters the scaler reads from a
// TriggerAuthentication or a Container Apps scale rule's auth (both
// releases): these map secrets to the scaler.
var azurePipelinesAuthParams = []string{"organizationURL", "personalAccessToken"}

// checkAzurePipelinesMetadata accepts metadata that every checked KEDA
// release reads in full and that names a pool.
func checkAzurePipelinesMetadata(md map[string]string) error {
	for k := range md {
		since, ok := azurePipelinesKeys[k]
		if !ok {
			return fmt.Errorf("metadata key %q is not read by KEDA's azure-pipelines scaler", k)
		}
		if since != "v2.14.0" {
			return fmt.Errorf("metadata key %q is read only since KEDA %s; older operators (managed add-ons, Container Apps) ignore it", k, since)
		}
	}
	if md["poolName"] == "" && md["poolID"] == "" {
		return fmt.Errorf("metadata names no pool: set poolName (or poolID)")
	}
	if md["jobsToFetch"] != "" && (md["parent"] != "" || md["fetchUnfinishedJobsOnly"] != "") {
		return fmt.Errorf("jobsToFetch excludes parent and fetchUnfinishedJobsOnly")
	}
	return nil
}

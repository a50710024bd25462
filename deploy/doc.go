// Package deploy holds the tests of goagent's deployment examples: the
// Dockerfile and .dockerignore at the repository root, the Azure Container
// Apps job (containerapps/: az CLI script and Bicep) and the AKS manifests
// (aks/: workload identity, KEDA ScaledJob and TriggerAuthentication,
// placeholder Job). It is a module of its own so that the Kubernetes,
// BuildKit and shell-parser dependencies stay out of the agent's go.mod.
//
// Run its tests with: cd deploy && go test ./...
package deploy

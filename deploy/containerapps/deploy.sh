#!/usr/bin/env bash
# goagent on Azure Container Apps, with the az CLI: an event-driven job that
# KEDA's azure-pipelines rule starts once per queued pipeline job. Each
# execution runs `goagent run --once` (the image's entrypoint) and signs in to
# Azure DevOps with the job's system-assigned managed identity: no PAT or
# secret reaches the agent.
#
#   ./deploy.sh              create the environment and the job, add the job's
#                            identity to the organization, print what to grant
#   ./deploy.sh placeholder  once the identity is Administrator on the pool:
#                            register the offline placeholder agent KEDA needs
#
# Settings (environment variables):
#   AZP_URL         organization URL, e.g. https://dev.azure.com/contoso (required)
#   AZP_POOL        agent pool name (required; create it first: Organization settings → Agent pools)
#   RESOURCE_GROUP  resource group, created if missing (required)
#   IMAGE           the goagent image built from the repository's Dockerfile (required)
#   AZP_SCALER_PAT  a PAT with the Agent Pools (Read) scope, for the KEDA scale rule only
#                   (required: Container Apps scale rules for azure-pipelines take a PAT)
#   LOCATION        Azure region (default westeurope)
#   ENVIRONMENT     Container Apps environment, created if missing (default goagent-env)
#   JOB_NAME        job name (default goagent)
#   REGISTRY        registry server to pull IMAGE from with the job's identity, e.g.
#                   myregistry.azurecr.io (default: none, a public image)
#   MAX_EXECUTIONS  most agents running at once (default 10)
#   ADO_ACCESS_LEVEL  access level when adding the identity to the organization:
#                   stakeholder (default) or express (Basic); "none" skips adding it
#
# See deploy/README.md for the whole walk-through.
set -euo pipefail

: "${AZP_URL:?set AZP_URL to the organization URL, e.g. https://dev.azure.com/contoso}"
: "${AZP_POOL:?set AZP_POOL to the agent pool name}"
: "${RESOURCE_GROUP:?set RESOURCE_GROUP to the resource group to deploy into}"
: "${IMAGE:?set IMAGE to the goagent image, e.g. myregistry.azurecr.io/goagent:1.0}"
LOCATION=${LOCATION:-westeurope}
ENVIRONMENT=${ENVIRONMENT:-goagent-env}
JOB_NAME=${JOB_NAME:-goagent}
REGISTRY=${REGISTRY:-}
MAX_EXECUTIONS=${MAX_EXECUTIONS:-10}
ADO_ACCESS_LEVEL=${ADO_ACCESS_LEVEL:-stakeholder}
AZP_URL=${AZP_URL%/}

# Azure DevOps' resource id: tokens for it are what goagent sends.
ADO_RESOURCE=499b84ac-1321-427f-aa17-267ca6975798

deploy() {
  : "${AZP_SCALER_PAT:?set AZP_SCALER_PAT to a PAT with Agent Pools (Read); only the KEDA scale rule uses it}"
  local registry_args=()
  if [[ -n $REGISTRY ]]; then
    registry_args=(--registry-server "$REGISTRY" --registry-identity system)
  fi

  echo "==> resource group $RESOURCE_GROUP and environment $ENVIRONMENT"
  az group create --name "$RESOURCE_GROUP" --location "$LOCATION" --output none
  if ! az containerapp env show --name "$ENVIRONMENT" --resource-group "$RESOURCE_GROUP" --output none 2>/dev/null; then
    az containerapp env create --name "$ENVIRONMENT" --resource-group "$RESOURCE_GROUP" --location "$LOCATION" --output none
  fi

  # The scale rule reads the pool's queue with the PAT (and the organization
  # URL, passed the same way); the agents get neither: they authenticate with
  # the managed identity (AZP_AUTH=managed-identity). AZP_IDLE_TIMEOUT ends an
  # execution whose job another agent took first.
  echo "==> event-driven job $JOB_NAME"
  az containerapp job create \
    --name "$JOB_NAME" --resource-group "$RESOURCE_GROUP" --environment "$ENVIRONMENT" \
    --mi-system-assigned \
    --trigger-type Event \
    --replica-timeout 7200 --replica-retry-limit 0 --replica-completion-count 1 --parallelism 1 \
    --min-executions 0 --max-executions "$MAX_EXECUTIONS" --polling-interval 30 \
    --image "$IMAGE" "${registry_args[@]}" \
    --cpu 2.0 --memory 4Gi \
    --secrets "azp-scaler-pat=$AZP_SCALER_PAT" "azp-url=$AZP_URL" \
    --scale-rule-name azure-pipelines --scale-rule-type azure-pipelines \
    --scale-rule-metadata "poolName=$AZP_POOL" "targetPipelinesQueueLength=1" \
    --scale-rule-auth "personalAccessToken=azp-scaler-pat" "organizationURL=azp-url" \
    --env-vars "AZP_URL=$AZP_URL" "AZP_POOL=$AZP_POOL" "AZP_AUTH=managed-identity" "AZP_IDLE_TIMEOUT=10m" \
    --output none

  local principal
  principal=$(az containerapp job show --name "$JOB_NAME" --resource-group "$RESOURCE_GROUP" --query identity.principalId --output tsv)
  echo "==> the job's managed identity: object (principal) id $principal"

  local org
  case $AZP_URL in
    https://dev.azure.com/*) org=${AZP_URL#https://dev.azure.com/}; org=${org%%/*} ;;
    https://*.visualstudio.com*) org=${AZP_URL#https://}; org=${org%%.*} ;;
    *) org= ;;
  esac
  if [[ $ADO_ACCESS_LEVEL != none && -n $org ]]; then
    # Service principal entitlements: adds the identity to the organization
    # (you must be an organization administrator). Idempotent on the service.
    echo "==> adding the identity to the organization $org ($ADO_ACCESS_LEVEL)"
    az rest --method post --resource "$ADO_RESOURCE" \
      --uri "https://vsaex.dev.azure.com/$org/_apis/serviceprincipalentitlements?api-version=7.1-preview.1" \
      --body "{\"accessLevel\":{\"accountLicenseType\":\"$ADO_ACCESS_LEVEL\"},\"servicePrincipal\":{\"origin\":\"aad\",\"originId\":\"$principal\",\"subjectKind\":\"servicePrincipal\"}}" \
      --output none
  fi

  cat <<EOF

Next, in Azure DevOps ($AZP_URL):
  1. Organization settings → Users: the identity "$JOB_NAME" (object id $principal)
     must be listed; add it if the step above was skipped.
  2. Organization settings → Agent pools → $AZP_POOL → Security: add "$JOB_NAME"
     with the Administrator role (organization level, not a project's pool).
  3. Register the placeholder agent: $0 placeholder
EOF
}

# The placeholder is one execution of the same job with AZP_PLACEHOLDER=1:
# it uses the identity granted above, registers an offline agent and exits.
# The template override replaces the container's environment, so it repeats
# every variable.
placeholder() {
  echo "==> placeholder agent $JOB_NAME-placeholder in pool $AZP_POOL"
  az containerapp job start --name "$JOB_NAME" --resource-group "$RESOURCE_GROUP" \
    --image "$IMAGE" --container-name "$JOB_NAME" \
    --env-vars "AZP_URL=$AZP_URL" "AZP_POOL=$AZP_POOL" "AZP_AUTH=managed-identity" "AZP_PLACEHOLDER=1" "AZP_AGENT_NAME=$JOB_NAME-placeholder" \
    --output none
  echo "started; check it with: az containerapp job execution list --name $JOB_NAME --resource-group $RESOURCE_GROUP --output table"
}

case ${1:-deploy} in
  deploy) deploy ;;
  placeholder) placeholder ;;
  *) echo "usage: $0 [deploy|placeholder]" >&2; exit 2 ;;
esac

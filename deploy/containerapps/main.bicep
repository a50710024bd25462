// goagent on Azure Container Apps: an event-driven job that KEDA's
// azure-pipelines rule starts once per queued pipeline job. Each execution
// runs `goagent run --once` (the image's entrypoint) and signs in to Azure
// DevOps with the job's system-assigned managed identity: no PAT or secret
// reaches the agent.
//
//   az deployment group create --resource-group RG --template-file main.bicep \
//     --parameters organizationUrl=https://dev.azure.com/contoso poolName=aca-linux \
//                  image=myregistry.azurecr.io/goagent:1.0 scalerPat=<PAT>
//
// Then grant the output principalId in Azure DevOps and run the output
// placeholderCommand once (deploy/README.md).

@description('Azure DevOps organization URL, e.g. https://dev.azure.com/contoso')
param organizationUrl string

@description('Agent pool the agents join and KEDA watches (organization level)')
param poolName string

@description('The goagent image, built from the repository Dockerfile')
param image string

@secure()
@description('PAT with the Agent Pools (Read) scope, used only by the KEDA scale rule to read the pool queue')
param scalerPat string

param location string = resourceGroup().location
param environmentName string = 'goagent-env'
param jobName string = 'goagent'

@description('Name of an Azure Container Registry in this resource group to pull the image from with the job identity; empty for a public image')
param acrName string = ''

@description('Most agents running at once')
param maxExecutions int = 10

@description('Longest an execution (one pipeline job) may run, in seconds')
param replicaTimeout int = 7200

@description('How long an execution waits for a job before it leaves (another agent may have taken it)')
param idleTimeout string = '10m'

resource containerAppsEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  properties: {}
}

resource job 'Microsoft.App/jobs@2024-03-01' = {
  name: jobName
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    environmentId: containerAppsEnv.id
    configuration: {
      triggerType: 'Event'
      replicaTimeout: replicaTimeout
      replicaRetryLimit: 0
      // Only the scale rule reads these.
      secrets: [
        {
          name: 'azp-scaler-pat'
          value: scalerPat
        }
        {
          name: 'azp-url'
          value: organizationUrl
        }
      ]
      registries: empty(acrName) ? [] : [
        {
          server: '${acrName}.azurecr.io'
          identity: 'system'
        }
      ]
      eventTriggerConfig: {
        parallelism: 1
        replicaCompletionCount: 1
        scale: {
          minExecutions: 0
          maxExecutions: maxExecutions
          pollingInterval: 30
          rules: [
            {
              name: 'azure-pipelines'
              type: 'azure-pipelines'
              metadata: {
                poolName: poolName
                targetPipelinesQueueLength: '1'
              }
              auth: [
                {
                  secretRef: 'azp-scaler-pat'
                  triggerParameter: 'personalAccessToken'
                }
                {
                  secretRef: 'azp-url'
                  triggerParameter: 'organizationURL'
                }
              ]
            }
          ]
        }
      }
    }
    template: {
      containers: [
        {
          name: jobName
          image: image
          resources: {
            cpu: json('2.0')
            memory: '4Gi'
          }
          env: [
            {
              name: 'AZP_URL'
              value: organizationUrl
            }
            {
              name: 'AZP_POOL'
              value: poolName
            }
            {
              name: 'AZP_AUTH'
              value: 'managed-identity'
            }
            {
              name: 'AZP_IDLE_TIMEOUT'
              value: idleTimeout
            }
          ]
        }
      ]
    }
  }
}

// AcrPull for the job's identity when the image is in an ACR of this group.
resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (!empty(acrName)) {
  name: acrName
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(acrName)) {
  scope: registry
  name: guid(registry.id, job.id, 'acrpull')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f951dda-4ed3-4680-a7ca-43fe172d538d')
    principalId: job.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

@description('Object id of the job identity: add it to the organization and make it Administrator of the pool')
output principalId string = job.identity.principalId

@description('Run once after granting the identity: registers the offline placeholder agent KEDA needs to scale from zero')
output placeholderCommand string = 'az containerapp job start --name ${jobName} --resource-group ${resourceGroup().name} --image ${image} --container-name ${jobName} --env-vars AZP_URL=${organizationUrl} AZP_POOL=${poolName} AZP_AUTH=managed-identity AZP_PLACEHOLDER=1 AZP_AGENT_NAME=${jobName}-placeholder'

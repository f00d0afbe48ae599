// Role assignments for the function app's user-assigned identity (and, optionally, the operator).
// Names are guid(scope, principal, role) so re-deploying is idempotent; principalType 'ServicePrincipal'
// avoids failures while a new identity replicates through Entra ID.

@description('Principal (object) id of the function app\'s user-assigned identity.')
param principalId string

@description('Name of the function app\'s storage account.')
param storageAccountName string

@description('Name of the Key Vault holding the Meta secrets.')
param keyVaultName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Name of the Communication Service the app sends email through.')
param communicationServiceName string

@description('Object id of the operator (user, group or service principal) who sets and rotates the secrets; gets Key Vault Secrets Officer on the vault. Empty: no assignment.')
param adminPrincipalId string = ''

@description('Kind of the operator principal, as role assignments name it.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param adminPrincipalType string = 'User'

// Built-in role definition ids (identical in every tenant).
var roles = {
  // Host storage: blob leases/locks, timer status, function keys (azure-webjobs-secrets), deployment package.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Queue triggers update and delete messages and write the -poison queues; the app enqueues.
  // Reader + Message Processor is NOT enough for a queue trigger.
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Host diagnostic events; the app's agentstate, ratelimits and webhookcounters tables.
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Key Vault references and the app's own reads through KEY_VAULT_URL.
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  // The operator writes and rotates secrets.
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  // Entra-authenticated telemetry ingestion (App Insights with DisableLocalAuth).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // "Communication and Email Service Owner": sending ACS Email with an Entra token. UNCONFIRMED: this id is the
  // one public templates use; the Microsoft built-in roles page was not available to confirm it. ACS has no
  // narrower send-only built-in role; if this id is wrong the deployment fails with RoleDefinitionDoesNotExist
  // (then assign Contributor on the Communication Service instead).
  communicationAndEmailServiceOwner: '09976791-48a7-449e-bb21-39d1a415f350'
}

var storageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource storageRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRoles: {
    name: guid(storage.id, principalId, roleId)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource emailSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, principalId, roles.communicationAndEmailServiceOwner)
  scope: communicationService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationAndEmailServiceOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(adminPrincipalId)) {
  name: guid(vault.id, adminPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: adminPrincipalId
    principalType: adminPrincipalType
  }
}

// Lead Monitoring Agent: everything the function app needs in one resource group.
//
//   azd up                                   (azure.yaml; parameters from infra/main.parameters.json)
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=... adminPrincipalId=... ...
//
// Function app (Flex Consumption, Python 3.12) running as a user-assigned identity that reaches storage,
// Key Vault, Azure SQL (Entra-only), ACS Email and App Insights without a single key or password.
// After the first provisioning the identity must become a user of the database: azd runs
// infra/scripts/grant-sql-identity.sh (postprovision hook); otherwise run it yourself as the Entra admin.

targetScope = 'resourceGroup'

@description('Name of the environment (e.g. prod); part of the resource-name token and the azd-env-name tag.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region of the resources; must offer Flex Consumption (e.g. eastus, westeurope, swedencentral).')
param location string = resourceGroup().location

@description('Extra tags for every resource.')
param extraTags object = {}

// --- Administrator (Azure SQL Entra admin; Key Vault Secrets Officer to set the Meta secrets) ---

@description('Object id of the Entra principal that administers Azure SQL and may write Key Vault secrets (azd: the signed-in user, AZURE_PRINCIPAL_ID).')
param adminPrincipalId string

@description('Display name of that principal as Azure SQL shows it (a UPN, group or app name; only the object id is checked).')
param adminPrincipalLogin string = 'lead-agent-admin'

@description('Kind of that principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
  'Application'
])
param adminPrincipalType string = 'User'

// --- Meta ---

@description('Meta app id (numbers).')
param facebookAppId string = ''

@description('Comma-separated Facebook page ids whose leads are collected.')
param facebookPageIds string = ''

@description('Pinned Graph API version (bump at least every six months).')
param facebookGraphVersion string = 'v26.0'

@description('Meta app secret; written to Key Vault (facebook-app-secret) only when non-empty.')
@secure()
param facebookAppSecret string = ''

@description('Previous Meta app secret during a rotation; written to Key Vault (facebook-app-secret-previous) only when non-empty.')
@secure()
param facebookAppSecretPrevious string = ''

@description('Webhook verify token; written to Key Vault (facebook-verify-token) only when non-empty.')
@secure()
param facebookVerifyToken string = ''

@description('Long-lived Page or system-user access token; written to Key Vault (facebook-access-token) only when non-empty.')
@secure()
param facebookAccessToken string = ''

// --- Schedules and notifications ---

@description('NCRONTAB (six fields, UTC) of the poller.')
param pollSchedule string = '0 */5 * * * *'

@description('NCRONTAB (six fields, UTC) of the daily digest.')
param digestSchedule string = '0 0 7 * * *'

@description('Comma-separated recipients of the instant lead emails; empty disables email (EMAIL_SENDER=none).')
param emailTo string = ''

@description('Comma-separated digest recipients; empty means EMAIL_TO.')
param digestTo string = ''

@description('Comma-separated ops addresses: the app\'s incident emails (ALERT_EMAIL_TO) and the Azure Monitor alerts. Empty: neither.')
param alertEmailTo string = ''

@description('IANA time zone of lead times in emails.')
param notifyTimezone string = 'UTC'

@description('ACS data location; the email service and the communication service share it.')
param acsDataLocation string = 'United States'

// --- Scale ---

@description('Largest number of function app instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready instances for the HTTP group (keeps the webhook warm; billed). 0 turns it off.')
@minValue(0)
@maxValue(10)
param alwaysReadyHttpInstances int = 1

// --- Azure SQL ---

@description('Name of the database.')
param sqlDatabaseName string = 'leads'

@description('Maximum vCores of the serverless database.')
@allowed([
  1
  2
  4
  6
  8
])
param sqlMaxVCores int = 1

@description('Minimum vCores of the serverless database while online (decimal string, e.g. 0.5).')
param sqlMinCapacity string = '0.5'

@description('Minutes of inactivity before the database pauses (-1: never; otherwise at least 15).')
@minValue(-1)
@maxValue(10080)
param sqlAutoPauseDelayMinutes int = 60

// --- Monitoring ---

@description('Failed invocations in 15 minutes that raise the function-failures alert.')
@minValue(1)
param functionFailureThreshold int = 5

@description('Hours without a stored lead that raise the no-leads alert (1-6, 24 or 48).')
@allowed([
  1
  2
  3
  4
  5
  6
  24
  48
])
param noLeadsAlertHours int = 24

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = union(extraTags, {
  'azd-env-name': environmentName
  application: 'lead-monitoring-agent'
})
var sqlAdminType = adminPrincipalType == 'ServicePrincipal' ? 'Application' : adminPrincipalType
var rbacAdminType = adminPrincipalType == 'Application' ? 'ServicePrincipal' : adminPrincipalType
var deploymentContainerName = 'app-package'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    retentionInDays: logRetentionDays
    disableLocalAuth: true
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    facebookAppSecret: facebookAppSecret
    facebookAppSecretPrevious: facebookAppSecretPrevious
    facebookVerifyToken: facebookVerifyToken
    facebookAccessToken: facebookAccessToken
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  params: {
    serverName: 'sql-${resourceToken}'
    databaseName: sqlDatabaseName
    location: location
    tags: tags
    adminObjectId: adminPrincipalId
    adminLogin: adminPrincipalLogin
    adminPrincipalType: sqlAdminType
    maxVCores: sqlMaxVCores
    minCapacity: sqlMinCapacity
    autoPauseDelayMinutes: sqlAutoPauseDelayMinutes
  }
}

module communication 'modules/communication.bicep' = {
  name: 'communication'
  params: {
    emailServiceName: 'ecs-${resourceToken}'
    communicationServiceName: 'acs-${resourceToken}'
    dataLocation: acsDataLocation
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    communicationServiceName: communication.outputs.communicationServiceName
    adminPrincipalId: adminPrincipalId
    adminPrincipalType: rbacAdminType
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultUri: keyVault.outputs.uri
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    acsEndpoint: communication.outputs.endpoint
    emailFrom: communication.outputs.senderAddress
    emailTo: emailTo
    digestTo: digestTo
    alertEmailTo: alertEmailTo
    facebookAppId: facebookAppId
    facebookPageIds: facebookPageIds
    facebookGraphVersion: facebookGraphVersion
    pollSchedule: pollSchedule
    digestSchedule: digestSchedule
    notifyTimezone: notifyTimezone
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
  // The host starts with identity-based storage and resolves Key Vault references at once: grant the roles first.
  dependsOn: [
    rbac
  ]
}

module alerts 'modules/alerts.bicep' = if (!empty(alertEmailTo)) {
  name: 'alerts'
  params: {
    location: location
    tags: tags
    actionGroupName: 'ag-${resourceToken}'
    alertEmails: alertEmailTo
    appInsightsId: monitoring.outputs.appInsightsId
    namePrefix: 'alert-${resourceToken}'
    functionFailureThreshold: functionFailureThreshold
    noLeadsHours: noLeadsAlertHours
  }
}

// Outputs: azd stores them in the environment (.azure/<env>/.env); the postprovision hook and the pipeline read them.
@description('Resource group of the deployment.')
output AZURE_RESOURCE_GROUP string = resourceGroup().name

@description('Region of the deployment.')
output AZURE_LOCATION string = location

@description('Tenant of the deployment.')
output AZURE_TENANT_ID string = subscription().tenantId

@description('Name of the function app.')
output FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Base URL of the function app; Meta\'s callback URL is <url>/api/webhook/facebook/leads.')
output FUNCTION_APP_URL string = functionApp.outputs.url

@description('Name of the Key Vault (set the Meta secrets here).')
output KEY_VAULT_NAME string = keyVault.outputs.name

@description('URI of the Key Vault.')
output KEY_VAULT_URL string = keyVault.outputs.uri

@description('Name of the Azure SQL logical server.')
output SQL_SERVER_NAME string = sql.outputs.serverName

@description('Fully qualified domain name of the Azure SQL server.')
output SQL_SERVER_FQDN string = sql.outputs.serverFqdn

@description('Name of the Azure SQL database.')
output SQL_DATABASE_NAME string = sql.outputs.databaseName

@description('Name of the function app\'s managed identity (its database user name).')
output IDENTITY_NAME string = identity.outputs.name

@description('Client id of the function app\'s managed identity.')
output IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Principal (object) id of the function app\'s managed identity.')
output IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Sender address of the ACS Azure-managed domain.')
output EMAIL_SENDER_ADDRESS string = communication.outputs.senderAddress

@description('ACS endpoint the app sends through.')
output ACS_ENDPOINT string = communication.outputs.endpoint

@description('Name of the storage account.')
output STORAGE_ACCOUNT_NAME string = storage.outputs.name

// Lead Monitoring Agent: everything the function app needs in one resource group.
//
//   azd up                                   (azure.yaml; parameters from infra/main.parameters.json)
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=... location=... adminPrincipalId=... ...
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

// Regions that offer Flex Consumption, as listed by Azure-Samples/functions-quickstart-python-http-azd
// (infra/main.bicep, without the canary region eastus2euap). The list grows: check the current one with
// `az functionapp list-flexconsumption-locations --query "sort_by(@, &name)[].name" -o tsv` and add a region here.
@description('Azure region of the resources; must offer Flex Consumption (azd asks for it: AZURE_LOCATION).')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

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

@description('Comma-separated HTTPS endpoints (your CRM, Make, n8n …) that get each lead as a signed Standard Webhooks POST. Put the whsec_ secret in Key Vault as lead-webhook-secret.')
param leadWebhookUrls string = ''

@description('Post to Slack: true once the incoming-webhook URL is in Key Vault as slack-webhook-url.')
param slackWebhook bool = false

@description('Post to Teams (a Workflows webhook): true once its URL is in Key Vault as teams-webhook-url.')
param teamsWebhook bool = false

@description('What goes to Slack and Teams: leads, alerts or both.')
@allowed([
  'leads'
  'alerts'
  'both'
])
param chatEvents string = 'both'

@description('Meta dataset (CRM pixel) id for Conversions API stage events; empty: stages are only recorded.')
param metaDatasetId string = ''

@description('ACS data location; the email service and the communication service share it.')
param acsDataLocation string = 'United States'

// --- Scale ---

@description('Largest number of function app instances (Flex Consumption accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready instances for the HTTP group (keeps the webhook warm; billed around the clock, about 21 USD a month for one 2048 MB instance, docs/cost.md). 0 turns it off.')
@minValue(0)
@maxValue(10)
param alwaysReadyHttpInstances int = 1

@description('Concurrent HTTP requests one instance takes before Flex adds another; the Python worker gets at least as many threads (functionapp.bicep).')
@minValue(1)
@maxValue(100)
param httpPerInstanceConcurrency int = 16

// --- Azure SQL ---

@description('Name of the database.')
param sqlDatabaseName string = 'leads'

// The app's timers query the database every minute (flush_outbox) and every five minutes (poll_leads,
// sweep_dead_letters), so a serverless database never reaches its auto-pause delay and bills its minimum vCores
// around the clock. A DTU tier costs a fixed, much smaller amount for this load; docs/cost.md has the figures.
@description('Azure SQL compute: Basic (5 DTU, 2 GB), S0 (10 DTU, 250 GB), S1 (20 DTU), S2 (50 DTU) bill a fixed hourly price; GP_S_Gen5 is General Purpose serverless (per second, pauses only after sqlAutoPauseDelayMinutes without any query).')
@allowed([
  'Basic'
  'S0'
  'S1'
  'S2'
  'GP_S_Gen5'
])
param sqlSkuName string = 'S0'

@description('Serverless only (GP_S_Gen5): maximum vCores.')
@allowed([
  1
  2
  4
  6
  8
])
param sqlMaxVCores int = 1

@description('Serverless only (GP_S_Gen5): minimum vCores while online (decimal string, e.g. 0.5).')
param sqlMinCapacity string = '0.5'

@description('Serverless only (GP_S_Gen5): minutes without activity before the database pauses (-1: never; otherwise at least 15).')
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

@description('Daily ingestion cap of the Log Analytics workspace in GB; -1 is no cap. A cap bounds a runaway log bill, but ingestion stops for the rest of the day once it is reached (and the alerts go blind).')
param logDailyCapGb int = -1

// --- Key Vault ---

@description('Recover a soft-deleted vault of the same name instead of creating one (after `azd down` of this environment: purge protection keeps the name reserved, see keyvault.bicep). Set it for one `azd up`, then back to false.')
param keyVaultRecover bool = false

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = union(extraTags, {
  'azd-env-name': environmentName
  application: 'lead-monitoring-agent'
})
// The same principal kind spelled for each API. Every branch is a literal, so the type of each variable is a
// union of literals the target module's @allowed list accepts (a branch that passes the parameter through would
// carry its whole union, 'ServicePrincipal' included, into sql.bicep: error BCP036, Azure/bicep#11889).
var sqlAdminType = adminPrincipalType == 'User' ? 'User' : adminPrincipalType == 'Group' ? 'Group' : 'Application'
var rbacAdminType = adminPrincipalType == 'User' ? 'User' : adminPrincipalType == 'Group' ? 'Group' : 'ServicePrincipal'
var deploymentContainerName = 'app-package'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-${resourceToken}'
    appInsightsName: 'appi-${resourceToken}'
    retentionInDays: logRetentionDays
    dailyQuotaGb: logDailyCapGb
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
    recover: keyVaultRecover
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
    skuName: sqlSkuName
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
    // Only a serverless database can pause; the timers then leave it alone while no lead moves.
    idleAfterMinutes: sqlSkuName == 'GP_S_Gen5' && sqlAutoPauseDelayMinutes > 0 ? 15 : 0
    idleSqlEveryMinutes: max(180, sqlAutoPauseDelayMinutes * 3)
    notifyTimezone: notifyTimezone
    leadWebhookUrls: leadWebhookUrls
    slackWebhook: slackWebhook
    teamsWebhook: teamsWebhook
    chatEvents: chatEvents
    metaDatasetId: metaDatasetId
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
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

// The operators' workbook on the Application Insights component; its panels are the queries of docs/queries.kql
// marked `// workbook:` (modules/workbook.bicep says how).
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
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

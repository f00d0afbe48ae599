// The function app on Flex Consumption (FC1, Linux): plan, site, functionAppConfig and app settings.
//
// Flex Consumption takes the runtime, its version, scaling and the deployment location from functionAppConfig.
// Never set FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// WEBSITE_CONTENTAZUREFILECONNECTIONSTRING, WEBSITE_CONTENTSHARE, SCM_DO_BUILD_DURING_DEPLOYMENT,
// ENABLE_ORYX_BUILD, siteConfig.linuxFxVersion or siteConfig.alwaysOn here: Flex rejects them.
// Timers run in UTC on Flex (WEBSITE_TIME_ZONE is not supported).
//
// siteConfig.appSettings is the whole collection: a setting missing from the list below is removed by the
// next deployment. Put a setting you want to keep in this list (or in a parameter), not only in the portal.
//
// Settings the code reads that are NOT set here, because their defaults (shared/settings.py, README
// "Settings") are right for this deployment or because they belong to another setup:
//   AzureWebJobsStorage                 replaced by the identity-based AzureWebJobsStorage__* settings below
//   FACEBOOK_APP_SECRET_PREVIOUS        only during an app-secret rotation: put it in Key Vault as
//                                       facebook-app-secret-previous (read through KEY_VAULT_URL)
//   GRAPH_TIMEOUT_SECONDS (10)          QUEUE_TIMEOUT_SECONDS (5)       STORE_TIMEOUT_SECONDS (15)
//   SQLITE_PATH                         local SQLite store only
//   SQL_CONNECTION_STRING               local / CI SQL Server; Azure uses SQL_SERVER + SQL_DATABASE + the identity
//   SQL_POOL_SIZE (5)
//   WEBHOOK_MAX_BODY_BYTES (1048576)    INGEST_MAX_ATTEMPTS (40)        RETRY_BASE_SECONDS (5)
//   RETRY_MAX_SECONDS (3600)            PAUSED_RETRY_SECONDS (300)      TOKEN_RECHECK_SECONDS (60)
//   POLL_OVERLAP_SECONDS (300)          POLL_GRACE_SECONDS (120)        RECONCILE_WINDOW_HOURS (24)
//   RECONCILE_EVERY_MINUTES (60)        RECONCILE_HTTP_BUDGET_SECONDS (150)
//   POLL_REQUEUE_AFTER_SECONDS (1800)
//   FAILED_EVENTS_RETENTION_DAYS (30)   SECRETS_CACHE_SECONDS (300)
//   RATE_LIMIT_PER_MINUTE (100)         HEALTH_CACHE_SECONDS (60)
//   EMAIL_ROUTES (empty)                per-form / per-page recipients; EMAIL_TO is used otherwise
//   SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD, SMTP_STARTTLS
//                                       EMAIL_SENDER=smtp only; this deployment sends through ACS
//   ACS_CONNECTION_STRING               ACS with a key; this deployment uses ACS_ENDPOINT + the managed identity
//   EMAIL_TIMEOUT_SECONDS (15)          EMAIL_MAX_LEADS_PER_EMAIL (50)
//   NOTIFY_MAX_ATTEMPTS (4)             NOTIFY_RETRY_BASE_SECONDS (30)  NOTIFY_RETRY_MAX_SECONDS (900)
//   ALERT_DEAD_LETTERS_THRESHOLD (10)   SILENCE_HOURS (6)               SILENCE_MIN_EXPECTED (3)
// tests/unit/test_infra_consistency.py keeps this list and shared/settings.py in step.

@description('Name of the function app (globally unique: <name>.azurewebsites.net).')
param name string

@description('Name of the Flex Consumption plan (one app per plan).')
param planName string

@description('Azure region of the plan and the app (a region that offers Flex Consumption).')
param location string

@description('Tags applied to the plan and the app.')
param tags object

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the storage account: host storage, queues, tables and the deployment container.')
param storageAccountName string

@description('Blob container the deployment package is uploaded to.')
param deploymentContainerName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Key Vault URI with its trailing slash (the vault\'s properties.vaultUri).')
param keyVaultUri string

@description('Fully qualified domain name of the Azure SQL server.')
param sqlServerFqdn string

@description('Name of the Azure SQL database.')
param sqlDatabaseName string

@description('ACS endpoint, https://<host name of the Communication Service>/.')
param acsEndpoint string

@description('Sender address of the ACS domain (DoNotReply@<guid>.azurecomm.net for an Azure-managed domain).')
param emailFrom string

@description('Comma-separated sales recipients of the instant lead emails. Empty: EMAIL_SENDER is set to none (no email at all).')
param emailTo string = ''

@description('Comma-separated recipients of the daily digest (BCC); empty means EMAIL_TO.')
param digestTo string = ''

@description('Comma-separated ops recipients of the agent\'s own incident alerts; empty means no alert emails.')
param alertEmailTo string = ''

@description('Meta app id (numbers); used for the app token of debug_token.')
param facebookAppId string = ''

@description('Comma-separated Facebook page ids whose leads are collected.')
param facebookPageIds string = ''

@description('Pinned Graph API version, e.g. v26.0. Bump it at least every six months.')
param facebookGraphVersion string = 'v26.0'

@description('NCRONTAB (six fields, UTC) of the poller; the timer binding reads it as %POLL_SCHEDULE%.')
param pollSchedule string = '0 */5 * * * *'

@description('NCRONTAB (six fields, UTC) of the daily digest; the timer binding reads it as %DIGEST_SCHEDULE%.')
param digestSchedule string = '0 0 7 * * *'

@description('Idle mode (IDLE_AFTER_MINUTES): minutes without a handled lead or notification after which the timers stop querying SQL on every run; 0 turns it off. main.bicep sets it with the serverless SQL tier.')
@minValue(0)
param idleAfterMinutes int = 0

@description('While idle, how often each timer still runs its database part (IDLE_SQL_EVERY_MINUTES); keep it well above the SQL auto-pause delay.')
@minValue(15)
param idleSqlEveryMinutes int = 180

@description('Comma-separated HTTPS endpoints that get each lead as a signed Standard Webhooks POST (LEAD_WEBHOOK_URLS).')
param leadWebhookUrls string = ''

@description('Slack incoming webhook configured: its URL is the Key Vault secret slack-webhook-url.')
param slackWebhook bool = false

@description('Teams Workflows webhook configured: its URL is the Key Vault secret teams-webhook-url.')
param teamsWebhook bool = false

@description('What goes to Slack and Teams: leads, alerts or both.')
param chatEvents string = 'both'

@description('Meta dataset (CRM pixel) id for Conversions API stage events (META_DATASET_ID).')
param metaDatasetId string = ''

@description('IANA time zone lead times are shown in, in emails (e.g. Europe/Berlin).')
param notifyTimezone string = 'UTC'

@description('Largest number of instances the app scales out to (Flex Consumption accepts 40 to 1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Always-ready instances of the "http" group: keeps the webhook warm so Meta does not meet a cold start (billed baseline). 0 turns it off.')
@minValue(0)
@maxValue(10)
param alwaysReadyHttpInstances int = 1

@description('Concurrent HTTP requests one instance takes before Flex adds another. The handlers are short and I/O-bound (verify, enqueue, answer); each sync handler holds one worker thread, and the worker gets at least this many (PYTHON_THREADPOOL_THREAD_COUNT below).')
@minValue(1)
@maxValue(100)
param httpPerInstanceConcurrency int = 16

var storageSuffix = environment().suffixes.storage
var blobServiceUri = 'https://${storageAccountName}.blob.${storageSuffix}'
var queueServiceUri = 'https://${storageAccountName}.queue.${storageSuffix}'
var tableServiceUri = 'https://${storageAccountName}.table.${storageSuffix}'

// Concurrency that matches the worker. Every function here is synchronous (def, not async def), and the Python
// worker runs sync invocations on one thread pool per instance. Flex hands an HTTP instance up to
// httpPerInstanceConcurrency requests at once, and a queue-trigger instance up to batchSize + newBatchThreshold
// messages (host.json extensions.queues: 16 + 8 = 24). Requests beyond the pool's threads wait inside the instance
// instead of making Flex add one, so the pool must be at least as large as either number. Its default is the
// ThreadPoolExecutor default, min(32, os.cpu_count() + 4): 5 if the worker sees one core (CPU is allotted in
// proportion to instance memory), more if os.cpu_count() reports the host's cores, so it is set explicitly. The worker reads
// PYTHON_THREADPOOL_THREAD_COUNT from its environment, and Flex passes app settings as environment variables
// (UNCONFIRMED here: the current Flex deprecation list could not be read). The worker logs the value it got in
// its "Received WorkerInitRequest ... App Settings state: PYTHON_THREADPOOL_THREAD_COUNT: 24" trace; check it
// after the first deploy (Linux Consumption once ignored it during specialization, azure-functions-python-worker
// PR #774). The work is I/O-bound (Meta's Graph API, Storage, Azure SQL), so
// 24 threads on one vCPU mostly wait; CPU-heavy work would want fewer. tests/unit/test_bicep_checks.py keeps
// queueConcurrencyPerInstance equal to host.json.
var queueConcurrencyPerInstance = 24
var workerThreads = max(httpPerInstanceConcurrency, queueConcurrencyPerInstance)

// Always-ready instances for the HTTP trigger group (the webhook); none when the parameter is 0.
var alwaysReady = alwaysReadyHttpInstances > 0 ? [
  {
    name: 'http'
    instanceCount: alwaysReadyHttpInstances
  }
] : []

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var appSettings = [
  // Host storage through the user-assigned identity (the account has allowSharedKeyAccess: false). The app's own
  // queue and table clients read the same settings (shared/storage/connection.py).
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'AzureWebJobsStorage__blobServiceUri'
    value: blobServiceUri
  }
  {
    name: 'AzureWebJobsStorage__queueServiceUri'
    value: queueServiceUri
  }
  {
    name: 'AzureWebJobsStorage__tableServiceUri'
    value: tableServiceUri
  }
  // Telemetry with an Entra token (local auth is disabled on the component).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${identityClientId};Authorization=AAD'
  }
  // OpenTelemetry from the Python worker (shared/telemetry.py; host.json runs the host in OpenTelemetry mode).
  {
    name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
    value: 'true'
  }
  // Threads of the Python worker's pool for sync invocations (see workerThreads above).
  {
    name: 'PYTHON_THREADPOOL_THREAD_COUNT'
    value: string(workerThreads)
  }
  // DefaultAzureCredential (Key Vault, Azure SQL, ACS) picks the user-assigned identity from this.
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  // Secrets: read from the vault directly (short cache, rotation without redeploy); the Key Vault references
  // below are the fallback and resolve with keyVaultReferenceIdentity. An unresolvable reference leaves the
  // literal "@Microsoft.KeyVault(...)" text in the setting.
  {
    name: 'KEY_VAULT_URL'
    value: keyVaultUri
  }
  {
    name: 'FACEBOOK_APP_SECRET'
    value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/facebook-app-secret/)'
  }
  {
    name: 'FACEBOOK_VERIFY_TOKEN'
    value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/facebook-verify-token/)'
  }
  {
    name: 'FACEBOOK_ACCESS_TOKEN'
    value: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/facebook-access-token/)'
  }
  // Meta
  {
    name: 'FACEBOOK_APP_ID'
    value: facebookAppId
  }
  {
    name: 'FACEBOOK_PAGE_IDS'
    value: facebookPageIds
  }
  {
    name: 'FACEBOOK_GRAPH_URL'
    value: 'https://graph.facebook.com'
  }
  {
    name: 'FACEBOOK_GRAPH_VERSION'
    value: facebookGraphVersion
  }
  // Azure SQL with the managed identity (token auth; no connection string, no password).
  {
    name: 'STORE_BACKEND'
    value: 'mssql'
  }
  {
    name: 'SQL_SERVER'
    value: sqlServerFqdn
  }
  {
    name: 'SQL_DATABASE'
    value: sqlDatabaseName
  }
  // Timers: the bindings read %POLL_SCHEDULE% and %DIGEST_SCHEDULE%, so both must exist.
  {
    name: 'POLL_SCHEDULE'
    value: pollSchedule
  }
  {
    name: 'DIGEST_SCHEDULE'
    value: digestSchedule
  }
  // Idle mode lets a serverless database pause between leads (docs/cost.md#idle-mode).
  {
    name: 'IDLE_AFTER_MINUTES'
    value: string(idleAfterMinutes)
  }
  {
    name: 'IDLE_SQL_EVERY_MINUTES'
    value: string(idleSqlEveryMinutes)
  }
  // Email through ACS with the managed identity. Without recipients the app would refuse to start with a
  // sender configured, so EMAIL_SENDER falls back to none.
  {
    name: 'EMAIL_SENDER'
    value: empty(emailTo) ? 'none' : 'acs'
  }
  {
    name: 'ACS_ENDPOINT'
    value: acsEndpoint
  }
  {
    name: 'EMAIL_FROM'
    value: emailFrom
  }
  {
    name: 'EMAIL_TO'
    value: emailTo
  }
  {
    name: 'DIGEST_TO'
    value: digestTo
  }
  {
    name: 'ALERT_EMAIL_TO'
    value: alertEmailTo
  }
  // Deliveries beyond email. The secrets (whsec_ signing secret, chat webhook URLs) are read from Key Vault
  // through KEY_VAULT_URL (lead-webhook-secret, slack-webhook-url, teams-webhook-url); the settings below
  // only switch each destination on.
  {
    name: 'LEAD_WEBHOOK_URLS'
    value: leadWebhookUrls
  }
  {
    name: 'LEAD_WEBHOOK_SECRET'
    value: empty(leadWebhookUrls) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/lead-webhook-secret/)'
  }
  {
    name: 'SLACK_WEBHOOK_URL'
    value: slackWebhook ? '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/slack-webhook-url/)' : ''
  }
  {
    name: 'SLACK_EVENTS'
    value: chatEvents
  }
  {
    name: 'TEAMS_WEBHOOK_URL'
    value: teamsWebhook ? '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/teams-webhook-url/)' : ''
  }
  {
    name: 'TEAMS_EVENTS'
    value: chatEvents
  }
  {
    name: 'META_DATASET_ID'
    value: metaDatasetId
  }
  // Azure-managed ACS domain: about 5 emails a minute and 10 an hour per subscription. Raise both with a
  // custom verified domain.
  {
    name: 'EMAIL_MAX_PER_MINUTE'
    value: '5'
  }
  {
    name: 'EMAIL_MAX_PER_HOUR'
    value: '10'
  }
  {
    name: 'NOTIFY_TIMEZONE'
    value: notifyTimezone
  }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the app to deploy `services.api` to by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobServiceUri}/${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      // Python 3.13: the worker is then the pinned PyPI package azure-functions-runtime (requirements.txt), the
      // same one `make test` indexes the app with (tests/unit/test_worker_index.py). Keep azure-pipelines.yml's
      // pythonVersion equal: packages built on another minor version do not import.
      runtime: {
        name: 'python'
        version: '3.13'
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReady
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
    }
  }
}

@description('Name of the function app.')
output name string = site.name

@description('Resource id of the function app.')
output id string = site.id

@description('Default host name, e.g. func-x.azurewebsites.net.')
output defaultHostName string = site.properties.defaultHostName

@description('Base URL of the app; the webhook is <url>/api/webhook/facebook/leads.')
output url string = 'https://${site.properties.defaultHostName}'

// The function app's storage account: host storage (locks, timers, keys), the app's queues and tables,
// and the blob container Flex Consumption deploys the package from. Keyless: every client, the host
// included, signs in with the user-assigned identity (allowSharedKeyAccess: false).

@description('Name of the storage account (3-24 lowercase letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Tags applied to every resource of this module.')
param tags object

@description('Blob container Flex Consumption deploys the app package to (functionAppConfig.deployment.storage).')
param deploymentContainerName string

@description('Replication of the account. LRS is enough: queues hold messages for minutes, the leads live in Azure SQL.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

// Keep in step with shared/storage/names.py (LEADS_QUEUE, NOTIFICATIONS_QUEUE, poison_queue(), COUNTERS_TABLE, STATE_TABLE)
// and shared/storage/ratelimit.py (RATE_LIMIT_TABLE); tests/unit/test_infra_consistency.py checks it.
// The host creates the -poison queues on first use; creating them here lets alerts and operators see them at once.
var queueNames = [
  'leads-inbound'
  'leads-inbound-poison'
  'notifications'
  'notifications-poison'
  'deliveries'
  'deliveries-poison'
]

var tableNames = [
  'agentstate'
  'ratelimits'
  'webhookcounters'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Flex Consumption without VNet integration reaches the account over its public endpoint.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

@description('Name of the storage account.')
output name string = storage.name

@description('Resource id of the storage account.')
output id string = storage.id

@description('Name of the deployment container.')
output deploymentContainerName string = deploymentContainer.name

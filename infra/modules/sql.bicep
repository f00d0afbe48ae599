// Azure SQL: a logical server with Microsoft Entra-only authentication (no SQL logins, no password anywhere)
// and one database: a DTU tier (Basic, S0-S2: a fixed hourly price) or General Purpose serverless (GP_S_Gen5:
// billed per second between minCapacity and maxVCores, paused after autoPauseDelayMinutes without any activity).
//
// Bicep cannot create database users: after provisioning, an Entra admin runs infra/scripts/grant-sql-identity.sql
// (azd does it in the postprovision hook) so the function's managed identity becomes a database user.
// Serverless auto-pause: the first connection after a pause fails with 40613 while the database resumes
// (about a minute); the app retries it as a transient error and the queue keeps the leads meanwhile. Any query
// resets the pause delay: while a timer queries every minute the database never pauses (docs/cost.md).

@description('Name of the logical server (lowercase letters, digits and dashes, globally unique).')
@minLength(1)
@maxLength(63)
param serverName string

@description('Name of the database.')
param databaseName string

@description('Azure region of the server and the database.')
param location string

@description('Tags applied to every resource of this module.')
param tags object

@description('Object id of the Microsoft Entra principal (user, group or application) that administers the server.')
param adminObjectId string

@description('Display name of the Entra admin as SQL shows it (a UPN, a group name or an app name; only the object id is checked).')
param adminLogin string

@description('Kind of the Entra admin principal.')
@allowed([
  'User'
  'Group'
  'Application'
])
param adminPrincipalType string = 'User'

@description('Database compute: Basic (5 DTU), S0 (10 DTU), S1 (20 DTU), S2 (50 DTU), or GP_S_Gen5 (General Purpose serverless on Gen5 hardware).')
@allowed([
  'Basic'
  'S0'
  'S1'
  'S2'
  'GP_S_Gen5'
])
param skuName string = 'S0'

@description('Serverless only: maximum vCores (sku capacity).')
@allowed([
  1
  2
  4
  6
  8
])
param maxVCores int = 1

@description('Serverless only: minimum vCores while the database is online, as a decimal string (0.5 or more, at most maxVCores).')
param minCapacity string = '0.5'

@description('Serverless only: minutes without activity before the database pauses (-1 disables auto-pause; otherwise 15-10080).')
@minValue(-1)
@maxValue(10080)
param autoPauseDelayMinutes int = 60

@description('Maximum size of the database in GB; 0 keeps the tier\'s default (Basic 2, S0-S2 250, serverless 32).')
@minValue(0)
@maxValue(1024)
param maxSizeGB int = 0

@description('Redundancy of the database backups.')
@allowed([
  'Local'
  'Zone'
  'Geo'
  'GeoZone'
])
param backupStorageRedundancy string = 'Local'

resource server 'Microsoft.Sql/servers@2023-08-01' = {
  name: serverName
  location: location
  tags: tags
  properties: {
    version: '12.0'
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    // Entra-only: no administratorLogin / administratorLoginPassword. Applied at server creation; change the
    // admin of an existing server with `az sql server ad-admin update`.
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminLogin
      sid: adminObjectId
      principalType: adminPrincipalType
      tenantId: subscription().tenantId
    }
  }
}

// "Allow Azure services and resources to access this server": Flex Consumption without VNet integration has
// no fixed outbound addresses. Authentication is still Entra-only. For a private setup use VNet integration
// plus a private endpoint and remove this rule.
resource allowAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01' = {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

var serverless = skuName == 'GP_S_Gen5'

// The sku object per kind: serverless names its vCores (GP_S_Gen5_1, _2, ...); a DTU tier is a name and a tier.
var tiers = {
  Basic: 'Basic'
  S0: 'Standard'
  S1: 'Standard'
  S2: 'Standard'
  GP_S_Gen5: 'GeneralPurpose'
}
var serverlessSku = {
  name: 'GP_S_Gen5_${maxVCores}'
  tier: 'GeneralPurpose'
  family: 'Gen5'
  capacity: maxVCores
}
var dtuSku = {
  name: skuName
  tier: tiers[skuName]
}

// Serverless-only properties stay out of a DTU database's definition.
var serverlessSettings = {
  autoPauseDelay: autoPauseDelayMinutes
  // minCapacity is a decimal (0.5); json() turns the string into a number.
  minCapacity: json(minCapacity)
}
var sizeSettings = {
  maxSizeBytes: maxSizeGB * 1024 * 1024 * 1024
}
var baseSettings = {
  collation: 'SQL_Latin1_General_CP1_CI_AS'
  zoneRedundant: false
  requestedBackupStorageRedundancy: backupStorageRedundancy
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01' = {
  parent: server
  name: databaseName
  location: location
  tags: tags
  sku: serverless ? serverlessSku : dtuSku
  properties: union(baseSettings, serverless ? serverlessSettings : {}, maxSizeGB > 0 ? sizeSettings : {})
}

@description('Name of the logical server.')
output serverName string = server.name

@description('Fully qualified domain name of the server (SQL_SERVER).')
output serverFqdn string = server.properties.fullyQualifiedDomainName

@description('Name of the database (SQL_DATABASE).')
output databaseName string = database.name

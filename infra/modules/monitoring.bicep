// Log Analytics workspace + workspace-based Application Insights.
// Flex Consumption does not support diagnostic settings on the site: App Insights is the log sink.

@description('Azure region of the workspace and the Application Insights component.')
param location string

@description('Tags applied to every resource of this module.')
param tags object

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Days the workspace keeps data (30 is included in the ingestion price).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Daily ingestion cap in GB; -1 is no cap. Once reached, ingestion stops until the next day (alerts go blind).')
param dailyQuotaGb int = -1

@description('Refuse instrumentation-key ingestion: telemetry must carry an Entra token. The function identity gets Monitoring Metrics Publisher and the app sets APPLICATIONINSIGHTS_AUTHENTICATION_STRING.')
param disableLocalAuth bool = true

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: disableLocalAuth
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

@description('Resource id of the Application Insights component (alert scope, role assignment scope).')
output appInsightsId string = appInsights.id

@description('Name of the Application Insights component.')
output appInsightsName string = appInsights.name

@description('Resource id of the Log Analytics workspace.')
output logAnalyticsId string = workspace.id

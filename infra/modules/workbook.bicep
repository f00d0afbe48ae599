// The operators' workbook: an Azure Monitor workbook on the Application Insights component (Application Insights >
// Workbooks, and Monitor > Workbooks) with leads per hour by source, speed to lead, ingestion and notification
// outcomes, dead letters, poller gaps, and the Meta token and page subscription incidents.
//
// Where its queries come from. The panels are the queries of docs/queries.kql marked with a
// `// workbook: <panel title>` line, each run after the file's `let agent = traces ...;` helper (a workbook runs
// every query alone). `.venv/bin/python -m tests.support.workbook` turns them into the workbook's JSON,
// infra/modules/workbook.json, checked in next to this file; Bicep reads it at build time with loadTextContent
// (a path relative to this file), so the deployment needs no script. tests/unit/test_workbook.py rebuilds the
// JSON from docs/queries.kql and fails when the checked-in file differs: change a marked query, run the command,
// commit both files.
//
// The name is a GUID (workbooks require one) fixed per resource group, so every deployment updates the same
// workbook. sourceId is the component's id in lower case, the form the azurerm provider insists on
// (hashicorp/terraform-provider-azurerm#27755), so the workbook is listed under the component whatever the casing.

@description('Azure region of the workbook (the region of the Application Insights component).')
param location string

@description('Tags applied to every resource of this module.')
param tags object

@description('Resource id of the Application Insights component the workbook queries and is listed under.')
param appInsightsId string

@description('Name of the workbook in the portal.')
param displayName string = 'Lead agent: operations'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'lead-agent-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    description: 'Leads per hour by source, speed to lead, ingestion and notification outcomes, dead letters, poller gaps, Meta token and page subscriptions. Queries: docs/queries.kql.'
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: toLower(appInsightsId)
    serializedData: loadTextContent('workbook.json')
  }
}

@description('Resource id of the workbook.')
output workbookId string = workbook.id

// The function app's user-assigned managed identity: host storage, queues/tables, Key Vault, Azure SQL,
// ACS Email and App Insights ingestion all sign in with it. User-assigned (not system-assigned) so role
// assignments and the SQL database user exist before the app first starts, and survive re-creating the app.

@description('Name of the user-assigned managed identity (also the name of its Azure SQL database user).')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Name of the identity.')
output name string = identity.name

@description('Client (application) id: AZURE_CLIENT_ID, AzureWebJobsStorage__clientId.')
output clientId string = identity.properties.clientId

@description('Principal (object) id: role assignments and the SQL user WITH OBJECT_ID.')
output principalId string = identity.properties.principalId

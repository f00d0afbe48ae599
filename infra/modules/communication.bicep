// Azure Communication Services Email: an Email Communication Service with an Azure-managed domain
// (<guid>.azurecomm.net, sender DoNotReply only) linked to a Communication Service the app sends through
// with its managed identity (ACS_ENDPOINT; no connection string).
//
// Azure-managed domain limits: about 5 emails a minute and 10 an hour per subscription (EMAIL_MAX_PER_MINUTE,
// EMAIL_MAX_PER_HOUR). For more, add a custom verified domain (emailServices/domains with
// domainManagement 'CustomerManaged' + DNS records) and raise both settings.

@description('Name of the Email Communication Service.')
param emailServiceName string

@description('Name of the Communication Service.')
param communicationServiceName string

@description('Where ACS stores data at rest, e.g. "United States", "Europe", "UK". The email service and the communication service must use the same one to be linked.')
param dataLocation string = 'United States'

@description('Tags applied to every resource of this module.')
param tags object

resource emailService 'Microsoft.Communication/emailServices@2023-04-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource managedDomain 'Microsoft.Communication/emailServices/domains@2023-04-01' = {
  parent: emailService
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: [
      managedDomain.id
    ]
  }
}

@description('Name of the Communication Service (role assignment scope).')
output communicationServiceName string = communicationService.name

@description('Resource id of the Communication Service.')
output communicationServiceId string = communicationService.id

@description('ACS endpoint for EmailClient(endpoint, credential) (ACS_ENDPOINT).')
output endpoint string = 'https://${communicationService.properties.hostName}/'

@description('Sender address of the Azure-managed domain (EMAIL_FROM).')
output senderAddress string = 'DoNotReply@${managedDomain.properties.mailFromSenderDomain}'

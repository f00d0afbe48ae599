// Key Vault for the Meta secrets. RBAC authorization (no access policies), soft delete + purge protection.
//
// Secrets are written only from NON-EMPTY secure parameters: a deployment that leaves them empty (the pipeline,
// or `azd provision` without the values in the azd environment) does not touch the secrets already in the vault.
// Set or rotate them later with `az keyvault secret set --vault-name <vault> -n facebook-access-token --value ...`
// (the admin principal gets Key Vault Secrets Officer in rbac.bicep); the app reads the vault directly through
// KEY_VAULT_URL with a short cache, so a rotation needs no redeploy.
//
// The vault stays reachable from public networks: Key Vault references do not resolve against a
// network-restricted vault on Flex Consumption.
//
// Purge protection vs `azd down` / `azd up`: purge protection cannot be turned off again, and a deleted vault (with
// its secrets) stays soft-deleted for softDeleteRetentionInDays (90). Nobody can purge it earlier, `azd down --purge`
// included. The vault name is derived from the subscription, resource group and environment name, so `azd up` with
// the same environment after `azd down` asks for a name that is still taken and fails (ConflictError: a vault with
// this name exists in a deleted state). Either
//   - recover it with its secrets: `azd env set KEY_VAULT_RECOVER true`, `azd up`, then `azd env set KEY_VAULT_RECOVER
//     false` (createMode 'recover' below; the same as `az keyvault recover --name <vault>`), or
//   - start over under a new name: a new environment (`azd env new <name>`) or another resource group.

@description('Name of the vault (3-24 letters, digits and dashes, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the vault.')
param location string

@description('Tags applied to the vault.')
param tags object

@description('Recover the soft-deleted vault of this name (createMode recover) instead of creating a new one.')
param recover bool = false

@description('Days a deleted vault or secret can be recovered (7-90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Meta app secret (App Dashboard > Settings > Basic); verifies X-Hub-Signature-256. Stored as facebook-app-secret when non-empty.')
@secure()
param facebookAppSecret string = ''

@description('The previous Meta app secret while a rotation is in progress. Stored as facebook-app-secret-previous when non-empty.')
@secure()
param facebookAppSecretPrevious string = ''

@description('Verify token typed into the Webhooks product. Stored as facebook-verify-token when non-empty.')
@secure()
param facebookVerifyToken string = ''

@description('Long-lived Page or system-user token with leads_retrieval. Stored as facebook-access-token when non-empty.')
@secure()
param facebookAccessToken string = ''

@description('SMTP password, only for EMAIL_SENDER=smtp (the Azure deployment uses ACS with the managed identity). Stored as smtp-password when non-empty.')
@secure()
param smtpPassword string = ''

// No acs-connection-string secret: the app sends through ACS with its managed identity (ACS_ENDPOINT).

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    createMode: recover ? 'recover' : 'default'
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Names match shared/secrets.py VAULT_NAMES.
resource appSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(facebookAppSecret)) {
  parent: vault
  name: 'facebook-app-secret'
  properties: {
    value: facebookAppSecret
    contentType: 'text/plain'
  }
}

resource appSecretPrevious 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(facebookAppSecretPrevious)) {
  parent: vault
  name: 'facebook-app-secret-previous'
  properties: {
    value: facebookAppSecretPrevious
    contentType: 'text/plain'
  }
}

resource verifyToken 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(facebookVerifyToken)) {
  parent: vault
  name: 'facebook-verify-token'
  properties: {
    value: facebookVerifyToken
    contentType: 'text/plain'
  }
}

resource accessToken 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(facebookAccessToken)) {
  parent: vault
  name: 'facebook-access-token'
  properties: {
    value: facebookAccessToken
    contentType: 'text/plain'
  }
}

resource smtpPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(smtpPassword)) {
  parent: vault
  name: 'smtp-password'
  properties: {
    value: smtpPassword
    contentType: 'text/plain'
  }
}

@description('Name of the vault.')
output name string = vault.name

@description('Resource id of the vault.')
output id string = vault.id

@description('Vault URI with its trailing slash (KEY_VAULT_URL).')
output uri string = vault.properties.vaultUri

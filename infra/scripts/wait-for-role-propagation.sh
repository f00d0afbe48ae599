#!/usr/bin/env sh
# Wait, before a package deploy, until the function identity's role assignments on the storage account are old
# enough to have propagated. Flex Consumption uploads the package to the deployment container with the app's
# identity; on a fresh environment the assignment made by the same `azd up` may not be effective yet and the
# deploy fails with 403 / BlobUploadFailedException ("This request is not authorized to perform this operation"),
# then succeeds a minute later (Azure/azure-dev#8026). Role assignments take effect within minutes, rarely longer.
#
# azd runs this as the predeploy hook (azure.yaml); azure-pipelines.yml runs it before AzureFunctionApp@2.
# Inputs (deployment outputs / azd environment): STORAGE_ACCOUNT_NAME, AZURE_RESOURCE_GROUP, IDENTITY_PRINCIPAL_ID,
# optional AZURE_SUBSCRIPTION_ID. ROLE_PROPAGATION_SECONDS (default 180) is the age the newest assignment must reach.
# After the first deploy the assignments are old and this returns at once. Best effort: without the Azure CLI or
# the inputs it says so and returns 0 (if the deploy then fails with 403, run `azd deploy` again a minute later).
set -eu

target="${ROLE_PROPAGATION_SECONDS:-180}"

if [ -z "${STORAGE_ACCOUNT_NAME:-}" ] && command -v azd >/dev/null 2>&1; then
    eval "$(azd env get-values)"
fi

for name in STORAGE_ACCOUNT_NAME AZURE_RESOURCE_GROUP IDENTITY_PRINCIPAL_ID; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        echo "wait-for-role-propagation: $name is not set; not waiting." >&2
        exit 0
    fi
done
if ! command -v az >/dev/null 2>&1; then
    echo "wait-for-role-propagation: Azure CLI not found; not waiting (a 403 on the first deploy: run azd deploy again)." >&2
    exit 0
fi

subscription="${AZURE_SUBSCRIPTION_ID:-$(az account show --query id --output tsv 2>/dev/null || true)}"
scope="/subscriptions/$subscription/resourceGroups/$AZURE_RESOURCE_GROUP/providers/Microsoft.Storage/storageAccounts/$STORAGE_ACCOUNT_NAME"
created=$(az role assignment list --assignee "$IDENTITY_PRINCIPAL_ID" --scope "$scope" \
    --query "max([].createdOn)" --output tsv 2>/dev/null || true)
if [ -z "$created" ]; then
    echo "wait-for-role-propagation: no role assignment of $IDENTITY_PRINCIPAL_ID on $STORAGE_ACCOUNT_NAME found; not waiting." >&2
    exit 0
fi

# createdOn looks like 2026-05-03T10:11:12.345678+00:00 (UTC); keep the seconds part for date(1).
stamp=${created%%.*}
stamp=${stamp%%+*}
stamp=${stamp%%Z}
then_s=$(date -u -d "$stamp" +%s 2>/dev/null || date -u -j -f "%Y-%m-%dT%H:%M:%S" "$stamp" +%s 2>/dev/null || echo "")
if [ -z "$then_s" ]; then
    echo "wait-for-role-propagation: cannot read the time $created; not waiting." >&2
    exit 0
fi
age=$(($(date -u +%s) - then_s))
if [ "$age" -ge "$target" ]; then
    exit 0
fi
wait_s=$((target - age))
echo "wait-for-role-propagation: the storage role assignments are ${age} s old; waiting ${wait_s} s for them to take effect before the package upload"
sleep "$wait_s"

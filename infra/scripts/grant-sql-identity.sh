#!/usr/bin/env sh
# Make the function app's managed identity a user of the Azure SQL database (db_datareader, db_datawriter,
# db_ddladmin) by running grant-sql-identity.sql as the server's Microsoft Entra admin. Idempotent.
#
# azd runs this as the postprovision hook (azure.yaml) with the deployment outputs in the environment:
#   SQL_SERVER_FQDN, SQL_SERVER_NAME, SQL_DATABASE_NAME, IDENTITY_NAME, IDENTITY_PRINCIPAL_ID, AZURE_RESOURCE_GROUP,
#   and azd's own AZURE_SUBSCRIPTION_ID.
# Run by hand: export those (or have `azd env get-values` available) and `sh infra/scripts/grant-sql-identity.sh`.
#
# Prerequisites, all checked before anything is done (the script names every one that is missing and exits 1, so
# `azd up` stops here instead of deploying an app that cannot reach its database):
#   - the Azure CLI (`az`), signed in (`az login`) as the server's Entra admin, on the subscription azd deployed to;
#   - go-sqlcmd (https://github.com/microsoft/go-sqlcmd: `winget install sqlcmd`, `brew install sqlcmd`, or the
#     Microsoft Linux package `sqlcmd`); the legacy ODBC sqlcmd cannot use the Entra sign-in
#     (--authentication-method ActiveDirectoryDefault uses the az / azd sign-in);
#   - curl, unless SQL_ADD_CLIENT_IP=false.
#
# Your machine must reach the server: unless SQL_ADD_CLIENT_IP=false, the script adds a firewall rule for your
# public IP with the Azure CLI and removes it again at the end.
set -eu

here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${SQL_SERVER_FQDN:-}" ] && command -v azd >/dev/null 2>&1; then
    # Outside an azd hook: read the environment's values (KEY="value" lines).
    eval "$(azd env get-values)"
fi

missing=""
for name in SQL_SERVER_FQDN SQL_DATABASE_NAME IDENTITY_NAME IDENTITY_PRINCIPAL_ID; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || missing="$missing $name"
done
if [ -n "$missing" ]; then
    echo "grant-sql-identity: missing$missing (outputs of infra/main.bicep); nothing done." >&2
    exit 1
fi

echo "grant-sql-identity: database user [$IDENTITY_NAME] (object id $IDENTITY_PRINCIPAL_ID)"
echo "  on $SQL_SERVER_FQDN / $SQL_DATABASE_NAME: db_datareader, db_datawriter, db_ddladmin"

# --- prerequisites: collect every problem, then fail once with the whole list ---------------------------------
problems=""
problem() {
    problems="$problems
  - $1"
}

subscription="${AZURE_SUBSCRIPTION_ID:-}"
if ! command -v az >/dev/null 2>&1; then
    problem "Azure CLI (az) not found. Install it: https://learn.microsoft.com/cli/azure/install-azure-cli"
elif ! current=$(az account show --query id --output tsv 2>/dev/null) || [ -z "$current" ]; then
    problem "Azure CLI is not signed in. Run: az login   (as the SQL server's Entra admin, the account azd uses)"
elif [ -n "$subscription" ] && [ "$current" != "$subscription" ]; then
    problem "Azure CLI is on subscription $current, azd deployed to $subscription. Run: az account set --subscription $subscription"
else
    subscription="$current"
fi

if ! command -v sqlcmd >/dev/null 2>&1; then
    problem "go-sqlcmd not found. Install it: winget install sqlcmd | brew install sqlcmd | apt-get install sqlcmd (Microsoft's package repository)"
elif ! sqlcmd --help 2>&1 | grep -q -- "--authentication-method"; then
    problem "the sqlcmd on PATH is the legacy ODBC sqlcmd, which cannot use your Entra sign-in. Install go-sqlcmd and put it first on PATH"
fi

if [ "${SQL_ADD_CLIENT_IP:-true}" != "false" ] && ! command -v curl >/dev/null 2>&1; then
    problem "curl not found (it finds your public IP for the temporary firewall rule). Install it, or allow your IP on the server yourself and set SQL_ADD_CLIENT_IP=false"
fi

if [ -n "$problems" ]; then
    echo "grant-sql-identity: FAILED, the database user [$IDENTITY_NAME] was NOT created. Missing:$problems" >&2
    echo "  Then run: sh infra/scripts/grant-sql-identity.sh   (or azd provision, which runs it again)" >&2
    echo "  Or, as the Entra admin, run infra/scripts/grant-sql-identity.sql in the portal's query editor," >&2
    echo "  replacing \$(IDENTITY_NAME) with $IDENTITY_NAME and \$(IDENTITY_PRINCIPAL_ID) with $IDENTITY_PRINCIPAL_ID." >&2
    echo "  Until then the app cannot reach its database (GET /api/health/db says so)." >&2
    exit 1
fi

rule=""
if [ "${SQL_ADD_CLIENT_IP:-true}" != "false" ] && [ -n "${AZURE_RESOURCE_GROUP:-}" ] && [ -n "${SQL_SERVER_NAME:-}" ]; then
    ip=$(curl -fsS --max-time 10 https://api.ipify.org || true)
    if [ -n "$ip" ]; then
        rule="grant-sql-identity-$(echo "$ip" | tr '.' '-')"
        echo "grant-sql-identity: allowing $ip through the server firewall (rule $rule, removed afterwards)"
        az sql server firewall-rule create --subscription "$subscription" -g "$AZURE_RESOURCE_GROUP" \
            -s "$SQL_SERVER_NAME" -n "$rule" --start-ip-address "$ip" --end-ip-address "$ip" --output none
        trap 'az sql server firewall-rule delete --subscription "$subscription" -g "$AZURE_RESOURCE_GROUP" -s "$SQL_SERVER_NAME" -n "$rule" --output none || true' EXIT
        # Firewall changes take a few seconds to apply.
        sleep "${SQL_FIREWALL_WAIT_SECONDS:-15}"
    else
        echo "grant-sql-identity: could not find your public IP; relying on the server's existing firewall rules" >&2
    fi
fi

# A paused serverless database answers the first login with error 40613 while it resumes: try a few times.
attempt=1
while :; do
    if sqlcmd -S "tcp:${SQL_SERVER_FQDN},1433" -d "$SQL_DATABASE_NAME" \
        --authentication-method ActiveDirectoryDefault -b -l 60 \
        -i "$here/grant-sql-identity.sql" \
        -v IDENTITY_NAME="$IDENTITY_NAME" IDENTITY_PRINCIPAL_ID="$IDENTITY_PRINCIPAL_ID"; then
        break
    fi
    if [ "$attempt" -ge "${SQL_ATTEMPTS:-4}" ]; then
        echo "grant-sql-identity: FAILED, sqlcmd failed $attempt times; the database user [$IDENTITY_NAME] was NOT created." >&2
        echo "  Are you signed in (az login) as the server's Entra admin, and does the firewall let you in?" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    echo "grant-sql-identity: retrying in 20 s (the database may be resuming)" >&2
    sleep "${SQL_RETRY_SECONDS:-20}"
done
echo "grant-sql-identity: done"

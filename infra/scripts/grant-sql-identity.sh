#!/usr/bin/env sh
# Make the function app's managed identity a user of the Azure SQL database (db_datareader, db_datawriter,
# db_ddladmin) by running grant-sql-identity.sql as the server's Microsoft Entra admin. Idempotent.
#
# azd runs this as the postprovision hook (azure.yaml) with the deployment outputs in the environment:
#   SQL_SERVER_FQDN, SQL_SERVER_NAME, SQL_DATABASE_NAME, IDENTITY_NAME, IDENTITY_PRINCIPAL_ID, AZURE_RESOURCE_GROUP
# Run by hand: export those (or have `azd env get-values` available) and `sh infra/scripts/grant-sql-identity.sh`.
#
# Needs go-sqlcmd (https://github.com/microsoft/go-sqlcmd: `winget install sqlcmd`, `brew install sqlcmd`,
# or the Microsoft Linux package `sqlcmd`), signed in as the Entra admin (`az login` / `azd auth login`;
# --authentication-method ActiveDirectoryDefault uses that sign-in). Without it the script prints what to run.
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

if ! command -v sqlcmd >/dev/null 2>&1 || ! sqlcmd --help 2>&1 | grep -q -- "--authentication-method"; then
    echo "grant-sql-identity: go-sqlcmd not found (the legacy ODBC sqlcmd cannot use your Entra sign-in)." >&2
    echo "  Install it, then run:  sh infra/scripts/grant-sql-identity.sh" >&2
    echo "  or run infra/scripts/grant-sql-identity.sql in the portal's query editor as the Entra admin," >&2
    echo "  replacing \$(IDENTITY_NAME) with $IDENTITY_NAME and \$(IDENTITY_PRINCIPAL_ID) with $IDENTITY_PRINCIPAL_ID." >&2
    echo "  Until then the app cannot reach its database (GET /api/health/db says so)." >&2
    exit 0
fi

rule=""
if [ "${SQL_ADD_CLIENT_IP:-true}" != "false" ] && command -v az >/dev/null 2>&1 \
    && [ -n "${AZURE_RESOURCE_GROUP:-}" ] && [ -n "${SQL_SERVER_NAME:-}" ]; then
    ip=$(curl -fsS --max-time 10 https://api.ipify.org || true)
    if [ -n "$ip" ]; then
        rule="grant-sql-identity-$(echo "$ip" | tr '.' '-')"
        echo "grant-sql-identity: allowing $ip through the server firewall (rule $rule, removed afterwards)"
        az sql server firewall-rule create -g "$AZURE_RESOURCE_GROUP" -s "$SQL_SERVER_NAME" -n "$rule" \
            --start-ip-address "$ip" --end-ip-address "$ip" --output none
        trap 'az sql server firewall-rule delete -g "$AZURE_RESOURCE_GROUP" -s "$SQL_SERVER_NAME" -n "$rule" --output none || true' EXIT
        # Firewall changes take a few seconds to apply.
        sleep 15
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
    if [ "$attempt" -ge 4 ]; then
        echo "grant-sql-identity: sqlcmd failed $attempt times; are you signed in as the server's Entra admin?" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    echo "grant-sql-identity: retrying in 20 s (the database may be resuming)" >&2
    sleep 20
done
echo "grant-sql-identity: done"

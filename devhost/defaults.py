"""The embedded settings of a local run: Azurite, SQLite, the SMTP sink and the sandbox Graph API.

`make run` needs no configuration: every value here is a local, non-secret default. A process
environment variable or a `local.settings.json` value wins over each of them.
"""

from __future__ import annotations

import os

from shared.storage.connection import AZURITE_ACCOUNT_KEY, azurite_connection_string

__all__ = ["AZURITE_ACCOUNT_KEY", "LOCAL_DEFAULTS", "apply_local_defaults", "azurite_connection_string"]

LOCAL_DEFAULTS: dict[str, str] = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "AzureWebJobsStorage": azurite_connection_string(),
    "FACEBOOK_APP_ID": "1234567890",
    "FACEBOOK_APP_SECRET": "local-sandbox-app-secret",
    "FACEBOOK_VERIFY_TOKEN": "local-verify-token",
    "FACEBOOK_ACCESS_TOKEN": "local-sandbox-access-token",
    "FACEBOOK_PAGE_IDS": "1000000000001",
    "FACEBOOK_GRAPH_URL": "http://127.0.0.1:7072",
    "FACEBOOK_GRAPH_VERSION": "v26.0",
    "POLL_SCHEDULE": "0 */5 * * * *",
    "STORE_BACKEND": "sqlite",
    "SQLITE_PATH": ".devdata/leads.db",
    "EMAIL_SENDER": "smtp",
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": "1025",
    "SMTP_STARTTLS": "false",
    "EMAIL_FROM": "leads@localhost",
    "EMAIL_TO": "sales@localhost",
    "DIGEST_TO": "sales-lead@localhost,owner@localhost",
    "ALERT_EMAIL_TO": "ops@localhost",
    "DIGEST_SCHEDULE": "0 0 7 * * *",
    "EMAIL_MAX_PER_MINUTE": "30",
    "EMAIL_MAX_PER_HOUR": "600",
}


def apply_local_defaults(environ: os._Environ[str] | dict[str, str] | None = None) -> None:
    """Fill every unset local setting with its embedded default (set values are kept)."""
    target = os.environ if environ is None else environ
    for name, value in LOCAL_DEFAULTS.items():
        target.setdefault(name, value)

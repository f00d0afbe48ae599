"""Secrets: the Meta app secret(s), verify token and access token, the outbound webhook secret and chat
webhook URLs, from app settings or Key Vault.

With `KEY_VAULT_URL` set, each secret is read from Key Vault (`azure-keyvault-secrets` with
`DefaultAzureCredential`) and cached for a short time, so a rotated token takes effect without
a restart or redeploy. A secret missing from the vault falls back to its app setting (which may
itself be a Key Vault reference resolved by the platform). When the vault cannot be reached the
last value read is kept; values are never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.logs import get_logger
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient

log = get_logger(__name__)

# App setting → Key Vault secret name (vault names allow letters, digits and dashes).
VAULT_NAMES = {
    "FACEBOOK_APP_SECRET": "facebook-app-secret",
    "FACEBOOK_APP_SECRET_PREVIOUS": "facebook-app-secret-previous",
    "FACEBOOK_VERIFY_TOKEN": "facebook-verify-token",
    "FACEBOOK_ACCESS_TOKEN": "facebook-access-token",
    "SMTP_PASSWORD": "smtp-password",
    "ACS_CONNECTION_STRING": "acs-connection-string",
    "LEAD_WEBHOOK_SECRET": "lead-webhook-secret",
    "SLACK_WEBHOOK_URL": "slack-webhook-url",
    "TEAMS_WEBHOOK_URL": "teams-webhook-url",
}
UNREACHABLE_RETRY_SECONDS = 30.0
_SETTING_FIELDS = {
    "FACEBOOK_APP_SECRET": "facebook_app_secret",
    "FACEBOOK_APP_SECRET_PREVIOUS": "facebook_app_secret_previous",
    "FACEBOOK_VERIFY_TOKEN": "facebook_verify_token",
    "FACEBOOK_ACCESS_TOKEN": "facebook_access_token",
    "SMTP_PASSWORD": "smtp_password",
    "ACS_CONNECTION_STRING": "acs_connection_string",
    "LEAD_WEBHOOK_SECRET": "lead_webhook_secret",
    "SLACK_WEBHOOK_URL": "slack_webhook_url",
    "TEAMS_WEBHOOK_URL": "teams_webhook_url",
}


def default_vault_client(vault_url: str, timeout: float) -> SecretClient:
    """A `SecretClient` authenticated with the function's managed identity (or the developer's login)."""
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        vault_url,
        DefaultAzureCredential(),
        connection_timeout=timeout,
        read_timeout=timeout,
        retry_total=2,
    )


class SecretProvider:
    """One place to read every secret; Key Vault values are cached for `ttl_seconds`."""

    def __init__(
        self,
        settings: Settings,
        vault_client: Callable[[], Any] | None = None,
        ttl_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._ttl = settings.secrets_cache_seconds if ttl_seconds is None else ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str]] = {}
        self._client: Any = None
        if vault_client is not None:
            self._make_client: Callable[[], Any] | None = vault_client
        elif settings.key_vault_url:
            url, timeout = settings.key_vault_url, settings.graph_timeout_seconds
            self._make_client = lambda: default_vault_client(url, timeout)
        else:
            self._make_client = None

    @property
    def uses_key_vault(self) -> bool:
        return self._make_client is not None

    def get(self, setting: str) -> str:
        """The current value of `setting` (one of `VAULT_NAMES`); empty when set nowhere.

        An app setting that still reads `@Microsoft.KeyVault(...)` is a Key Vault reference the
        platform could not resolve: it is treated as empty (and logged), never used as a secret.
        """
        fallback = _resolved(setting, str(getattr(self._settings, _SETTING_FIELDS[setting])))
        return self._secret(setting, VAULT_NAMES[setting], fallback)

    def _secret(self, setting: str, vault_name: str, fallback: str) -> str:
        """`vault_name` from Key Vault (cached), else `fallback` (the app setting); without a vault, `fallback`."""
        if self._make_client is None:
            return fallback
        now = self._clock()
        with self._lock:
            cached = self._cache.get(setting)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        value = self._read_vault(setting, vault_name, fallback)
        if value is None:
            # Vault unreachable: keep the last value (or the setting) and ask again after a short pause,
            # not on every call, so webhooks never wait on a vault outage.
            kept = cached[1] if cached is not None else fallback
            retry_at = now - self._ttl + min(self._ttl, UNREACHABLE_RETRY_SECONDS)
            with self._lock:
                self._cache[setting] = (retry_at, kept)
            return kept
        with self._lock:
            self._cache[setting] = (now, value)
        return value

    def _read_vault(self, setting: str, vault_name: str, fallback: str) -> str | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            with self._lock:
                if self._client is None and self._make_client is not None:
                    self._client = self._make_client()
                client = self._client
            secret = client.get_secret(vault_name)
        except ResourceNotFoundError:
            return fallback
        except AzureError as exc:
            log.warning(
                "secrets: Key Vault read failed for %s (%s); keeping the last value", setting, type(exc).__name__
            )
            return None
        return str(secret.value or "")

    def app_secrets(self) -> tuple[str, ...]:
        """The secrets a webhook signature may match: current first, then the previous one."""
        return tuple(s for s in (self.get("FACEBOOK_APP_SECRET"), self.get("FACEBOOK_APP_SECRET_PREVIOUS")) if s)

    def verify_token(self) -> str:
        return self.get("FACEBOOK_VERIFY_TOKEN")

    def access_token(self) -> str:
        return self.get("FACEBOOK_ACCESS_TOKEN")

    def page_token(self, page_id: str) -> str:
        """The page's own token (Key Vault `facebook-page-token--{page_id}`, or `FACEBOOK_PAGE_TOKEN_{page_id}`);
        the access token when the page has none."""
        own = _resolved(f"FACEBOOK_PAGE_TOKEN_{page_id}", self._settings.facebook_page_tokens.get(page_id, ""))
        if page_id.isdigit():
            own = self._secret(f"page:{page_id}", f"facebook-page-token--{page_id}", own)
        return own or self.access_token()

    def token_scope(self, page_id: str) -> str | None:
        """`page_id` when the page has a token of its own (its failures are its own), else None (the shared one)."""
        own = self.page_token(page_id)
        return page_id if own and own != self.access_token() else None

    def app_token(self) -> str:
        """`{app-id}|{app-secret}`, the token `debug_token` is asked with; empty without an app id."""
        app_id = self._settings.facebook_app_id
        return f"{app_id}|{self.get('FACEBOOK_APP_SECRET')}" if app_id else ""


def _resolved(setting: str, value: str) -> str:
    if value.strip().startswith("@Microsoft.KeyVault("):
        log.error("secrets: %s is an unresolved Key Vault reference; check the identity's access to the vault", setting)
        return ""
    return value

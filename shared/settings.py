"""Settings: read once from the process environment into one typed object.

The app reads its environment only. Locally, the host (Core Tools' `func start`, or the devhost)
loads `local.settings.json` into that environment before the app starts. A missing or malformed
required setting raises `SettingsError` with one line naming it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.storage.connection import StorageTarget, storage_from_settings

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
PAGE_TOKEN_PREFIX = "FACEBOOK_PAGE_TOKEN_"  # noqa: S105 - a setting name, not a secret
PAGE_TOKEN_TEMPLATE = PAGE_TOKEN_PREFIX + "{page_id}"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Standard Webhooks' and Svix's ladder: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (27.6 h in all).
DELIVERY_LADDER = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the message names it in one line."""


class Settings(BaseModel):
    """Every setting the app reads, with its default. Field aliases are the app-setting names."""

    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="ignore", defer_build=True)

    # Meta
    facebook_app_id: str = Field("", alias="FACEBOOK_APP_ID")
    facebook_app_secret: str = Field("", alias="FACEBOOK_APP_SECRET")
    facebook_app_secret_previous: str = Field("", alias="FACEBOOK_APP_SECRET_PREVIOUS")
    facebook_verify_token: str = Field("", alias="FACEBOOK_VERIFY_TOKEN")
    facebook_access_token: str = Field("", alias="FACEBOOK_ACCESS_TOKEN")
    facebook_page_ids: tuple[str, ...] = Field((), alias="FACEBOOK_PAGE_IDS")
    # FACEBOOK_PAGE_TOKEN_{page_id}: one page's own token (Key Vault `facebook-page-token--{page_id}`);
    # FACEBOOK_ACCESS_TOKEN serves every page without one.
    facebook_page_tokens: dict[str, str] = Field(default_factory=dict, alias=PAGE_TOKEN_TEMPLATE)
    facebook_forms_include: tuple[str, ...] = Field((), alias="FACEBOOK_FORMS_INCLUDE")
    facebook_forms_exclude: tuple[str, ...] = Field((), alias="FACEBOOK_FORMS_EXCLUDE")
    field_map: dict[str, str] = Field(default_factory=dict, alias="FIELD_MAP")
    facebook_graph_url: str = Field("https://graph.facebook.com", alias="FACEBOOK_GRAPH_URL")
    facebook_graph_version: str = Field("v26.0", alias="FACEBOOK_GRAPH_VERSION", pattern=r"^v\d+\.\d+$")
    graph_timeout_seconds: float = Field(10.0, alias="GRAPH_TIMEOUT_SECONDS", gt=0, le=120)

    # Azure Storage (queues, rate-limit and counter tables)
    azure_webjobs_storage: str = Field("", alias="AzureWebJobsStorage")
    storage_account_name: str = Field("", alias="AzureWebJobsStorage__accountName")
    storage_queue_uri: str = Field("", alias="AzureWebJobsStorage__queueServiceUri")
    storage_table_uri: str = Field("", alias="AzureWebJobsStorage__tableServiceUri")
    storage_client_id: str = Field("", alias="AzureWebJobsStorage__clientId")
    queue_timeout_seconds: float = Field(5.0, alias="QUEUE_TIMEOUT_SECONDS", gt=0, le=60)
    key_vault_url: str = Field("", alias="KEY_VAULT_URL")

    # Store
    store_backend: Literal["sqlite", "mssql"] = Field("sqlite", alias="STORE_BACKEND")
    sqlite_path: str = Field(".devdata/leads.db", alias="SQLITE_PATH")
    sql_connection_string: str = Field("", alias="SQL_CONNECTION_STRING")
    sql_server: str = Field("", alias="SQL_SERVER")
    sql_database: str = Field("", alias="SQL_DATABASE")
    sql_pool_size: int = Field(5, alias="SQL_POOL_SIZE", ge=1, le=100)
    azure_client_id: str = Field("", alias="AZURE_CLIENT_ID")
    store_timeout_seconds: float = Field(15.0, alias="STORE_TIMEOUT_SECONDS", gt=0, le=120)

    # Webhook and ingestion
    webhook_max_body_bytes: int = Field(1024 * 1024, alias="WEBHOOK_MAX_BODY_BYTES", gt=0)
    ingest_max_attempts: int = Field(40, alias="INGEST_MAX_ATTEMPTS", ge=1, le=1000)
    retry_base_seconds: float = Field(5.0, alias="RETRY_BASE_SECONDS", ge=0)
    retry_max_seconds: float = Field(3600.0, alias="RETRY_MAX_SECONDS", gt=0, le=7 * 24 * 3600)

    # Safety net: poller, reconciliation, pauses, dead letters
    poll_schedule: str = Field("0 */5 * * * *", alias="POLL_SCHEDULE")
    poll_overlap_seconds: int = Field(300, alias="POLL_OVERLAP_SECONDS", ge=0)
    poll_grace_seconds: int = Field(120, alias="POLL_GRACE_SECONDS", ge=0)
    poll_requeue_after_seconds: int = Field(1800, alias="POLL_REQUEUE_AFTER_SECONDS", ge=0)
    poll_first_run_hours: float = Field(24, alias="POLL_FIRST_RUN_HOURS", gt=0, le=90 * 24)
    poll_max_backfill_days: float = Field(90, alias="POLL_MAX_BACKFILL_DAYS", gt=0, le=365)
    reconcile_window_hours: float = Field(24, alias="RECONCILE_WINDOW_HOURS", gt=0, le=90 * 24)
    reconcile_every_minutes: float = Field(60, alias="RECONCILE_EVERY_MINUTES", gt=0)
    reconcile_http_budget_seconds: float = Field(150, alias="RECONCILE_HTTP_BUDGET_SECONDS", gt=0, le=220)
    token_recheck_seconds: float = Field(60, alias="TOKEN_RECHECK_SECONDS", gt=0)
    paused_retry_seconds: float = Field(300, alias="PAUSED_RETRY_SECONDS", gt=0)
    failed_events_retention_days: int = Field(30, alias="FAILED_EVENTS_RETENTION_DAYS", ge=1)
    secrets_cache_seconds: float = Field(300, alias="SECRETS_CACHE_SECONDS", ge=0)
    idle_after_minutes: float = Field(0, alias="IDLE_AFTER_MINUTES", ge=0)
    idle_sql_every_minutes: float = Field(180, alias="IDLE_SQL_EVERY_MINUTES", ge=15)

    # Operations
    rate_limit_per_minute: int = Field(100, alias="RATE_LIMIT_PER_MINUTE", ge=1)
    health_cache_seconds: float = Field(60, alias="HEALTH_CACHE_SECONDS", ge=0)

    # Notifications
    email_sender: Literal["none", "smtp", "acs"] = Field("none", alias="EMAIL_SENDER")
    email_from: str = Field("", alias="EMAIL_FROM")
    email_to: tuple[str, ...] = Field((), alias="EMAIL_TO")
    email_routes: dict[str, tuple[str, ...]] = Field(default_factory=dict, alias="EMAIL_ROUTES")
    digest_to: tuple[str, ...] = Field((), alias="DIGEST_TO")
    digest_schedule: str = Field("0 0 7 * * *", alias="DIGEST_SCHEDULE")
    alert_email_to: tuple[str, ...] = Field((), alias="ALERT_EMAIL_TO")
    smtp_host: str = Field("", alias="SMTP_HOST")
    smtp_port: int = Field(587, alias="SMTP_PORT", gt=0, lt=65536)
    smtp_username: str = Field("", alias="SMTP_USERNAME")
    smtp_password: str = Field("", alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(True, alias="SMTP_STARTTLS")
    acs_connection_string: str = Field("", alias="ACS_CONNECTION_STRING")
    acs_endpoint: str = Field("", alias="ACS_ENDPOINT")
    email_timeout_seconds: float = Field(15.0, alias="EMAIL_TIMEOUT_SECONDS", gt=0, le=120)
    email_max_per_minute: int = Field(5, alias="EMAIL_MAX_PER_MINUTE", ge=1)
    email_max_per_hour: int = Field(10, alias="EMAIL_MAX_PER_HOUR", ge=1)
    email_max_leads_per_email: int = Field(50, alias="EMAIL_MAX_LEADS_PER_EMAIL", ge=1, le=500)
    notify_timezone: str = Field("UTC", alias="NOTIFY_TIMEZONE")
    notify_max_attempts: int = Field(4, alias="NOTIFY_MAX_ATTEMPTS", ge=1, le=20)
    notify_retry_base_seconds: float = Field(30, alias="NOTIFY_RETRY_BASE_SECONDS", ge=0)
    notify_retry_max_seconds: float = Field(900, alias="NOTIFY_RETRY_MAX_SECONDS", gt=0)
    notify_stuck_seconds: float = Field(600, alias="NOTIFY_STUCK_SECONDS", ge=30)
    alert_dead_letters_threshold: int = Field(10, alias="ALERT_DEAD_LETTERS_THRESHOLD", ge=1)
    silence_hours: float = Field(6, alias="SILENCE_HOURS", gt=0)
    silence_min_expected: float = Field(3, alias="SILENCE_MIN_EXPECTED", ge=0)

    # Deliveries beyond email: signed webhooks, Slack, Teams, Meta's Conversions API
    lead_webhook_urls: tuple[str, ...] = Field((), alias="LEAD_WEBHOOK_URLS")
    lead_webhook_secret: str = Field("", alias="LEAD_WEBHOOK_SECRET")
    slack_webhook_url: str = Field("", alias="SLACK_WEBHOOK_URL")
    slack_events: Literal["leads", "alerts", "both"] = Field("both", alias="SLACK_EVENTS")
    teams_webhook_url: str = Field("", alias="TEAMS_WEBHOOK_URL")
    teams_events: Literal["leads", "alerts", "both"] = Field("both", alias="TEAMS_EVENTS")
    meta_dataset_id: str = Field("", alias="META_DATASET_ID", pattern=r"^(\d{1,30})?$")
    delivery_timeout_seconds: float = Field(10.0, alias="DELIVERY_TIMEOUT_SECONDS", gt=0, le=30)
    delivery_retry_seconds: tuple[float, ...] = Field(DELIVERY_LADDER, alias="DELIVERY_RETRY_SECONDS", min_length=1)

    @field_validator("email_to", "digest_to", "alert_email_to", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.replace(";", ",").split(",") if part.strip())
        return value

    @field_validator("email_routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            parsed = json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError('must be a JSON object like {"form:123": "a@x.com,b@y.com"}')
            return {
                str(k): tuple(p.strip() for p in (v if isinstance(v, list) else str(v).split(",")) if p.strip())
                for k, v in parsed.items()
            }
        return value

    @field_validator("notify_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("lead_webhook_urls")
    @classmethod
    def _destinations_are_https(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            _check_destination(url)
        return value

    @field_validator("slack_webhook_url", "teams_webhook_url")
    @classmethod
    def _chat_is_https(cls, value: str) -> str:
        if value and not value.startswith(KEY_VAULT_REFERENCE):
            _check_destination(value)
        return value

    @field_validator("lead_webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str) -> str:
        if value and not value.startswith(KEY_VAULT_REFERENCE):
            signing_key(value)
        return value

    @field_validator("delivery_retry_seconds")
    @classmethod
    def _positive_delays(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay <= 0 or delay > 7 * 24 * 3600 for delay in value):
            raise ValueError("each delay must be more than 0 and at most 7 days (the queue's longest delay)")
        return value

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> Settings:
        """Outbound webhooks are always signed: the secret is an app setting or in Key Vault."""
        if self.lead_webhook_urls and not (self.lead_webhook_secret or self.key_vault_url):
            raise ValueError("LEAD_WEBHOOK_SECRET is required when LEAD_WEBHOOK_URLS is set")
        return self

    @model_validator(mode="before")
    @classmethod
    def _page_tokens(cls, values: object) -> object:
        """Collect every `FACEBOOK_PAGE_TOKEN_<page id>` into `facebook_page_tokens` (page id → token)."""
        if isinstance(values, dict):
            values = {k: v for k, v in values.items() if k != PAGE_TOKEN_TEMPLATE}  # the sample's placeholder
            tokens = {
                key.removeprefix(PAGE_TOKEN_PREFIX): str(value)
                for key, value in values.items()
                if isinstance(key, str)
                and key.startswith(PAGE_TOKEN_PREFIX)
                and key[len(PAGE_TOKEN_PREFIX) :].isdigit()
            }
            if tokens:
                values = {**values, "facebook_page_tokens": tokens}
        return values

    @field_validator("field_map", mode="before")
    @classmethod
    def _parse_field_map(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return {}
            parsed = json.loads(value)
            if not isinstance(parsed, dict) or not all(isinstance(v, str) and v for v in parsed.values()):
                raise ValueError('must be a JSON object of question key → field name, like {"budget?": "budget"}')
            return {str(k): v for k, v in parsed.items()}
        return value

    @field_validator(
        "facebook_page_ids",
        "facebook_forms_include",
        "facebook_forms_exclude",
        "lead_webhook_urls",
        "delivery_retry_seconds",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("facebook_graph_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _storage_configured(self) -> Settings:
        """The host's storage: a connection string, or identity-based account settings."""
        if self.storage is None:
            raise ValueError("AzureWebJobsStorage (or AzureWebJobsStorage__accountName) is required")
        return self

    @property
    def storage(self) -> StorageTarget | None:
        """Where the queues and tables are, as the Functions host reads `AzureWebJobsStorage`."""
        return storage_from_settings(
            {
                "AzureWebJobsStorage": self.azure_webjobs_storage,
                "AzureWebJobsStorage__accountName": self.storage_account_name,
                "AzureWebJobsStorage__queueServiceUri": self.storage_queue_uri,
                "AzureWebJobsStorage__tableServiceUri": self.storage_table_uri,
                "AzureWebJobsStorage__clientId": self.storage_client_id,
            }
        )

    @model_validator(mode="after")
    def _sql_configured(self) -> Settings:
        """Azure SQL needs a connection string, or a server and database for the managed identity."""
        if (
            self.store_backend == "mssql"
            and not self.sql_connection_string
            and not (self.sql_server and self.sql_database)
        ):
            raise ValueError("STORE_BACKEND=mssql needs SQL_CONNECTION_STRING, or SQL_SERVER and SQL_DATABASE")
        return self

    @model_validator(mode="after")
    def _email_configured(self) -> Settings:
        """A chosen sender needs its address, recipients and connection."""
        if self.email_sender == "none":
            return self
        if not self.email_from:
            raise ValueError("EMAIL_FROM is required when EMAIL_SENDER is set")
        if not self.email_to and not self.email_routes:
            raise ValueError("EMAIL_TO (or EMAIL_ROUTES) is required when EMAIL_SENDER is set")
        if self.email_sender == "smtp" and not self.smtp_host:
            raise ValueError("SMTP_HOST is required when EMAIL_SENDER=smtp")
        if self.email_sender == "acs" and not (self.acs_connection_string or self.acs_endpoint or self.key_vault_url):
            raise ValueError("ACS_CONNECTION_STRING or ACS_ENDPOINT is required when EMAIL_SENDER=acs")
        return self

    @model_validator(mode="after")
    def _requeue_within_window(self) -> Settings:
        """A lead the poller declined to queue again must still be in the window when it may be queued again."""
        again_by = self.poll_requeue_after_seconds + self.reconcile_every_minutes * 60
        if again_by >= self.reconcile_window_hours * 3600:
            raise ValueError(
                "POLL_REQUEUE_AFTER_SECONDS plus RECONCILE_EVERY_MINUTES must be shorter than RECONCILE_WINDOW_HOURS"
            )
        return self

    @model_validator(mode="after")
    def _stuck_outlasts_the_longest_send(self) -> Settings:
        """A send still in progress must never count as stuck (and be taken over and sent again)."""
        longest = self.longest_send_seconds
        if longest is not None and self.notify_stuck_seconds <= longest:
            raise ValueError(
                f"NOTIFY_STUCK_SECONDS ({self.notify_stuck_seconds:g}) must be longer than the longest"
                f" {self.email_sender} send ({longest:g} s with EMAIL_TIMEOUT_SECONDS={self.email_timeout_seconds:g})"
            )
        return self

    @property
    def acs_poll_timeout_seconds(self) -> float:
        """How long the ACS sender polls for a send's outcome: four times EMAIL_TIMEOUT_SECONDS."""
        return self.email_timeout_seconds * 4

    @property
    def longest_send_seconds(self) -> float | None:
        """The longest one send can take with the configured sender; None without a sender.

        ACS: the send and its repeats, then polling. SMTP: EMAIL_TIMEOUT_SECONDS, which bounds each
        reply of the session (smtplib has no deadline for the whole session).
        """
        if self.email_sender == "acs":
            from shared.notify.acs import longest_send_seconds

            return longest_send_seconds(self.acs_poll_timeout_seconds)
        if self.email_sender == "smtp":
            return self.email_timeout_seconds
        return None

    @model_validator(mode="after")
    def _secrets_somewhere(self) -> Settings:
        """Without Key Vault, the three Meta secrets must be app settings."""
        if not self.key_vault_url:
            for name in ("facebook_app_secret", "facebook_verify_token", "facebook_access_token"):
                if not getattr(self, name):
                    raise ValueError(f"{type(self).model_fields[name].alias} is required when KEY_VAULT_URL is not set")
        return self


def _check_destination(url: str) -> None:
    """HTTPS, or plain HTTP to this machine (local receivers); no credentials in the URL's user part."""
    parts = urlsplit(url)
    local = parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ValueError(f"{parts.scheme or 'a URL without scheme'}://{parts.hostname or ''}…: must be https://")
    if not parts.hostname or parts.username or parts.password:
        raise ValueError("must be https://host/path, without a user or password in it")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: `whsec_` + base64 of 24 to 64 random bytes."""
    if not secret.startswith("whsec_"):
        raise ValueError("must start with whsec_ (Standard Webhooks), followed by base64")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("must hold 24 to 64 random bytes (base64 after whsec_)")
    return key


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `environ` (the process environment by default); fail on the first bad one."""
    try:
        return Settings.model_validate(dict(os.environ if environ is None else environ))
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:
            raise SettingsError(f"settings: {first['msg'].removeprefix('Value error, ')}") from None
        field = str(first["loc"][0])
        name = Settings.model_fields[field].alias if field in Settings.model_fields else field
        kind = "missing" if first["type"] == "missing" else "malformed"
        raise SettingsError(f"setting {name} is {kind}: {first['msg']}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read on first use (never at import time)."""
    return load_settings()

"""The composition root: the process-wide parts, built lazily from the settings on first use.

It belongs to the app, next to `function_app.py`: the blueprints in `functions/` ask `get_services()`
for what a trigger needs and hand it to `shared/` as arguments; `shared/` never imports this module.
Nothing is built at import time. Each part is built when first asked for, so the webhook never waits
on the database and a database that is down at start-up is retried on the next use instead of
failing the process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from zoneinfo import ZoneInfo

from shared.deliver.consumer import enqueue_lead_deliveries
from shared.deliver.deliver import DeliverDeps
from shared.deliver.destinations import Destinations, destinations_from
from shared.graph.client import GraphClient
from shared.graph.throttle import ThrottleGate
from shared.ingest.pipeline import IngestDeps
from shared.logs import get_logger
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.messaging.sweep import SweepReport, sweep_poison_queues
from shared.models.forms import ChosenForms
from shared.monitoring.token_state import IntegrationMonitor
from shared.monitoring.watch import WatchReport, watch
from shared.notify.base import EmailSender
from shared.notify.digest import render_daily_digest
from shared.notify.outbox import enqueue_notification
from shared.notify.recipients import Recipients
from shared.notify.types import NotifyDeps, NotifyPolicy
from shared.ops.outbox import Outbox
from shared.poller.reconcile import PollerConfig, PollerDeps
from shared.secrets import SecretProvider
from shared.settings import Settings, get_settings
from shared.storage.connection import StorageTarget
from shared.storage.counters import TableCounters
from shared.storage.idle import IdleGate
from shared.storage.ratelimit import RateLimiter
from shared.storage.state import TableState
from shared.store import Store
from shared.store.backend import Backend

log = get_logger(__name__)

FORM_NAMES_SECONDS = 60.0  # how long a process keeps the form names it read (the poller refreshes them every 5 min)


class Services:
    """Settings plus the clients built from them; thread-safe lazy construction."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._forms: tuple[float, dict[str, object]] | None = None
        self._forms_lock = threading.Lock()

    @property
    def storage(self) -> StorageTarget:
        """The storage account of the queues and tables (validated by the settings)."""
        target = self.settings.storage
        assert target is not None  # guaranteed by Settings._storage_configured
        return target

    @cached_property
    def sender(self) -> QueueSender:
        return QueueSender(self.storage, self.settings.queue_timeout_seconds)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """100 requests per minute per client IP, counted in Table Storage (shared by every instance)."""
        settings = self.settings
        return RateLimiter(
            self.storage,
            limit=settings.rate_limit_per_minute,
            timeout_seconds=settings.queue_timeout_seconds,
        )

    @cached_property
    def counters(self) -> TableCounters:
        return TableCounters(self.storage, timeout_seconds=self.settings.queue_timeout_seconds)

    @cached_property
    def state(self) -> TableState:
        """Shared state in Table Storage (idle gate, Graph throttle): read without waking the database."""
        return TableState(self.storage, timeout_seconds=self.settings.queue_timeout_seconds)

    @cached_property
    def idle(self) -> IdleGate:
        """Idle mode (`IDLE_AFTER_MINUTES`): the timers leave SQL alone while nothing moves."""
        settings = self.settings
        return IdleGate(self.state, settings.idle_after_minutes * 60, settings.idle_sql_every_minutes * 60)

    @cached_property
    def secrets(self) -> SecretProvider:
        return SecretProvider(self.settings)

    @cached_property
    def monitor(self) -> IntegrationMonitor:
        return IntegrationMonitor(
            lambda: self.store, recheck_seconds=self.settings.token_recheck_seconds, scope=self.secrets.token_scope
        )

    @cached_property
    def throttle(self) -> ThrottleGate:
        return ThrottleGate(lambda: self.state)

    @cached_property
    def graph(self) -> GraphClient:
        settings = self.settings
        return GraphClient(
            settings.facebook_graph_url,
            settings.facebook_graph_version,
            token=self.secrets.access_token,
            timeout_seconds=settings.graph_timeout_seconds,
            gate=self.throttle,
            on_token_invalid=self.monitor.token_invalid,
            page_token=self.secrets.page_token,
        )

    @property
    def store(self) -> Store:
        """The store; its schema is migrated on first use, so building it never touches the database.

        A database that is down surfaces as `StoreUnavailable` from the operation that needed it,
        where the pipeline classifies it (retry later), never while wiring.
        """
        with self._store_lock:
            if self._store is None:
                self._store = Store(self._backend(), migrate_on_first_use=True, routing=self.destinations.routing)
            return self._store

    def _backend(self) -> Backend:
        """SQLite locally; Azure SQL (pyodbc, imported only here) when `STORE_BACKEND=mssql`."""
        settings = self.settings
        if settings.store_backend == "mssql":
            from shared.store.mssql import backend_from_settings

            return backend_from_settings(
                settings.sql_connection_string,
                settings.sql_server,
                settings.sql_database,
                settings.azure_client_id,
                settings.sql_pool_size,
                settings.store_timeout_seconds,
            )
        from shared.store.sqlite import SqliteBackend

        return SqliteBackend(settings.sqlite_path, settings.store_timeout_seconds)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The processors' own retries: a growing delay, `INGEST_MAX_ATTEMPTS` in all (operator fixes wait)."""
        settings = self.settings
        return RetryPolicy(
            settings.ingest_max_attempts,
            settings.retry_base_seconds,
            settings.retry_max_seconds,
            settings.paused_retry_seconds,
        )

    @cached_property
    def destinations(self) -> Destinations:
        """Webhooks, Slack, Teams and the Conversions API, as the settings configure them."""
        return destinations_from(self.settings, self.secrets.get)

    def deliver_deps(self) -> DeliverDeps:
        """What one delivery needs: the destinations, the ladder, the signing secret, the Graph client for Meta."""
        settings = self.settings
        return DeliverDeps(
            store=self.store,
            queues=self.sender,
            destinations=self.destinations,
            policy=self.retry_policy,
            ladder=settings.delivery_retry_seconds,
            send_events=self.send_conversion_events,
            webhook_secret=lambda: self.secrets.get("LEAD_WEBHOOK_SECRET"),
            form_name=self.form_name,
            field_map=settings.field_map,
            timeout=settings.delivery_timeout_seconds,
        )

    def send_conversion_events(self, dataset_id: str, events: list[dict[str, object]]) -> None:
        """Meta's Conversions API: `POST /{dataset_id}/events`, the events in the form body."""
        self.graph.request("POST", f"{dataset_id}/events", form={"data": json.dumps(events)})

    def ingest_deps(self) -> IngestDeps:
        return IngestDeps(
            store=self.store,
            fetch_lead=self.graph.fetch_lead,
            sender=self.sender,
            policy=self.retry_policy,
            monitor=self.monitor,
            # The instant email of a lead just stored (its outbox row is already committed).
            announce=partial(enqueue_notification, self.sender, self.store, "lead") if self.emails_sent else None,
            # The deliveries its row got in the same transaction (webhooks, chats), queued right after.
            deliver=partial(enqueue_lead_deliveries, self.sender, self.store)
            if self.destinations.routing.lead
            else None,
            form_chosen=ChosenForms.of(self.settings.facebook_forms_include, self.settings.facebook_forms_exclude),
        )

    @property
    def emails_sent(self) -> bool:
        """False with `EMAIL_SENDER=none`: leads are stored and nothing is emailed."""
        return self.settings.email_sender != "none"

    def outbox(self) -> Outbox:
        """What the outbox flush and the daily digest timers work on."""
        delivering = any(
            (self.destinations.routing.lead, self.destinations.routing.alert, self.destinations.routing.stage)
        )
        return Outbox(self.store, self.sender, enabled=self.emails_sent, idle=self.idle, delivering=delivering)

    @cached_property
    def email_sender(self) -> EmailSender:
        """The configured sender (SMTP or Azure Communication Services); secrets through the provider."""
        settings = self.settings
        if settings.email_sender == "acs":
            from shared.notify.acs import AcsSender

            return AcsSender(
                settings.email_from,
                connection_string=self.secrets.get("ACS_CONNECTION_STRING"),
                endpoint=settings.acs_endpoint,
                poll_timeout=settings.acs_poll_timeout_seconds,
            )
        from shared.notify.smtp import SmtpSender

        return SmtpSender(
            settings.smtp_host,
            settings.smtp_port,
            username=settings.smtp_username,
            password=self.secrets.get("SMTP_PASSWORD"),
            starttls=settings.smtp_starttls,
            timeout=settings.email_timeout_seconds,
            sender=settings.email_from,
        )

    def form_name(self, form_id: str) -> str | None:
        """A form's name as the poller last saw it (None until then).

        The names are read from the store at most once per `FORM_NAMES_SECONDS` per process, not once
        per lead rendered: a renamed form shows in emails within a minute of the poller seeing it.
        """
        with self._forms_lock:
            now = self._clock()
            if self._forms is None or now - self._forms[0] >= FORM_NAMES_SECONDS:
                self._forms = (now, self.store.coordination.get_state("forms") or {})
            forms = self._forms[1]
        name = forms.get(form_id)
        return str(name) if name else None

    def notify_deps(self) -> NotifyDeps:
        settings = self.settings
        tz = ZoneInfo(settings.notify_timezone)
        return NotifyDeps(
            store=self.store,
            sender=self.email_sender,
            queues=self.sender,
            recipients=Recipients(
                default=settings.email_to,
                routes=settings.email_routes,
                digest=settings.digest_to,
                alerts=settings.alert_email_to,
            ),
            tz=tz,
            policy=NotifyPolicy(
                per_minute=settings.email_max_per_minute,
                per_hour=settings.email_max_per_hour,
                max_group=settings.email_max_leads_per_email,
                max_attempts=settings.notify_max_attempts,
                retry_base_seconds=settings.notify_retry_base_seconds,
                retry_max_seconds=settings.notify_retry_max_seconds,
            ),
            form_name=self.form_name,
            stuck_after=timedelta(seconds=settings.notify_stuck_seconds),
            field_map=settings.field_map,
            build_digest=lambda key: render_daily_digest(self.store, key, tz, self.form_name),
        )

    def poller_deps(self) -> PollerDeps:
        settings = self.settings
        config = PollerConfig(
            page_ids=settings.facebook_page_ids,
            app_id=settings.facebook_app_id,
            overlap_seconds=settings.poll_overlap_seconds,
            grace_seconds=settings.poll_grace_seconds,
            requeue_after_seconds=settings.poll_requeue_after_seconds,
            window_hours=settings.reconcile_window_hours,
            full_every_seconds=settings.reconcile_every_minutes * 60,
            first_run_hours=settings.poll_first_run_hours,
            max_backfill_days=settings.poll_max_backfill_days,
            forms_include=settings.facebook_forms_include,
            forms_exclude=settings.facebook_forms_exclude,
        )
        return PollerDeps(
            graph=self.graph,
            store=self.store,
            sender=self.sender,
            config=config,
            access_token=self.secrets.access_token,
            app_token=self.secrets.app_token,
            monitor=self.monitor,
            page_token=self.secrets.page_token,
        )

    def sweep(self, purge: bool = True) -> SweepReport:
        """Move poison-queue messages into failed_events and purge expired rows (when `purge`)."""
        settings = self.settings
        return sweep_poison_queues(
            self.storage,
            self.store,
            retention_days=settings.failed_events_retention_days,
            timeout_seconds=settings.queue_timeout_seconds,
            purge=purge,
        )

    def watch(self) -> WatchReport:
        """Open or resolve the `dead_letters_growing`, `dead_letters_unattended` and `silence` incidents."""
        settings = self.settings
        return watch(
            self.store,
            datetime.now(UTC),
            settings.alert_dead_letters_threshold,
            settings.silence_hours,
            settings.silence_min_expected,
            unattended_days=max(1, settings.failed_events_retention_days - 5),
        )

    def count_ignored(self, kind: str, n: int) -> None:
        self.counters.increment(f"webhook_ignored:{kind}", n)


_services: Services | None = None
_lock = threading.Lock()


def get_services() -> Services:
    """The process's `Services` (raises `SettingsError` naming a bad setting); logs "agent ready" once."""
    global _services
    with _lock:
        if _services is None:
            settings = get_settings()
            _services = Services(settings)
            log.info(
                "agent ready",
                extra={
                    "stage": "startup",
                    "pages": len(settings.facebook_page_ids),
                    "store_backend": settings.store_backend,
                    "email_sender": settings.email_sender,
                    "graph_version": settings.facebook_graph_version,
                },
            )
        return _services


def reset_services() -> None:
    """Forget the cached settings and clients (tests, or after a settings change)."""
    global _services
    with _lock:
        _services = None
    get_settings.cache_clear()

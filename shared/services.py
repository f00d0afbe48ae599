"""The process-wide parts, built lazily from the settings on first use (never at import time).

Each part is built when first asked for, so the webhook never waits on the database and a
database that is down at start-up is retried on the next use instead of failing the process.
"""

from __future__ import annotations

import threading
from functools import cached_property

from shared.counters import TableCounters
from shared.graph.client import GraphClient
from shared.ingest.pipeline import IngestDeps, IngestPolicy
from shared.queues.sender import QueueSender
from shared.secrets import SecretProvider
from shared.settings import Settings, get_settings
from shared.store.base import LeadStore


class Services:
    """Settings plus the clients built from them; thread-safe lazy construction."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: LeadStore | None = None
        self._store_lock = threading.Lock()

    @cached_property
    def sender(self) -> QueueSender:
        return QueueSender(self.settings.azure_webjobs_storage, self.settings.queue_timeout_seconds)

    @cached_property
    def counters(self) -> TableCounters:
        return TableCounters(self.settings.azure_webjobs_storage, timeout_seconds=self.settings.queue_timeout_seconds)

    @cached_property
    def secrets(self) -> SecretProvider:
        return SecretProvider(self.settings)

    @cached_property
    def graph(self) -> GraphClient:
        settings = self.settings
        return GraphClient(
            settings.facebook_graph_url,
            settings.facebook_graph_version,
            token=self.secrets.access_token,
            timeout_seconds=settings.graph_timeout_seconds,
        )

    @property
    def store(self) -> LeadStore:
        """The migrated store; raises `StoreUnavailable` (and retries next time) if it cannot open."""
        with self._store_lock:
            if self._store is None:
                from shared.store.sqlite import SqliteBackend

                store = LeadStore(SqliteBackend(self.settings.sqlite_path, self.settings.store_timeout_seconds))
                store.migrate()
                self._store = store
            return self._store

    def ingest_deps(self) -> IngestDeps:
        settings = self.settings
        return IngestDeps(
            store=self.store,
            fetch_lead=self.graph.fetch_lead,
            sender=self.sender,
            policy=IngestPolicy(settings.ingest_max_attempts, settings.retry_base_seconds, settings.retry_max_seconds),
        )

    def count_ignored(self, kind: str, n: int) -> None:
        self.counters.increment(f"webhook_ignored:{kind}", n)


_services: Services | None = None
_lock = threading.Lock()


def get_services() -> Services:
    """The process's `Services` (raises `SettingsError` naming a bad setting)."""
    global _services
    with _lock:
        if _services is None:
            _services = Services(get_settings())
        return _services


def reset_services() -> None:
    """Forget the cached settings and clients (tests, or after a settings change)."""
    global _services
    with _lock:
        _services = None
    get_settings.cache_clear()

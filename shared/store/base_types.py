"""The types a storage backend deals in: a DB-API cursor, migrations, statements, the backend itself."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


class Cursor(Protocol):
    """The part of a DB-API cursor the flow uses (sqlite3 and pyodbc both qualify; qmark params)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Migration:
    """One schema version: statements applied together, in order, in one transaction."""

    version: int
    statements: tuple[str, ...]


@dataclass(frozen=True)
class Statements:
    """Every SQL statement the flow runs; `?` placeholders in the order the flow passes values."""

    ensure_migrations_table: str
    current_version: str
    record_version: str
    insert_lead: str
    insert_raw_lead: str
    insert_audit: str
    lead_exists: str
    last_leads: str
    insert_failed_event: str
    ping: str
    get_state: str
    put_state: str
    acquire_lease: str
    release_lease: str
    existing_lead_ids: str
    insert_poll_run: str
    list_failed_events: str
    get_failed_event: str
    set_failed_event_status: str
    purge_failed_events: str
    lead_message_fields: str
    latest_failed_event_for_lead: str
    reopen_incident: str
    insert_incident: str
    resolve_incident: str
    list_incidents: str
    insert_outbox: str
    mark_outbox: str
    mark_outbox_queued: str
    begin_send: str
    take_over_stuck: str
    outbox_due: str
    outbox_payload: str
    reserve_email_slot: str
    release_email_slot: str
    recent_email_slots: str
    notification_status: str
    insert_notification_claim: str
    reclaim_failed_notification: str
    release_notification_claim: str
    mark_claim_sent: str
    mark_notification_failed: str
    pending_lead_notifications: str
    count_pending_lead_notifications: str
    recently_polled: str
    forget_polled: str
    insert_polled: str
    prune_polled: str
    lead_summaries: str
    leads_by_source_between: str
    leads_by_form_between: str
    leads_by_hour_between: str
    count_leads_between: str
    count_audit_between: str
    count_failed_by_status: str
    poll_runs_between: str
    notifications_sent_between: str
    bump_counter: str
    insert_counter: str
    read_counters: str
    last_lead_times: str
    leads_by_hour_and_source: str
    leads_by_form_and_source: str
    count_failed_since: str
    notification_figures: str
    notification_latencies: str
    count_outbox_pending: str
    count_notifications_failed: str
    erase_lead: str
    erase_raw_lead: str
    erase_failed_payloads: str
    insert_erasure: str


class StoreBackend(ABC):
    """What a database must supply: transactions, its statements, and its error vocabulary.

    Both context managers raise `StoreUnavailable` when the database cannot be reached.
    """

    statements: Statements
    migrations: tuple[Migration, ...]

    @abstractmethod
    def write(self) -> AbstractContextManager[Cursor]:
        """A write transaction: commits when the block ends normally, rolls back otherwise."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads."""

    @abstractmethod
    def is_duplicate_key(self, exc: BaseException) -> bool:
        """Whether `exc` is a unique-constraint violation."""

    @abstractmethod
    def to_db_time(self, value: datetime) -> Any:
        """A UTC datetime as the database stores it."""

    @abstractmethod
    def from_db_time(self, value: Any) -> datetime:
        """A stored time back as an aware UTC datetime."""

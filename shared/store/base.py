"""The storage flow, independent of the database: backends supply transactions and statements.

Exactly-once is decided by one write: the insert into `leads`, guarded by the unique constraint
on `facebook_lead_id`. "Already there" is a normal, typed outcome (`AlreadyStored`), never an
exception that escapes. The raw event, the raw Graph response, the lead row and its audit row
commit in one transaction or not at all.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.store.base_types import Cursor, StoreBackend
from shared.store.coordination import CoordinationStore, PollRun
from shared.store.failed_events import FailedEvent, FailedEventStore
from shared.store.notifications import NotificationStore
from shared.store.stats import OpsStatsStore
from shared.store.timefmt import iso_utc


@dataclass(frozen=True)
class Stored:
    """The lead was new and is now committed."""

    facebook_lead_id: str


@dataclass(frozen=True)
class AlreadyStored:
    """The lead was stored before; nothing was written but the duplicate's audit row."""

    facebook_lead_id: str


StoreOutcome = Stored | AlreadyStored


LAST_LEAD_COLUMNS = (
    "facebook_lead_id",
    "page_id",
    "form_id",
    "ad_id",
    "created_time",
    "source",
    "email",
    "full_name",
    "phone_number",
    "fields_json",
)


class LeadStore(NotificationStore, OpsStatsStore, FailedEventStore, CoordinationStore):
    """The agent's storage, over any `StoreBackend`."""

    def __init__(self, backend: StoreBackend, migrate_on_first_use: bool = False) -> None:
        self.backend = backend
        self._statements = backend.statements
        self._auto_migrate = migrate_on_first_use
        self._migrated = False
        self._migrate_lock = threading.Lock()

    def _ensure_schema(self) -> None:
        """Apply migrations before the first use (retried on the next use if the database is down)."""
        if self._auto_migrate and not self._migrated:
            with self._migrate_lock:
                if not self._migrated:
                    self.migrate()

    def _write(self) -> AbstractContextManager[Cursor]:
        self._ensure_schema()
        return self.backend.write()

    def _read(self) -> AbstractContextManager[Cursor]:
        self._ensure_schema()
        return self.backend.read()

    def migrate(self) -> int:
        """Apply every migration not yet applied, each in its own transaction; return the version.

        Safe when several processes start at once: each migration re-checks the version inside
        its write transaction.
        """
        s = self._statements
        with self.backend.write() as cur:
            cur.execute(s.ensure_migrations_table)
        version = 0
        for migration in self.backend.migrations:
            with self.backend.write() as cur:
                cur.execute(s.current_version)
                row = cur.fetchone()
                version = int(row[0] or 0) if row else 0
                if migration.version <= version:
                    continue
                for statement in migration.statements:
                    cur.execute(statement)
                cur.execute(s.record_version, (migration.version, self.backend.to_db_time(datetime.now(UTC))))
                version = migration.version
        self._migrated = True
        return version

    def schema_version(self) -> int:
        with self._read() as cur:
            cur.execute(self._statements.current_version)
            row = cur.fetchone()
            return int(row[0] or 0) if row else 0

    def has_lead(self, facebook_lead_id: str) -> bool:
        """Whether the lead is stored (a hint to skip a Graph call; the insert still decides)."""
        with self._read() as cur:
            cur.execute(self._statements.lead_exists, (facebook_lead_id, facebook_lead_id))
            return cur.fetchone() is not None

    def store_lead(
        self,
        lead: Any,
        raw_event: dict[str, Any] | None,
        raw_graph: dict[str, Any],
        audit_detail: dict[str, Any] | None = None,
        notify: bool = False,
    ) -> StoreOutcome:
        """Store a `NormalisedLead` with its raw event, raw Graph answer and an audit row, atomically.

        At most one row per `facebook_lead_id`, whatever the concurrency: a second attempt
        returns `AlreadyStored` and records a `duplicate` audit row instead.
        """
        now = self.backend.to_db_time(datetime.now(UTC))
        values = (
            lead.facebook_lead_id,
            lead.page_id,
            lead.form_id,
            lead.ad_id,
            lead.ad_name,
            lead.adset_id,
            lead.adset_name,
            lead.campaign_id,
            lead.campaign_name,
            self.backend.to_db_time(lead.created_time),
            None if lead.is_organic is None else int(lead.is_organic),
            lead.platform,
            lead.source,
            lead.email,
            lead.full_name,
            lead.phone_number,
            json.dumps(lead.fields, ensure_ascii=False),
            json.dumps(lead.disclaimers, ensure_ascii=False),
            now,
        )
        s = self._statements
        duplicate = False
        with self._write() as cur:
            try:
                cur.execute(s.insert_lead, values)
            except Exception as exc:
                if not self.backend.is_duplicate_key(exc):
                    raise
                duplicate = True
            if not duplicate:
                cur.execute(
                    s.insert_raw_lead,
                    (
                        lead.facebook_lead_id,
                        lead.source,
                        None if raw_event is None else json.dumps(raw_event, ensure_ascii=False),
                        json.dumps(raw_graph, ensure_ascii=False),
                        now,
                    ),
                )
                self._audit(cur, "stored", lead.facebook_lead_id, lead.source, audit_detail, now)
                self._bump(cur, f"source:{lead.source}")
                if notify:  # the outbox row commits with the lead: no lead is left unannounced
                    cur.execute(s.insert_outbox, ("lead", lead.facebook_lead_id, None, now))
        if duplicate:
            self.record_duplicate(lead.facebook_lead_id, lead.source, audit_detail)
            return AlreadyStored(lead.facebook_lead_id)
        return Stored(lead.facebook_lead_id)

    def record_duplicate(self, facebook_lead_id: str, source: str, detail: dict[str, Any] | None = None) -> None:
        """Audit a delivery of a lead that is already stored (counted as `duplicates_ignored`)."""
        now = self.backend.to_db_time(datetime.now(UTC))
        with self._write() as cur:
            self._audit(cur, "duplicate", facebook_lead_id, source, detail, now)
            self._bump(cur, "duplicates")

    def existing_lead_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are stored or erased (unique-index lookups, 500 at a time)."""
        return self._ids_found(self._statements.existing_lead_ids, ids, lambda chunk: tuple(chunk) * 2)

    def lead_routing(self, facebook_lead_id: str) -> dict[str, str | None] | None:
        """The page, form and ad ids of a stored lead (to re-queue it), or None."""
        with self._read() as cur:
            cur.execute(self._statements.lead_message_fields, (facebook_lead_id,))
            row = cur.fetchone()
        return None if row is None else {"page_id": row[0], "form_id": row[1], "ad_id": row[2]}

    def audit(self, action: str, facebook_lead_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Write one audit row (ids and reasons only, never lead data)."""
        now = self.backend.to_db_time(datetime.now(UTC))
        with self._write() as cur:
            self._audit(cur, action, facebook_lead_id, None, detail, now)

    def last_leads(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` leads (by creation time), in the ops shape of DESIGN.md."""
        with self._read() as cur:
            cur.execute(self._statements.last_leads, (limit,))
            rows = cur.fetchall()
        leads = []
        for row in rows:
            record = dict(zip(LAST_LEAD_COLUMNS, row, strict=True))
            record["created_time"] = iso_utc(self.backend.from_db_time(record["created_time"]))
            record["fields"] = json.loads(record.pop("fields_json"))
            leads.append(record)
        return leads

    def ping(self) -> float:
        """Run a trivial query; return its latency in milliseconds (raises `StoreUnavailable`)."""
        started = time.perf_counter()
        with self._read() as cur:
            cur.execute(self._statements.ping)
            cur.fetchone()
        return (time.perf_counter() - started) * 1000

    def _bump(self, cur: Cursor, name: str) -> None:
        """Add one to a running counter in the same transaction (stats stay O(1) at a million leads)."""
        cur.execute(self._statements.bump_counter, (name,))
        if int(getattr(cur, "rowcount", 0) or 0) == 0:
            try:
                cur.execute(self._statements.insert_counter, (name,))
            except Exception as exc:
                if not self.backend.is_duplicate_key(exc):
                    raise
                cur.execute(self._statements.bump_counter, (name,))

    def erase_lead(self, facebook_lead_id: str) -> dict[str, int] | None:
        """Remove one person's data everywhere, keep a tombstone and an audit row without PII.

        The lead and raw rows are deleted, dead-letter payloads of that lead are emptied, and the id
        is kept in `erased_leads` so a late webhook or the poller never stores the lead again.
        Returns the rows changed per table, or None when the id is unknown.
        """
        s = self._statements
        now = self.backend.to_db_time(datetime.now(UTC))
        changed: dict[str, int] = {}
        with self._write() as cur:
            for table, statement in (
                ("leads", s.erase_lead),
                ("raw_leads", s.erase_raw_lead),
                ("failed_events", s.erase_failed_payloads),
            ):
                cur.execute(statement, (facebook_lead_id,))
                changed[table] = max(int(getattr(cur, "rowcount", 0) or 0), 0)
            if changed["leads"] == 0 and changed["raw_leads"] == 0 and changed["failed_events"] == 0:
                return None
            try:
                cur.execute(s.insert_erasure, (facebook_lead_id, now))
            except Exception as exc:
                if not self.backend.is_duplicate_key(exc):
                    raise
            self._audit(cur, "erased", facebook_lead_id, None, {"rows": changed}, now)
        return changed

    def _audit(
        self, cur: Cursor, action: str, lead_id: str | None, source: str | None, detail: dict[str, Any] | None, at: Any
    ) -> None:
        cur.execute(
            self._statements.insert_audit,
            (at, action, lead_id, source, None if detail is None else json.dumps(detail, ensure_ascii=False)),
        )


__all__ = ["AlreadyStored", "FailedEvent", "LeadStore", "PollRun", "StoreOutcome", "Stored", "iso_utc"]

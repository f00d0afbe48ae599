"""Dead letters in `failed_events`: recorded once per dead-letter id, listed, re-marked, purged."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.store.audit import write_audit
from shared.store.backend import DuplicateKey, Sql, columns, fit_text, iso_utc
from shared.store.database import Database
from shared.store.leads import ids_found
from shared.store.schema import width


@dataclass(frozen=True)
class FailedEvent:
    """A dead letter to keep (no PII: ids, reason, the queue payload)."""

    queue: str
    stage: str
    error: str
    attempts: int
    payload: str
    facebook_lead_id: str | None = None
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    dead_letter_id: str | None = None


@dataclass(frozen=True)
class FailedEventRow:
    """A dead letter as `failed_events` keeps it."""

    id: int
    queue: str
    stage: str
    facebook_lead_id: str | None
    error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime
    status: str
    payload: str | None

    def as_json(self, with_payload: bool = False) -> dict[str, Any]:
        """The ops shape of `GET /api/ops/failed-events` (payload only when asked)."""
        record: dict[str, Any] = {
            "id": self.id,
            "queue": self.queue,
            "stage": self.stage,
            "facebook_lead_id": self.facebook_lead_id,
            "error": self.error,
            "attempts": self.attempts,
            "first_failed_at": iso_utc(self.first_failed_at),
            "last_failed_at": iso_utc(self.last_failed_at),
            "status": self.status,
        }
        if with_payload:
            record["payload"] = self.payload
        return record


COLUMNS = columns(FailedEventRow)
# The payload of an erased lead is not kept (a poison copy swept after the erasure, say).
INSERT = (
    "INSERT INTO failed_events (queue, stage, facebook_lead_id, error, attempts, payload, first_failed_at,"
    " last_failed_at, dead_letter_id) SELECT ?, ?, ?, ?, ?,"
    " CASE WHEN EXISTS (SELECT 1 FROM erased_leads WHERE facebook_lead_id = ?) THEN NULL ELSE ? END, ?, ?, ?"
)
LIST = Sql(
    f"SELECT {COLUMNS} FROM failed_events WHERE status = ? ORDER BY first_failed_at DESC, id DESC LIMIT ?",  # noqa: S608
    mssql=f"SELECT {COLUMNS} FROM failed_events WHERE status = ?"  # noqa: S608
    " ORDER BY first_failed_at DESC, id DESC OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY",
)
GET = f"SELECT {COLUMNS} FROM failed_events WHERE id = ?"  # noqa: S608
LATEST_FOR_LEAD = Sql(
    f"SELECT {COLUMNS} FROM failed_events WHERE facebook_lead_id = ? ORDER BY id DESC LIMIT 1",  # noqa: S608
    mssql=f"SELECT TOP (1) {COLUMNS} FROM failed_events WHERE facebook_lead_id = ? ORDER BY id DESC",  # noqa: S608
)
# The lead ids whose newest dead letter has one of two statuses (one index seek per id).
HELD = (
    "SELECT f.facebook_lead_id FROM failed_events f WHERE f.facebook_lead_id IN ({params})"
    " AND f.status IN (?, ?) AND f.id = (SELECT MAX(g.id) FROM failed_events g"
    " WHERE g.facebook_lead_id = f.facebook_lead_id)"
)
SET_STATUS = "UPDATE failed_events SET status = ?, last_failed_at = ? WHERE id = ?"
PURGE = "DELETE FROM failed_events WHERE status IN ('reprocessed', 'resolved') AND first_failed_at < ?"


def without_answers(payload: str) -> str:
    """A JSON payload with any lead answers (`lead`, `field_data`) removed, at any depth; other text as is.

    A dead letter whose lead id is unknown cannot be found by an erasure, so it keeps no answers.
    """
    try:
        document = json.loads(payload)
    except ValueError:
        return payload
    return json.dumps(_strip(document), ensure_ascii=False)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in ("lead", "field_data")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


class FailedEventStore:
    """The dead-letter table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record_failed_event(self, event: FailedEvent) -> bool:
        """Keep a dead letter in `failed_events` (status `open`) and audit it; once per `dead_letter_id`.

        Returns False when that dead letter was already recorded (nothing written). Every text is
        cut to its column (a malformed message's id can be any length), so a dead letter is never refused.
        """

        def fit(column: str, value: str | None) -> str | None:
            return fit_text(value, width("failed_events", column))

        at = event.failed_at
        with self._db.write() as tx:
            try:
                tx.execute(
                    INSERT,
                    (
                        fit("queue", event.queue),
                        fit("stage", event.stage),
                        fit("facebook_lead_id", event.facebook_lead_id),
                        fit("error", event.error),
                        event.attempts,
                        event.facebook_lead_id,
                        event.payload if event.facebook_lead_id else without_answers(event.payload),
                        at,
                        at,
                        fit("dead_letter_id", event.dead_letter_id),
                    ),
                )
            except DuplicateKey:
                return False
            write_audit(tx, "dead_lettered", event.facebook_lead_id, None, {"stage": event.stage}, at)
        return True

    def list_failed_events(self, status: str = "open", limit: int = 100) -> list[FailedEventRow]:
        """Dead letters with `status`, newest first."""
        with self._db.read() as tx:
            return tx.all(FailedEventRow, LIST, (status, limit))

    def get_failed_event(self, event_id: int) -> FailedEventRow | None:
        """One dead letter, or None."""
        with self._db.read() as tx:
            return tx.one(FailedEventRow, GET, (event_id,))

    def latest_failed_event_for_lead(self, facebook_lead_id: str) -> FailedEventRow | None:
        """The newest dead letter of a lead, or None."""
        with self._db.read() as tx:
            return tx.one(FailedEventRow, LATEST_FOR_LEAD, (facebook_lead_id,))

    def held_lead_ids(self, ids: Sequence[str], statuses: tuple[str, str] = ("open", "resolved")) -> set[str]:
        """Which of `ids` have a newest dead letter in `statuses` (500 ids per statement)."""
        return ids_found(self._db, HELD, ids, lambda chunk: (*chunk, *statuses))

    def set_failed_event_status(self, event_id: int, status: str, detail: dict[str, Any] | None = None) -> None:
        """Mark a dead letter (`reprocessed`, `resolved` …) and audit the change."""
        now = datetime.now(UTC)
        with self._db.write() as tx:
            tx.execute(SET_STATUS, (status, now, event_id))
            write_audit(tx, f"failed_event_{status}", None, None, {"failed_event_id": event_id, **(detail or {})}, now)

    def purge_failed_events(self, older_than: datetime) -> int:
        """Delete settled dead letters (`reprocessed`, `resolved`) first failed before `older_than`; how many.

        An open dead letter is never purged: it waits for a person (the watcher alerts before it ages).
        """
        with self._db.write() as tx:
            return tx.execute(PURGE, (older_than,))

"""Dead letters in `failed_events`: recorded once per dead-letter id, listed, re-marked, purged."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.store.mixin import StoreMixin
from shared.store.timefmt import iso_utc


@dataclass(frozen=True)
class FailedEvent:
    """A dead letter as `failed_events` keeps it (no PII: ids, reason, the queue payload)."""

    queue: str
    stage: str
    error: str
    attempts: int
    payload: str
    facebook_lead_id: str | None = None
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    dead_letter_id: str | None = None


FAILED_EVENT_COLUMNS = (
    "id",
    "queue",
    "stage",
    "facebook_lead_id",
    "error",
    "attempts",
    "first_failed_at",
    "last_failed_at",
    "status",
    "payload",
)


class FailedEventStore(StoreMixin):
    """Mixed into `LeadStore`: the dead-letter table."""

    def record_failed_event(self, event: FailedEvent) -> bool:
        """Keep a dead letter in `failed_events` (status `open`) and audit it; once per `dead_letter_id`.

        Returns False when that dead letter was already recorded (nothing written).
        """
        at = self.backend.to_db_time(event.failed_at)
        with self._write() as cur:
            try:
                cur.execute(
                    self._statements.insert_failed_event,
                    (
                        event.queue,
                        event.stage,
                        event.facebook_lead_id,
                        event.error,
                        event.attempts,
                        event.payload,
                        at,
                        at,
                        event.dead_letter_id,
                    ),
                )
            except Exception as exc:
                if self.backend.is_duplicate_key(exc):
                    return False
                raise
            self._audit(cur, "dead_lettered", event.facebook_lead_id, None, {"stage": event.stage}, at)
        return True

    def list_failed_events(self, status: str = "open", limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters with `status`, newest first, in the ops shape (payload excluded)."""
        with self._read() as cur:
            cur.execute(self._statements.list_failed_events, (status, limit))
            rows = cur.fetchall()
        return [self._failed_event(row, with_payload=False) for row in rows]

    def get_failed_event(self, event_id: int) -> dict[str, Any] | None:
        """One dead letter with its payload, or None."""
        with self._read() as cur:
            cur.execute(self._statements.get_failed_event, (event_id,))
            row = cur.fetchone()
        return None if row is None else self._failed_event(row, with_payload=True)

    def latest_failed_event_for_lead(self, facebook_lead_id: str) -> dict[str, Any] | None:
        """The newest dead letter of a lead, with its payload, or None."""
        with self._read() as cur:
            cur.execute(self._statements.latest_failed_event_for_lead, (facebook_lead_id,))
            row = cur.fetchone()
        return None if row is None else self._failed_event(row, with_payload=True)

    def set_failed_event_status(self, event_id: int, status: str, detail: dict[str, Any] | None = None) -> None:
        """Mark a dead letter (`reprocessed`, `resolved` …) and audit the change."""
        now = self.backend.to_db_time(datetime.now(UTC))
        with self._write() as cur:
            cur.execute(self._statements.set_failed_event_status, (status, now, event_id))
            self._audit(cur, f"failed_event_{status}", None, None, {"failed_event_id": event_id, **(detail or {})}, now)

    def purge_failed_events(self, older_than: datetime) -> int:
        """Delete dead letters first failed before `older_than`; return how many."""
        with self._write() as cur:
            cur.execute(self._statements.purge_failed_events, (self.backend.to_db_time(older_than),))
            return max(int(getattr(cur, "rowcount", 0) or 0), 0)

    def _failed_event(self, row: Any, with_payload: bool) -> dict[str, Any]:
        record = dict(zip(FAILED_EVENT_COLUMNS, row, strict=True))
        for key in ("first_failed_at", "last_failed_at"):
            record[key] = iso_utc(self.backend.from_db_time(record[key]))
        if not with_payload:
            record.pop("payload")
        return record

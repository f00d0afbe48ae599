"""Counting queries for the digest, the watchers and the stats routes (indexed, no full scans of leads)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.store.base_types import Cursor, Statements, StoreBackend


@dataclass(frozen=True)
class PollFigures:
    runs: int
    missing_found: int
    enqueued: int
    errors: int


class StatsStore:
    """Mixed into `LeadStore`: read-only counts over time windows."""

    backend: StoreBackend
    _statements: Statements

    def _read(self) -> AbstractContextManager[Cursor]:  # provided by LeadStore
        raise RuntimeError("mixin used without LeadStore")

    def _grouped(self, sql: str, start: datetime, end: datetime) -> dict[str, int]:
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(sql, (t(start), t(end)))
            return {str(key): int(count) for key, count in cur.fetchall()}

    def leads_by_source(self, start: datetime, end: datetime) -> dict[str, int]:
        """Leads created in [start, end) per source (`webhook`, `polling`, `reprocess`)."""
        return self._grouped(self._statements.leads_by_source_between, start, end)

    def leads_by_form(self, start: datetime, end: datetime) -> dict[str, int]:
        """Leads created in [start, end) per form id."""
        return self._grouped(self._statements.leads_by_form_between, start, end)

    def leads_by_hour(self, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
        """Leads created per UTC hour in [start, end), every hour present (zero when none)."""
        counts = self._grouped(self._statements.leads_by_hour_between, start, end)
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        rows = []
        while hour < end:
            rows.append((hour, counts.get(hour.strftime("%Y-%m-%dT%H"), 0)))
            hour += timedelta(hours=1)
        return rows

    def count_leads(self, start: datetime, end: datetime) -> int:
        return self._count(self._statements.count_leads_between, start, end)

    def count_audit(self, action: str, start: datetime, end: datetime) -> int:
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(self._statements.count_audit_between, (action, t(start), t(end)))
            return int(cur.fetchone()[0])

    def count_failed_events(self, status: str = "open") -> int:
        with self._read() as cur:
            cur.execute(self._statements.count_failed_by_status, (status,))
            return int(cur.fetchone()[0])

    def poll_figures(self, start: datetime, end: datetime) -> PollFigures:
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(self._statements.poll_runs_between, (t(start), t(end)))
            runs, missing, enqueued, errors = cur.fetchone()
        return PollFigures(int(runs), int(missing), int(enqueued), int(errors))

    def count_notifications_sent(self, start: datetime, end: datetime) -> int:
        return self._count(self._statements.notifications_sent_between, start, end)

    def _count(self, sql: str, start: datetime, end: datetime) -> int:
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(sql, (t(start), t(end)))
            return int(cur.fetchone()[0])

"""Counting queries for the digest, the watchers and the stats routes (indexed, no full scans of leads)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.store.mixin import StoreMixin


@dataclass(frozen=True)
class PollFigures:
    runs: int
    missing_found: int
    enqueued: int
    errors: int


class StatsStore(StoreMixin):
    """Mixed into `LeadStore`: read-only counts over time windows."""

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


class OpsStatsStore(StatsStore):
    """The counts behind `/api/stats*`: running counters and indexed window queries."""

    def counters(self) -> dict[str, int]:
        """Running counters kept in the lead transactions (`source:<name>`, `duplicates`)."""
        with self._read() as cur:
            cur.execute(self._statements.read_counters)
            return {str(name): int(value) for name, value in cur.fetchall()}

    def last_lead_times(self) -> tuple[datetime | None, datetime | None]:
        """(newest `created_time`, newest `stored_at`) or Nones on an empty store."""
        with self._read() as cur:
            cur.execute(self._statements.last_lead_times)
            created, stored = cur.fetchone()
        convert = self.backend.from_db_time
        return (None if created is None else convert(created), None if stored is None else convert(stored))

    def leads_by_hour_and_source(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(self._statements.leads_by_hour_and_source, (t(start), t(end)))
            return [(str(hour), str(source), int(n)) for hour, source, n in cur.fetchall()]

    def leads_by_form_and_source(self, start: datetime, end: datetime) -> list[tuple[str | None, str, int]]:
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(self._statements.leads_by_form_and_source, (t(start), t(end)))
            return [(form, str(source), int(n)) for form, source, n in cur.fetchall()]

    def count_failed_since(self, start: datetime, end: datetime) -> int:
        return self._count(self._statements.count_failed_since, start, end)

    def notification_figures(self, start: datetime, end: datetime) -> tuple[int, int, int]:
        """(emails sent, leads announced, grouped emails) in the window."""
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(self._statements.notification_figures, (t(start), t(end)))
            emails, leads, grouped = cur.fetchone()
        return int(emails), int(leads), int(grouped)

    def notification_latencies(self, start: datetime, end: datetime) -> list[float]:
        """Seconds from a lead's commit to its email being accepted, for emails sent in the window."""
        t, back = self.backend.to_db_time, self.backend.from_db_time
        with self._read() as cur:
            cur.execute(self._statements.notification_latencies, (t(start), t(end)))
            rows = cur.fetchall()
        return [(back(sent) - back(stored)).total_seconds() for sent, stored in rows]

    def count_outbox_pending(self) -> int:
        with self._read() as cur:
            cur.execute(self._statements.count_outbox_pending)
            return int(cur.fetchone()[0])

    def count_notifications_failed(self) -> int:
        with self._read() as cur:
            cur.execute(self._statements.count_notifications_failed)
            return int(cur.fetchone()[0])

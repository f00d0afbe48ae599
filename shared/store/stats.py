"""Counting queries for the digest, the watchers and the stats routes (indexed, no full scans of leads)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.store.backend import Sql
from shared.store.database import Database


@dataclass(frozen=True)
class PollFigures:
    runs: int
    missing_found: int
    enqueued: int
    errors: int


@dataclass(frozen=True)
class NotificationFigures:
    emails: int
    leads: int
    grouped: int


@dataclass(frozen=True)
class _Count:
    key: str | None
    count: int


@dataclass(frozen=True)
class _HourSource:
    hour: str
    source: str
    count: int


@dataclass(frozen=True)
class _FormSource:
    form_id: str | None
    source: str
    count: int


@dataclass(frozen=True)
class _LastTimes:
    created: datetime | None
    stored: datetime | None


@dataclass(frozen=True)
class NotifiedLead:
    """A lead whose email was accepted: when Meta says it was created, when it was stored, when it was sent."""

    created_time: datetime
    stored_at: datetime
    sent_at: datetime


@dataclass(frozen=True)
class _Intake:
    webhook_received_at: datetime
    stored_at: datetime


# Window figures per lead read at most this many rows (the newest), so a long window stays an index range.
SAMPLE_LIMIT = 10_000


HOUR = Sql("substr(created_time, 1, 13)", mssql="CONVERT(CHAR(13), created_time, 126)")  # 'YYYY-MM-DDTHH'
WINDOW = "created_time >= ? AND created_time < ?"
BY_SOURCE = f"SELECT source, COUNT(*) FROM leads WHERE {WINDOW} GROUP BY source"  # noqa: S608
BY_FORM = f"SELECT form_id, COUNT(*) FROM leads WHERE {WINDOW} GROUP BY form_id"  # noqa: S608
BY_HOUR = Sql(
    *(f"SELECT {h}, COUNT(*) FROM leads WHERE {WINDOW} GROUP BY {h}" for h in (HOUR.text, HOUR.mssql))  # noqa: S608
)
BY_HOUR_AND_SOURCE = Sql(
    *(
        f"SELECT {h}, source, COUNT(*) FROM leads WHERE {WINDOW} GROUP BY {h}, source"  # noqa: S608
        for h in (HOUR.text, HOUR.mssql)
    )
)
BY_FORM_AND_SOURCE = f"SELECT form_id, source, COUNT(*) FROM leads WHERE {WINDOW} GROUP BY form_id, source"  # noqa: S608
COUNT_LEADS = f"SELECT COUNT(*) FROM leads WHERE {WINDOW}"  # noqa: S608
COUNT_AUDIT = "SELECT COUNT(*) FROM audit_log WHERE action = ? AND at >= ? AND at < ?"
COUNT_FAILED = "SELECT COUNT(*) FROM failed_events WHERE status = ?"
COUNT_FAILED_BEFORE = "SELECT COUNT(*) FROM failed_events WHERE status = ? AND first_failed_at < ?"
COUNT_FAILED_SINCE = "SELECT COUNT(*) FROM failed_events WHERE first_failed_at >= ? AND first_failed_at < ?"
POLL_FIGURES = (
    "SELECT COUNT(*), COALESCE(SUM(missing_found), 0), COALESCE(SUM(enqueued), 0),"
    " COALESCE(SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END), 0)"
    " FROM poll_runs WHERE started_at >= ? AND started_at < ?"
)
SENT = "SELECT COUNT(*) FROM notification_log WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?"
COUNTERS = "SELECT name, value FROM lead_counters"
# two subqueries: each MAX uses its own index (one SELECT with both aggregates scans every lead)
LAST_TIMES = "SELECT (SELECT MAX(created_time) FROM leads), (SELECT MAX(stored_at) FROM leads)"
NOTIFICATION_FIGURES = (
    "SELECT COUNT(DISTINCT claim_id), COALESCE(SUM(CASE WHEN kind = 'lead' THEN 1 ELSE 0 END), 0),"
    " COUNT(DISTINCT CASE WHEN group_size > 1 THEN claim_id END)"
    " FROM notification_log WHERE status = 'sent' AND sent_at >= ? AND sent_at < ?"
)
_NOTIFIED = (
    "SELECT l.created_time, l.stored_at, n.sent_at FROM notification_log n"
    " JOIN leads l ON l.facebook_lead_id = n.notification_key"
    " WHERE n.status = 'sent' AND n.sent_at >= ? AND n.sent_at < ? AND n.kind = 'lead' ORDER BY n.sent_at DESC"
)
NOTIFIED_LEADS = Sql(f"{_NOTIFIED} LIMIT ?", mssql=f"{_NOTIFIED} OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY")
_INTAKE = (  # ix_leads_webhook_stored answers it alone
    "SELECT webhook_received_at, stored_at FROM leads"
    " WHERE webhook_received_at IS NOT NULL AND stored_at >= ? AND stored_at < ? ORDER BY stored_at DESC"
)
WEBHOOK_INTAKE = Sql(f"{_INTAKE} LIMIT ?", mssql=f"{_INTAKE} OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY")
COUNT_NOT_FROM_WEBHOOK = (  # ix_leads_source_stored answers it alone
    "SELECT COUNT(*) FROM leads WHERE source IN ('polling', 'reprocess') AND stored_at >= ? AND stored_at < ?"
)
COUNT_OUTBOX_PENDING = "SELECT COUNT(*) FROM notification_outbox WHERE status IN ('pending', 'queued')"
COUNT_NOTIFICATIONS_FAILED = "SELECT COUNT(*) FROM notification_log WHERE status = 'failed'"


class StatsStore:
    """Read-only counts over time windows, and the running counters."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _count(self, sql: str, params: tuple[object, ...] = ()) -> int:
        with self._db.read() as tx:
            return tx.value(int, sql, params) or 0

    def _grouped(self, sql: str | Sql, start: datetime, end: datetime) -> dict[str, int]:
        with self._db.read() as tx:
            return {str(row.key): row.count for row in tx.all(_Count, sql, (start, end))}

    def leads_by_source(self, start: datetime, end: datetime) -> dict[str, int]:
        """Leads created in [start, end) per source (`webhook`, `polling`, `reprocess`)."""
        return self._grouped(BY_SOURCE, start, end)

    def leads_by_form(self, start: datetime, end: datetime) -> dict[str, int]:
        """Leads created in [start, end) per form id."""
        return self._grouped(BY_FORM, start, end)

    def leads_by_hour(self, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
        """Leads created per UTC hour in [start, end), every hour present (zero when none)."""
        counts = self._grouped(BY_HOUR, start, end)
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        rows = []
        while hour < end:
            rows.append((hour, counts.get(hour.strftime("%Y-%m-%dT%H"), 0)))
            hour += timedelta(hours=1)
        return rows

    def leads_by_hour_and_source(self, start: datetime, end: datetime) -> list[tuple[str, str, int]]:
        with self._db.read() as tx:
            return [(r.hour, r.source, r.count) for r in tx.all(_HourSource, BY_HOUR_AND_SOURCE, (start, end))]

    def leads_by_form_and_source(self, start: datetime, end: datetime) -> list[tuple[str | None, str, int]]:
        with self._db.read() as tx:
            return [(r.form_id, r.source, r.count) for r in tx.all(_FormSource, BY_FORM_AND_SOURCE, (start, end))]

    def count_leads(self, start: datetime, end: datetime) -> int:
        return self._count(COUNT_LEADS, (start, end))

    def count_audit(self, action: str, start: datetime, end: datetime) -> int:
        return self._count(COUNT_AUDIT, (action, start, end))

    def count_failed_events(self, status: str = "open") -> int:
        return self._count(COUNT_FAILED, (status,))

    def count_failed_before(self, status: str, before: datetime) -> int:
        """Dead letters with `status` first failed before `before` (the unattended ones)."""
        return self._count(COUNT_FAILED_BEFORE, (status, before))

    def count_failed_since(self, start: datetime, end: datetime) -> int:
        return self._count(COUNT_FAILED_SINCE, (start, end))

    def poll_figures(self, start: datetime, end: datetime) -> PollFigures:
        with self._db.read() as tx:
            figures = tx.one(PollFigures, POLL_FIGURES, (start, end))
        return figures or PollFigures(0, 0, 0, 0)

    def count_notifications_sent(self, start: datetime, end: datetime) -> int:
        return self._count(SENT, (start, end))

    def counters(self) -> dict[str, int]:
        """Running counters kept in the lead transactions (`source:<name>`, `duplicates`)."""
        with self._db.read() as tx:
            return {str(row.key): row.count for row in tx.all(_Count, COUNTERS)}

    def last_lead_times(self) -> tuple[datetime | None, datetime | None]:
        """(newest `created_time`, newest `stored_at`) or Nones on an empty store."""
        with self._db.read() as tx:
            row = tx.one(_LastTimes, LAST_TIMES)
        return (None, None) if row is None else (row.created, row.stored)

    def notification_figures(self, start: datetime, end: datetime) -> NotificationFigures:
        """Emails sent, leads announced and grouped emails in the window."""
        with self._db.read() as tx:
            figures = tx.one(NotificationFigures, NOTIFICATION_FIGURES, (start, end))
        return figures or NotificationFigures(0, 0, 0)

    def notification_latencies(self, start: datetime, end: datetime, limit: int = SAMPLE_LIMIT) -> list[float]:
        """Seconds from a lead's commit to its email being accepted, for the newest `limit` sent in the window."""
        return [(row.sent_at - row.stored_at).total_seconds() for row in self.notified_leads(start, end, limit)]

    def notified_leads(self, start: datetime, end: datetime, limit: int = SAMPLE_LIMIT) -> list[NotifiedLead]:
        """The newest `limit` leads whose email was accepted in [start, end), with their three times.

        One row per lead (a grouped email gives one per lead it carried); erased leads are not there.
        """
        with self._db.read() as tx:
            return tx.all(NotifiedLead, NOTIFIED_LEADS, (start, end, limit))

    def webhook_to_stored(self, start: datetime, end: datetime, limit: int = SAMPLE_LIMIT) -> list[float]:
        """Seconds from the webhook receiving a lead to its row committing, for the newest `limit` stored in the window.

        Only leads that came by the webhook have a receive time: polled and reprocessed ones are not
        here (`count_stored_not_from_webhook` counts them), nor leads stored before it was kept.
        """
        with self._db.read() as tx:
            rows = tx.all(_Intake, WEBHOOK_INTAKE, (start, end, limit))
        return [(row.stored_at - row.webhook_received_at).total_seconds() for row in rows]

    def count_stored_not_from_webhook(self, start: datetime, end: datetime) -> int:
        """Leads stored in [start, end) that came by polling or reprocess (they have no webhook receive time)."""
        return self._count(COUNT_NOT_FROM_WEBHOOK, (start, end))

    def count_outbox_pending(self) -> int:
        return self._count(COUNT_OUTBOX_PENDING)

    def count_notifications_failed(self) -> int:
        return self._count(COUNT_NOTIFICATIONS_FAILED)

"""Notification bookkeeping: the outbox, the exactly-once claim in `notification_log`, email slots.

`notification_log` has one row per (notification key, kind, channel); the key is the
`facebook_lead_id` for lead emails. Inserting that row with status `sending` is the claim: the
unique constraint decides who sends, so a redelivered message or a reprocessed lead never sends a
second email. Email slots are reserved with one conditional insert, so concurrent senders never
pass the per-minute and per-hour caps together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.store.mixin import StoreMixin

STALE_CLAIM = timedelta(minutes=2)
SUMMARY_COLUMNS = (
    "facebook_lead_id",
    "created_time",
    "source",
    "page_id",
    "form_id",
    "ad_id",
    "ad_name",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "full_name",
    "email",
    "phone_number",
    "fields_json",
    "is_organic",
    "platform",
    "stored_at",
)


@dataclass(frozen=True)
class PendingLead:
    """A stored lead whose email has not gone out yet."""

    facebook_lead_id: str
    page_id: str | None
    form_id: str | None


class NotificationStore(StoreMixin):
    """Mixed into `LeadStore`: everything the notifier reads and writes."""

    # --- outbox ---------------------------------------------------------------------------------

    def add_outbox(self, kind: str, key: str, payload: dict[str, Any] | None = None) -> bool:
        """Add an outbox row (alerts, digests); False when that (kind, key) is already there."""
        with self._write() as cur:
            try:
                cur.execute(
                    self._statements.insert_outbox,
                    (kind, key, None if payload is None else json.dumps(payload), self._now()),
                )
            except Exception as exc:
                if self.backend.is_duplicate_key(exc):
                    return False
                raise
        return True

    def mark_outbox(self, kind: str, key: str, status: str) -> None:
        """Set an outbox row's status (`sent`, `failed`, `skipped`)."""
        with self._write() as cur:
            cur.execute(self._statements.mark_outbox, (status, self._now(), kind, key))

    def mark_outbox_queued(self, kind: str, key: str, due: datetime | None = None) -> None:
        """Note that the row's queue message went out, due now or at `due` (never overwrites `sent` or `failed`).

        The outbox flush re-queues a `queued` row only well after it was due, so a message waiting
        out a long delay (an email cap) is not copied while it waits.
        """
        stamp = self._now() if due is None else self.backend.to_db_time(due)
        with self._write() as cur:
            cur.execute(self._statements.mark_outbox_queued, (stamp, kind, key))

    def outbox_due(
        self, pending_older_than: datetime, queued_older_than: datetime, limit: int = 500
    ) -> list[tuple[str, str]]:
        """Outbox rows whose queue message never went out (or went out long ago without a send)."""
        t = self.backend.to_db_time
        with self._read() as cur:
            cur.execute(self._statements.outbox_due, (t(pending_older_than), t(queued_older_than), limit))
            return [(str(kind), str(key)) for kind, key in cur.fetchall()]

    def outbox_payload(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._read() as cur:
            cur.execute(self._statements.outbox_payload, (kind, key))
            row = cur.fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    # --- email slots (rate cap) -----------------------------------------------------------------

    def reserve_email_slot(self, token: str, kind: str, now: datetime, per_minute: int, per_hour: int) -> bool:
        """Take one sending slot unless the last minute or hour is full (one conditional insert)."""
        t = self.backend.to_db_time
        minute_ago, hour_ago = t(now - timedelta(minutes=1)), t(now - timedelta(hours=1))
        with self._write() as cur:
            cur.execute(
                self._statements.reserve_email_slot, (token, kind, t(now), minute_ago, per_minute, hour_ago, per_hour)
            )
            return int(getattr(cur, "rowcount", 0) or 0) > 0

    def release_email_slot(self, token: str) -> None:
        """Give back a slot that sent nothing."""
        with self._write() as cur:
            cur.execute(self._statements.release_email_slot, (token,))

    def next_email_slot(self, now: datetime, per_minute: int, per_hour: int) -> datetime:
        """When the next slot frees up (now when one is free)."""
        with self._read() as cur:
            cur.execute(self._statements.recent_email_slots, (self.backend.to_db_time(now - timedelta(hours=1)),))
            times = [self.backend.from_db_time(row[0]) for row in cur.fetchall()]
        last_minute = [t for t in times if t > now - timedelta(minutes=1)]
        candidates = [now]
        if len(last_minute) >= per_minute:
            candidates.append(last_minute[len(last_minute) - per_minute] + timedelta(minutes=1))
        if len(times) >= per_hour:
            candidates.append(times[len(times) - per_hour] + timedelta(hours=1))
        return max(candidates)

    # --- the exactly-once claim -----------------------------------------------------------------

    def notification_state(self, key: str, kind: str, channel: str) -> tuple[str, str, datetime] | None:
        """(`claimed`|`sending`|`sent`|`failed`, claim id, claimed at), or None when nobody has claimed it."""
        with self._read() as cur:
            cur.execute(self._statements.notification_status, (key, kind, channel))
            row = cur.fetchone()
        return None if row is None else (str(row[0]), str(row[1]), self.backend.from_db_time(row[2]))

    def claim_notification(self, key: str, kind: str, channel: str, claim_id: str) -> bool:
        """Claim the right to send (key, kind, channel).

        A `failed` notification may be claimed again, and so may a `claimed` one older than
        `STALE_CLAIM` (its holder stopped before it started sending, so nothing went out).
        A `sending` one never is: it may have been sent.
        """
        now = datetime.now(UTC)
        stamp, stale = self.backend.to_db_time(now), self.backend.to_db_time(now - STALE_CLAIM)
        with self._write() as cur:
            try:
                cur.execute(self._statements.insert_notification_claim, (key, kind, channel, claim_id, stamp))
                return True
            except Exception as exc:
                if not self.backend.is_duplicate_key(exc):
                    raise
            cur.execute(self._statements.reclaim_failed_notification, (claim_id, stamp, key, kind, channel, stale))
            return int(getattr(cur, "rowcount", 0) or 0) > 0

    def take_over_stuck(self, claim_id: str) -> bool:
        """Free a claim stuck in `sending` (its process died mid-send) so it can be claimed again; once."""
        with self._write() as cur:
            cur.execute(self._statements.take_over_stuck, (claim_id,))
            return int(getattr(cur, "rowcount", 0) or 0) > 0

    def begin_send(self, claim_id: str) -> None:
        """Mark a claim `sending` right before the provider is called (from here a resend could repeat)."""
        with self._write() as cur:
            cur.execute(self._statements.begin_send, (claim_id,))

    def release_claim(self, claim_id: str) -> None:
        """Undo a claim whose email did not go out, so the next attempt can claim again."""
        with self._write() as cur:
            cur.execute(self._statements.release_notification_claim, (claim_id,))

    def mark_claim_sent(self, claim_id: str, kind: str, keys: Sequence[str], provider_id: str) -> None:
        """Record the send of every claimed key and close their outbox rows, in one transaction."""
        now = self._now()
        with self._write() as cur:
            cur.execute(self._statements.mark_claim_sent, (now, provider_id, len(keys), claim_id))
            for key in keys:
                cur.execute(self._statements.mark_outbox, ("sent", now, kind, key))

    def mark_notification_failed(
        self, claim_id: str, key: str, kind: str, channel: str, error: str, attempts: int
    ) -> None:
        """Keep a notification that will not be retried as `failed` (reprocess may claim it again)."""
        with self._write() as cur:
            cur.execute(
                self._statements.mark_notification_failed, (error[:1000], attempts, claim_id, key, kind, channel)
            )
            cur.execute(self._statements.mark_outbox, ("failed", self._now(), kind, key))

    # --- what to send ---------------------------------------------------------------------------

    def pending_lead_notifications(self, limit: int) -> list[PendingLead]:
        """Stored leads not yet announced, oldest first."""
        with self._read() as cur:
            cur.execute(self._statements.pending_lead_notifications, (limit,))
            return [PendingLead(str(k), p, f) for k, p, f in cur.fetchall()]

    def count_pending_lead_notifications(self) -> int:
        """How many stored leads are not yet announced."""
        with self._read() as cur:
            cur.execute(self._statements.count_pending_lead_notifications)
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def lead_summaries(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Stored leads by id, with `fields` decoded and times as aware datetimes."""
        if not ids:
            return []
        sql = self._statements.lead_summaries.format(params=", ".join("?" * len(ids)))
        with self._read() as cur:
            cur.execute(sql, tuple(ids))
            rows = cur.fetchall()
        result = []
        for row in rows:
            record = dict(zip(SUMMARY_COLUMNS, row, strict=True))
            record["fields"] = json.loads(record.pop("fields_json"))
            record["created_time"] = self.backend.from_db_time(record["created_time"])
            record["stored_at"] = self.backend.from_db_time(record["stored_at"])
            record["is_organic"] = None if record["is_organic"] is None else bool(record["is_organic"])
            result.append(record)
        return result

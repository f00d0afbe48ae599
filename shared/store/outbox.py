"""Notification bookkeeping: the outbox, the exactly-once claim in `notification_log`, email slots.

`notification_log` has one row per (notification key, kind, channel); the key is the
`facebook_lead_id` for lead emails. Inserting that row is the claim: the unique constraint
decides who sends, so a redelivered message or a reprocessed lead never sends a second email.
Email slots are reserved with one conditional insert, so concurrent senders never pass the
per-minute and per-hour caps together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from shared.store.backend import DuplicateKey, Sql, Tx, fit_text
from shared.store.database import Database
from shared.store.leads import INSERT_OUTBOX
from shared.store.schema import width

STALE_CLAIM = timedelta(minutes=2)
EmailClaim = Literal["claimed", "cap_reached", "taken"]

MARK = "UPDATE notification_outbox SET status = ?, queued_at = ? WHERE kind = ? AND notification_key = ?"
MARK_QUEUED = (
    "UPDATE notification_outbox SET status = 'queued', queued_at = ?"
    " WHERE kind = ? AND notification_key = ? AND status IN ('pending', 'queued')"
)
DUE = Sql(
    "SELECT kind, notification_key FROM notification_outbox"
    " WHERE (status = 'pending' AND created_at < ?) OR (status = 'queued' AND queued_at < ?) ORDER BY id LIMIT ?",
    mssql="SELECT kind, notification_key FROM notification_outbox"
    " WHERE (status = 'pending' AND created_at < ?) OR (status = 'queued' AND queued_at < ?)"
    " ORDER BY id OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY",
)
PAYLOAD = "SELECT payload FROM notification_outbox WHERE kind = ? AND notification_key = ?"
RESERVE_SLOT = Sql(
    "INSERT INTO email_slots (token, kind, reserved_at) SELECT ?, ?, ?"
    " WHERE (SELECT COUNT(*) FROM email_slots WHERE reserved_at > ?) < ?"
    " AND (SELECT COUNT(*) FROM email_slots WHERE reserved_at > ?) < ?",
    mssql="INSERT INTO email_slots (token, kind, reserved_at) SELECT ?, ?, ?"
    " WHERE (SELECT COUNT(*) FROM email_slots WITH (UPDLOCK, HOLDLOCK) WHERE reserved_at > ?) < ?"
    " AND (SELECT COUNT(*) FROM email_slots WITH (UPDLOCK, HOLDLOCK) WHERE reserved_at > ?) < ?",
)
RELEASE_SLOT = "DELETE FROM email_slots WHERE token = ?"
RECENT_SLOTS = "SELECT reserved_at FROM email_slots WHERE reserved_at > ? ORDER BY reserved_at"
CLAIM_STATE = (
    "SELECT status, claim_id, claimed_at FROM notification_log WHERE notification_key = ? AND kind = ? AND channel = ?"
)
CLAIM = (
    "INSERT INTO notification_log (notification_key, kind, channel, status, claim_id, claimed_at)"
    " VALUES (?, ?, ?, 'claimed', ?, ?)"
)
RECLAIM = (
    "UPDATE notification_log SET status = 'claimed', claim_id = ?, claimed_at = ?, error = NULL"
    " WHERE notification_key = ? AND kind = ? AND channel = ?"
    " AND (status = 'failed' OR (status = 'claimed' AND claimed_at < ?))"
)
CLAIMED_KEYS = "SELECT notification_key FROM notification_log WHERE claim_id = ? ORDER BY id"
BEGIN_SEND = "UPDATE notification_log SET status = 'sending' WHERE claim_id = ? AND status = 'claimed'"
TAKE_OVER = "DELETE FROM notification_log WHERE claim_id = ? AND status = 'sending'"
RELEASE_CLAIM = "DELETE FROM notification_log WHERE claim_id = ? AND status IN ('claimed', 'sending')"
MARK_SENT = (
    "UPDATE notification_log SET status = 'sent', sent_at = ?, provider_id = ?, group_size = ?"
    " WHERE claim_id = ? AND status = 'sending'"
)
MARK_FAILED = (
    "UPDATE notification_log SET status = 'failed', error = ?, attempts = ?"
    " WHERE claim_id = ? AND notification_key = ? AND kind = ? AND channel = ?"
)
PENDING_LEADS = Sql(
    "SELECT o.notification_key, l.page_id, l.form_id FROM notification_outbox o"
    " JOIN leads l ON l.facebook_lead_id = o.notification_key"
    " WHERE o.kind = 'lead' AND o.status IN ('pending', 'queued') ORDER BY o.id LIMIT ?",
    mssql="SELECT TOP (?) o.notification_key, l.page_id, l.form_id FROM notification_outbox o"
    " JOIN leads l ON l.facebook_lead_id = o.notification_key"
    " WHERE o.kind = 'lead' AND o.status IN ('pending', 'queued') ORDER BY o.id",
)
COUNT_PENDING_LEADS = "SELECT COUNT(*) FROM notification_outbox WHERE kind = 'lead' AND status IN ('pending', 'queued')"


@dataclass(frozen=True)
class PendingLead:
    """A stored lead whose email has not gone out yet."""

    facebook_lead_id: str
    page_id: str | None
    form_id: str | None


@dataclass(frozen=True)
class OutboxRow:
    kind: str
    key: str


@dataclass(frozen=True)
class ClaimState:
    """Who holds a notification and since when: `claimed`, `sending`, `sent` or `failed`."""

    status: str
    claim_id: str
    claimed_at: datetime


@dataclass(frozen=True)
class _Payload:
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class _Key:
    key: str


@dataclass(frozen=True)
class _Time:
    at: datetime


class OutboxStore:
    """Everything the notifier reads and writes: outbox rows, claims, email slots."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- outbox ---------------------------------------------------------------------------------

    def add_outbox(self, kind: str, key: str, payload: dict[str, Any] | None = None) -> bool:
        """Add an outbox row (alerts, digests); False when that (kind, key) is already there."""
        text = None if payload is None else json.dumps(payload, default=str)
        with self._db.write() as tx:
            try:
                tx.execute(INSERT_OUTBOX, (kind, key, text, datetime.now(UTC)))
            except DuplicateKey:
                return False
        return True

    def mark_outbox(self, kind: str, key: str, status: str) -> None:
        """Set an outbox row's status (`sent`, `failed`, `skipped`)."""
        with self._db.write() as tx:
            tx.execute(MARK, (status, datetime.now(UTC), kind, key))

    def mark_outbox_queued(self, kind: str, key: str, due: datetime | None = None) -> None:
        """Note that the row's queue message went out, due now or at `due` (never overwrites `sent` or `failed`).

        The outbox flush re-queues a `queued` row only well after it was due, so a message waiting
        out a long delay (an email cap) is not copied while it waits.
        """
        with self._db.write() as tx:
            tx.execute(MARK_QUEUED, (due or datetime.now(UTC), kind, key))

    def outbox_due(
        self, pending_older_than: datetime, queued_older_than: datetime, limit: int = 500
    ) -> list[tuple[str, str]]:
        """Outbox rows whose queue message never went out (or went out long ago without a send)."""
        with self._db.read() as tx:
            rows = tx.all(OutboxRow, DUE, (pending_older_than, queued_older_than, limit))
        return [(row.kind, row.key) for row in rows]

    def outbox_payload(self, kind: str, key: str) -> dict[str, Any] | None:
        with self._db.read() as tx:
            row = tx.one(_Payload, PAYLOAD, (kind, key))
        return None if row is None else row.payload

    # --- email slots (rate cap) -----------------------------------------------------------------

    def release_email_slot(self, token: str) -> None:
        """Give back a slot that sent nothing."""
        with self._db.write() as tx:
            tx.execute(RELEASE_SLOT, (token,))

    def next_email_slot(self, now: datetime, per_minute: int, per_hour: int) -> datetime:
        """When the next slot frees up (now when one is free)."""
        with self._db.read() as tx:
            times = [row.at for row in tx.all(_Time, RECENT_SLOTS, (now - timedelta(hours=1),))]
        last_minute = [t for t in times if t > now - timedelta(minutes=1)]
        candidates = [now]
        if len(last_minute) >= per_minute:
            candidates.append(last_minute[len(last_minute) - per_minute] + timedelta(minutes=1))
        if len(times) >= per_hour:
            candidates.append(times[len(times) - per_hour] + timedelta(hours=1))
        return max(candidates)

    # --- the exactly-once claim -----------------------------------------------------------------

    def notification_state(self, key: str, kind: str, channel: str) -> ClaimState | None:
        """The claim on (key, kind, channel), or None when nobody has claimed it."""
        with self._db.read() as tx:
            return tx.one(ClaimState, CLAIM_STATE, (key, kind, channel))

    def claim_email(
        self, key: str, kind: str, channel: str, claim_id: str, slot: str, now: datetime, per_minute: int, per_hour: int
    ) -> EmailClaim:
        """Claim the next email: a sending slot under both caps and the notification, in one transaction.

        `cap_reached`: no slot is free (nothing written). `taken`: someone else holds the
        notification (the slot is given back in the same transaction). `claimed`: both are ours.
        """
        minute_ago, hour_ago = now - timedelta(minutes=1), now - timedelta(hours=1)
        with self._db.write() as tx:
            if tx.execute(RESERVE_SLOT, (slot, kind, now, minute_ago, per_minute, hour_ago, per_hour)) == 0:
                return "cap_reached"
            if not _claim(tx, key, kind, channel, claim_id, datetime.now(UTC)):
                tx.execute(RELEASE_SLOT, (slot,))
                return "taken"
        return "claimed"

    def claim_group(
        self, first: str, channel: str, claim_id: str, most: int, belongs: Callable[[PendingLead], bool]
    ) -> list[str]:
        """Claim under `claim_id` other pending lead emails `belongs` accepts, up to `most` with `first`.

        One transaction; a lead someone else holds is passed over.
        """
        claimed: list[str] = []
        now = datetime.now(UTC)
        with self._db.write() as tx:
            for pending in tx.all(PendingLead, PENDING_LEADS, (most * 4,)):
                if len(claimed) + 1 >= most:
                    break
                if pending.facebook_lead_id == first or not belongs(pending):
                    continue
                if _claim(tx, pending.facebook_lead_id, "lead", channel, claim_id, now):
                    claimed.append(pending.facebook_lead_id)
        return claimed

    def take_over_stuck(self, claim_id: str) -> bool:
        """Free a claim stuck in `sending` (its process died mid-send) so it can be claimed again; once."""
        with self._db.write() as tx:
            return tx.execute(TAKE_OVER, (claim_id,)) > 0

    def begin_send(self, claim_id: str) -> list[str]:
        """Mark a claim `sending` right before the provider is called (from here a resend could repeat).

        Returns the keys the claim holds now that they are `sending`, in claim order, in the same
        transaction (one round trip instead of a second read): the sender compares them with the
        keys it rendered. Empty when this caller no longer holds the claim (it went stale and was
        taken over): do not send.
        """
        with self._db.write() as tx:
            if tx.execute(BEGIN_SEND, (claim_id,)) == 0:
                return []
            return [row.key for row in tx.all(_Key, CLAIMED_KEYS, (claim_id,))]

    def release_claim(self, claim_id: str) -> None:
        """Undo a claim whose email did not go out, so the next attempt can claim again."""
        with self._db.write() as tx:
            tx.execute(RELEASE_CLAIM, (claim_id,))

    def mark_claim_sent(self, claim_id: str, kind: str, keys: Sequence[str], provider_id: str) -> bool:
        """Record the send of every claimed key and close their outbox rows, in one transaction.

        False when the claim was no longer `sending` under `claim_id` (taken over as stuck): the outbox
        rows are closed all the same, since this email did go out.
        """
        now = datetime.now(UTC)
        provider = fit_text(provider_id, width("notification_log", "provider_id"))
        with self._db.write() as tx:
            held = tx.execute(MARK_SENT, (now, provider, len(keys), claim_id)) > 0
            tx.executemany(MARK, [("sent", now, kind, key) for key in keys])
        return held

    def claimed_keys(self, claim_id: str) -> list[str]:
        """The notification keys one claim holds (the leads of one grouped email)."""
        with self._db.read() as tx:
            return [row.key for row in tx.all(_Key, CLAIMED_KEYS, (claim_id,))]

    def mark_notification_failed(
        self, claim_id: str, key: str, kind: str, channel: str, error: str, attempts: int
    ) -> None:
        """Keep a notification that will not be retried as `failed` (reprocess may claim it again)."""
        reason = fit_text(error, width("notification_log", "error"))
        with self._db.write() as tx:
            tx.execute(MARK_FAILED, (reason, attempts, claim_id, key, kind, channel))
            tx.execute(MARK, ("failed", datetime.now(UTC), kind, key))

    # --- what to send ---------------------------------------------------------------------------

    def pending_lead_notifications(self, limit: int) -> list[PendingLead]:
        """Stored leads not yet announced, oldest first."""
        with self._db.read() as tx:
            return tx.all(PendingLead, PENDING_LEADS, (limit,))

    def count_pending_lead_notifications(self) -> int:
        """How many stored leads are not yet announced."""
        with self._db.read() as tx:
            return tx.value(int, COUNT_PENDING_LEADS) or 0


def _claim(tx: Tx, key: str, kind: str, channel: str, claim_id: str, now: datetime) -> bool:
    """The claim insert, else a reclaim of a failed or stale claim; True when `claim_id` now holds it."""
    try:
        tx.execute(CLAIM, (key, kind, channel, claim_id, now))
        return True
    except DuplicateKey:
        return tx.execute(RECLAIM, (claim_id, now, key, kind, channel, now - STALE_CLAIM)) > 0

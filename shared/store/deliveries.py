"""Deliveries beyond email: one row per (destination, what is delivered), claimed once, retried on a ladder.

A row is written in the same transaction as what it announces (a stored lead, an incident's alert, a
lead's stage), so nothing is left undelivered by a crash; its message goes on the `deliveries` queue
afterwards, and the outbox flush re-queues a row whose message never went or went missing. Claiming
is one conditional update (`pending` → `delivering`), so two instances never send the same row at
once; a claim older than `stale_after` (its process died mid-send) may be taken over, and the
destination gets the same `webhook_id` again (Standard Webhooks: receivers dedupe on it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.store.audit import write_audit
from shared.store.backend import DuplicateKey, Sql, Tx, columns, fit_text, iso_utc, utc_now
from shared.store.database import Database
from shared.store.schema import width

DeliveryKind = Literal["lead", "alert", "stage"]
DeliveryStatus = Literal["pending", "delivering", "delivered", "failed"]
STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivering", "delivered", "failed")
StageOutcome = Literal["recorded", "already_recorded", "unknown_lead"]


@dataclass(frozen=True)
class DeliveryRouting:
    """Which destinations each kind of event goes to (from the settings); empty: none."""

    lead: tuple[str, ...] = ()
    alert: tuple[str, ...] = ()
    stage: tuple[str, ...] = ()


@dataclass(frozen=True)
class Delivery:
    """A row of `deliveries`."""

    id: int
    delivery_key: str
    destination: str
    kind: str
    subject: str
    webhook_id: str
    payload: str | None
    status: str
    attempts: int
    created_at: datetime
    due_at: datetime
    claimed_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        """The ops shape of `GET /api/ops/deliveries` (ids, state and reasons; never lead data)."""
        return {
            "id": self.id,
            "destination": self.destination,
            "kind": self.kind,
            "subject": self.subject,
            "webhook_id": self.webhook_id,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": iso_utc(self.created_at),
            "next_attempt_at": iso_utc(self.due_at) if self.status == "pending" else None,
            "delivered_at": None if self.delivered_at is None else iso_utc(self.delivered_at),
            "last_status": self.last_status,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Claimed:
    """The row is ours to send under `claim_id`."""

    delivery: Delivery
    claim_id: str


@dataclass(frozen=True)
class NotClaimed:
    """Why not: `delivered`, `failed` (an operator may replay it), `in_progress` (someone holds it), `missing`."""

    reason: Literal["delivered", "failed", "in_progress", "missing"]


DELIVERY_COLUMNS = columns(Delivery)
INSERT = (
    "INSERT INTO deliveries (delivery_key, destination, kind, subject, webhook_id, payload, created_at, due_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
BY_KEY = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE delivery_key = ?"  # noqa: S608
BY_ID = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"  # noqa: S608
CLAIM = (
    "UPDATE deliveries SET status = 'delivering', claim_id = ?, claimed_at = ?"
    " WHERE delivery_key = ? AND (status = 'pending' OR (status = 'delivering' AND claimed_at < ?))"
)
DELIVERED = (
    "UPDATE deliveries SET status = 'delivered', delivered_at = ?, last_status = ?, last_error = NULL,"
    " attempts = attempts + 1, claim_id = NULL WHERE delivery_key = ? AND claim_id = ? AND status = 'delivering'"
)
ATTEMPT_FAILED = (
    "UPDATE deliveries SET status = ?, attempts = attempts + 1, last_status = ?, last_error = ?, due_at = ?,"
    " claim_id = NULL WHERE delivery_key = ? AND claim_id = ? AND status = 'delivering'"
)
RELEASE = (
    "UPDATE deliveries SET status = 'pending', claim_id = NULL"
    " WHERE delivery_key = ? AND claim_id = ? AND status = 'delivering'"
)
GIVE_UP = (
    "UPDATE deliveries SET status = 'failed', last_error = ?, claim_id = NULL"
    " WHERE delivery_key = ? AND status IN ('pending', 'delivering')"
)
QUEUED = "UPDATE deliveries SET queued_at = ? WHERE delivery_key = ? AND status = 'pending'"
DUE = Sql(
    "SELECT delivery_key FROM deliveries WHERE (status = 'pending' AND"
    " ((queued_at IS NULL AND created_at < ?) OR due_at < ?)) OR (status = 'delivering' AND claimed_at < ?)"
    " ORDER BY id LIMIT ?",
    mssql="SELECT delivery_key FROM deliveries WHERE (status = 'pending' AND"
    " ((queued_at IS NULL AND created_at < ?) OR due_at < ?)) OR (status = 'delivering' AND claimed_at < ?)"
    " ORDER BY id OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY",
)
LIST = Sql(
    f"SELECT {DELIVERY_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?",  # noqa: S608
    mssql=f"SELECT TOP (?) {DELIVERY_COLUMNS} FROM deliveries ORDER BY id DESC",  # noqa: S608
)
LIST_STATUS = Sql(
    f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = ? ORDER BY id DESC LIMIT ?",  # noqa: S608
    mssql=f"SELECT TOP (?) {DELIVERY_COLUMNS} FROM deliveries WHERE status = ? ORDER BY id DESC",  # noqa: S608
)
REPLAY = (
    "UPDATE deliveries SET status = 'pending', attempts = 0, due_at = ?, queued_at = NULL, claim_id = NULL,"
    " last_error = NULL WHERE id = ? AND status <> 'delivering'"
)
LEAD_STORED = "SELECT 1 FROM leads WHERE facebook_lead_id = ?"
INSERT_STAGE = "INSERT INTO lead_stages (facebook_lead_id, stage, recorded_at) VALUES (?, ?, ?)"
STAGES_OF = "SELECT stage FROM lead_stages WHERE facebook_lead_id = ? ORDER BY id"


def delivery_key(destination: str, kind: str, subject: str) -> str:
    """The row's unique key: one delivery of `subject` per destination."""
    return f"{destination}|{kind}|{subject}"


def webhook_id(key: str) -> str:
    """The Standard Webhooks `webhook-id`: stable for one subject at one destination, through every retry."""
    return "msg_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def add_deliveries(
    tx: Tx, destinations: Sequence[str], kind: DeliveryKind, subject: str, payload: Any, now: datetime
) -> list[str]:
    """Write a `pending` row per destination inside the caller's transaction; the keys (a row already there stays)."""
    text = None if payload is None else json.dumps(payload, ensure_ascii=False, default=str)
    keys = []
    for destination in destinations:
        key = delivery_key(destination, kind, subject)
        with suppress(DuplicateKey):  # the same subject announced again: still one delivery per destination
            tx.execute(INSERT, (key, destination, kind, subject, webhook_id(key), text, now, now))
        keys.append(key)
    return keys


class DeliveryStore:
    """Claim, record and list deliveries; replay one."""

    def __init__(self, db: Database, routing: DeliveryRouting | None = None) -> None:
        self._db = db
        self.routing = routing or DeliveryRouting()

    def get(self, key: str) -> Delivery | None:
        with self._db.read() as tx:
            return tx.one(Delivery, BY_KEY, (key,))

    def by_id(self, delivery_id: int) -> Delivery | None:
        with self._db.read() as tx:
            return tx.one(Delivery, BY_ID, (delivery_id,))

    def claim(self, key: str, claim_id: str, stale_after: timedelta) -> Claimed | NotClaimed:
        """Take the row to send it now: one conditional update, so one sender at a time."""
        now = utc_now()
        with self._db.write() as tx:
            if tx.execute(CLAIM, (claim_id, now, key, now - stale_after)) == 0:
                row = tx.one(Delivery, BY_KEY, (key,))
                if row is None:
                    return NotClaimed("missing")
                if row.status in ("delivered", "failed"):
                    return NotClaimed(row.status)  # type: ignore[arg-type]
                return NotClaimed("in_progress")
            row = tx.one(Delivery, BY_KEY, (key,))
        assert row is not None
        return Claimed(row, claim_id)

    def mark_delivered(self, key: str, claim_id: str, status_code: int) -> bool:
        """The destination answered 2xx; False when the claim was taken over meanwhile (still delivered)."""
        with self._db.write() as tx:
            return tx.execute(DELIVERED, (utc_now(), status_code, key, claim_id)) > 0

    def mark_attempt_failed(
        self, key: str, claim_id: str, status_code: int | None, error: str, retry_at: datetime | None
    ) -> bool:
        """One attempt failed: back to `pending` until `retry_at`, or `failed` for good when it is None."""
        reason = fit_text(error, width("deliveries", "last_error"))
        status = "failed" if retry_at is None else "pending"
        due = retry_at or utc_now()
        with self._db.write() as tx:
            return tx.execute(ATTEMPT_FAILED, (status, status_code, reason, due, key, claim_id)) > 0

    def release(self, key: str, claim_id: str) -> bool:
        """Give a claim back unsent (the attempt could not finish for a reason of ours): `pending` again."""
        with self._db.write() as tx:
            return tx.execute(RELEASE, (key, claim_id)) > 0

    def give_up(self, key: str, reason: str) -> bool:
        """Fail a row that cannot be delivered at all (its destination is gone, its lead erased)."""
        with self._db.write() as tx:
            return tx.execute(GIVE_UP, (fit_text(reason, width("deliveries", "last_error")), key)) > 0

    def mark_queued(self, keys: Sequence[str]) -> None:
        now = utc_now()
        with self._db.write() as tx:
            for key in keys:
                tx.execute(QUEUED, (now, key))

    def due(self, now: datetime, grace: timedelta, overdue: timedelta, stale: timedelta, limit: int = 500) -> list[str]:
        """Rows whose message never went (`grace`), went missing (`overdue` past due) or whose sender died (`stale`)."""
        with self._db.read() as tx:
            found = tx.all(_Key, DUE, (now - grace, now - overdue, now - stale, limit))
        return [row.delivery_key for row in found]

    def newest(self, status: DeliveryStatus | None, limit: int) -> list[Delivery]:
        """The newest `limit` rows, of one status or all."""
        with self._db.read() as tx:
            if status is None:
                return tx.all(Delivery, LIST, (limit,))
            if tx.dialect == "mssql":
                return tx.all(Delivery, LIST_STATUS, (limit, status))
            return tx.all(Delivery, LIST_STATUS, (status, limit))

    def replay(self, delivery_id: int) -> Delivery | None:
        """Make a row `pending` again, attempts from zero, same `webhook_id`; None when unknown or being sent."""
        with self._db.write() as tx:
            if tx.execute(REPLAY, (utc_now(), delivery_id)) == 0:
                return None
            write_audit(tx, "delivery_replayed", None, None, {"delivery_id": delivery_id}, utc_now())
            return tx.one(Delivery, BY_ID, (delivery_id,))

    def record_stage(self, facebook_lead_id: str, stage: str) -> tuple[StageOutcome, list[str]]:
        """Record a lead's stage once, with its deliveries (Meta's Conversions API) in the same transaction."""
        now = utc_now()
        with self._db.write() as tx:
            if tx.value(int, LEAD_STORED, (facebook_lead_id,)) is None:
                return "unknown_lead", []
            try:
                tx.execute(INSERT_STAGE, (facebook_lead_id, stage, now))
            except DuplicateKey:
                return "already_recorded", []
            write_audit(tx, "stage_recorded", facebook_lead_id, None, {"stage": stage}, now)
            event = {"stage": stage, "event_time": int(now.timestamp())}
            keys = add_deliveries(tx, self.routing.stage, "stage", f"{facebook_lead_id}:{stage}", event, now)
        return "recorded", keys

    def stages(self, facebook_lead_id: str) -> list[str]:
        with self._db.read() as tx:
            return [row.stage for row in tx.all(_Stage, STAGES_OF, (facebook_lead_id,))]


@dataclass(frozen=True)
class _Key:
    delivery_key: str


@dataclass(frozen=True)
class _Stage:
    stage: str

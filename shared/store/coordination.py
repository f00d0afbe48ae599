"""Coordination between instances: key/value state, leases, incidents, poller run records and what it queued.

Every conditional write is one statement decided by the database (an update with a condition,
else an insert guarded by the primary key), the same SQL on both engines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.store.audit import write_audit
from shared.store.backend import ID_CHUNK, DuplicateKey, Tx, iso_utc
from shared.store.database import Database
from shared.store.deliveries import DeliveryRouting, add_deliveries
from shared.store.leads import INSERT_OUTBOX, ids_found


@dataclass(frozen=True)
class PollRun:
    """One poller or reconciliation run, as `poll_runs` keeps it."""

    trigger: str
    started_at: datetime
    finished_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    forms_checked: int
    leads_seen: int
    missing_found: int
    enqueued: int
    graph_calls: int
    error: str | None = None

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclass(frozen=True)
class Incident:
    """An integration incident (token, subscription, dead letters, silence) and its state."""

    kind: str
    open: bool
    opened_at: datetime
    resolved_at: datetime | None
    detail: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "opened_at": iso_utc(self.opened_at),
            "resolved_at": None if self.resolved_at is None else iso_utc(self.resolved_at),
            "detail": self.detail or {},
        }


@dataclass(frozen=True)
class _State:
    value: dict[str, Any]


GET_STATE = 'SELECT value FROM state WHERE "key" = ?'
UPDATE_STATE = 'UPDATE state SET value = ?, updated_at = ? WHERE "key" = ?'
INSERT_STATE = 'INSERT INTO state ("key", value, updated_at) VALUES (?, ?, ?)'
RENEW_LEASE = "UPDATE leases SET owner = ?, expires_at = ? WHERE name = ? AND (expires_at < ? OR owner = ?)"
INSERT_LEASE = "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
RELEASE_LEASE = "DELETE FROM leases WHERE name = ? AND owner = ?"
REOPEN_INCIDENT = (
    "UPDATE incidents SET is_open = 1, opened_at = ?, resolved_at = NULL, detail = ? WHERE kind = ? AND is_open = 0"
)
INSERT_INCIDENT = "INSERT INTO incidents (kind, is_open, opened_at, detail) VALUES (?, 1, ?, ?)"
RESOLVE_INCIDENT = "UPDATE incidents SET is_open = 0, resolved_at = ? WHERE kind = ? AND is_open = 1"
LIST_INCIDENTS = "SELECT kind, is_open, opened_at, resolved_at, detail FROM incidents ORDER BY kind"
RECENTLY_POLLED = "SELECT facebook_lead_id FROM poll_queued WHERE queued_at >= ? AND facebook_lead_id IN ({params})"
FORGET_POLLED = "DELETE FROM poll_queued WHERE facebook_lead_id IN ({params})"
INSERT_POLLED = "INSERT INTO poll_queued (facebook_lead_id, queued_at) VALUES (?, ?)"
PRUNE_POLLED = "DELETE FROM poll_queued WHERE queued_at < ?"
INSERT_POLL_RUN = (
    'INSERT INTO poll_runs ("trigger", started_at, finished_at, window_start, window_end, forms_checked,'
    " leads_seen, missing_found, enqueued, graph_calls, duration_ms, error)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class CoordinationStore:
    """State, leases, incidents and the poller's records."""

    def __init__(self, db: Database, routing: DeliveryRouting | None = None) -> None:
        self._db = db
        self._chat = (routing or DeliveryRouting()).alert  # where an alert goes besides email

    def open_incident(self, kind: str, detail: dict[str, Any]) -> bool:
        """Mark incident `kind` open; True only for the one caller that made the transition.

        One conditional write decides (an update of a closed row, else an insert guarded by the
        primary key), so concurrent instances raise one alert, not one each. The alert's outbox
        row commits with it.
        """
        now = datetime.now(UTC)
        text = json.dumps(detail, ensure_ascii=False, default=str)
        with self._db.write() as tx:
            opened = tx.execute(REOPEN_INCIDENT, (now, text, kind)) > 0
            if not opened:
                try:
                    tx.execute(INSERT_INCIDENT, (kind, now, text))
                    opened = True
                except DuplicateKey:
                    pass  # open already: someone else raised it
            if opened:
                write_audit(tx, "incident_opened", None, None, {"kind": kind, **detail}, now)
                _add_alert(tx, kind, True, now, detail, self._chat)
        return opened

    def resolve_incident(self, kind: str, detail: dict[str, Any] | None = None) -> bool:
        """Mark incident `kind` resolved; True only for the one caller that made the transition."""
        now = datetime.now(UTC)
        with self._db.write() as tx:
            resolved = tx.execute(RESOLVE_INCIDENT, (now, kind)) > 0
            if resolved:
                write_audit(tx, "incident_resolved", None, None, {"kind": kind, **(detail or {})}, now)
                _add_alert(tx, kind, False, now, detail or {}, self._chat)
        return resolved

    def incidents(self) -> dict[str, Incident]:
        """Every incident ever raised, by kind."""
        with self._db.read() as tx:
            return {row.kind: row for row in tx.all(Incident, LIST_INCIDENTS)}

    def incident_open(self, kind: str) -> bool:
        incident = self.incidents().get(kind)
        return incident is not None and incident.open

    def get_state(self, key: str) -> dict[str, Any] | None:
        """The JSON value kept under `key` in `state`, or None."""
        with self._db.read() as tx:
            row = tx.one(_State, GET_STATE, (key,))
        return None if row is None else dict(row.value)

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        """Set `state[key]` (update, else insert; a racing insert turns into the update)."""
        now, text = datetime.now(UTC), json.dumps(value, default=str)
        with self._db.write() as tx:
            if tx.execute(UPDATE_STATE, (text, now, key)) == 0:
                try:
                    tx.execute(INSERT_STATE, (key, text, now))
                except DuplicateKey:
                    tx.execute(UPDATE_STATE, (text, now, key))

    def try_acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take the lease `name` for `owner` unless someone else holds an unexpired one.

        One conditional update (expired, or already ours), else an insert guarded by the key.
        """
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=ttl_seconds)
        with self._db.write() as tx:
            if tx.execute(RENEW_LEASE, (owner, expires, name, now, owner)) > 0:
                return True
            try:
                tx.execute(INSERT_LEASE, (name, owner, expires))
                return True
            except DuplicateKey:
                return False

    def release_lease(self, name: str, owner: str) -> None:
        with self._db.write() as tx:
            tx.execute(RELEASE_LEASE, (name, owner))

    def recently_polled(self, ids: Sequence[str], since: datetime) -> set[str]:
        """Which of `ids` the poller queued at or after `since` (500 at a time)."""
        return ids_found(self._db, RECENTLY_POLLED, ids, lambda chunk: (since, *chunk))

    def record_polled(self, ids: Sequence[str], at: datetime, keep_after: datetime) -> None:
        """Remember that the poller queued `ids` at `at`; forget entries older than `keep_after`."""
        unique = list(dict.fromkeys(ids))
        with self._db.write() as tx:
            for start in range(0, len(unique), ID_CHUNK):
                chunk = unique[start : start + ID_CHUNK]
                tx.execute(FORGET_POLLED.format(params=", ".join("?" * len(chunk))), chunk)
                tx.executemany(INSERT_POLLED, [(lead_id, at) for lead_id in chunk])
            tx.execute(PRUNE_POLLED, (keep_after,))

    def record_poll_run(self, run: PollRun) -> None:
        """Keep a poller/reconciliation run's figures for stats and the digest."""
        with self._db.write() as tx:
            tx.execute(
                INSERT_POLL_RUN,
                (
                    run.trigger,
                    run.started_at,
                    run.finished_at,
                    run.window_start,
                    run.window_end,
                    run.forms_checked,
                    run.leads_seen,
                    run.missing_found,
                    run.enqueued,
                    run.graph_calls,
                    run.duration_ms,
                    None if run.error is None else run.error[:1000],
                ),
            )


def _add_alert(tx: Tx, kind: str, opened: bool, at: datetime, detail: dict[str, Any], chat: Sequence[str] = ()) -> None:
    """The alert email's outbox row and its chat deliveries; the payload is plain JSON (time as ISO 8601)."""
    stamp = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert = {"kind": kind, "opened": opened, "at": stamp, "detail": detail}
    key = f"{kind}:{stamp}:{'opened' if opened else 'resolved'}"
    tx.execute(INSERT_OUTBOX, ("alert", key, json.dumps(alert, ensure_ascii=False, default=str), at))
    add_deliveries(tx, chat, "alert", key, alert, at)

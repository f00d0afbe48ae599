"""Coordination between instances: key/value state, leases, incidents, poller run records and what it queued."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.store.mixin import ID_CHUNK, StoreMixin
from shared.store.timefmt import iso_utc


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


LEAD_COLUMNS = (
    "facebook_lead_id",
    "page_id",
    "form_id",
    "ad_id",
    "ad_name",
    "adset_id",
    "adset_name",
    "campaign_id",
    "campaign_name",
    "created_time",
    "is_organic",
    "platform",
    "source",
    "email",
    "full_name",
    "phone_number",
    "fields_json",
    "disclaimers_json",
    "stored_at",
)


class CoordinationStore(StoreMixin):
    """Mixed into `LeadStore`: state, leases, incidents and poll runs."""

    def open_incident(self, kind: str, detail: dict[str, Any]) -> bool:
        """Mark incident `kind` open; True only for the one caller that made the transition.

        One conditional write decides (an update of a closed row, else an insert guarded by the
        primary key), so concurrent instances raise one alert, not one each.
        """
        now = self.backend.to_db_time(datetime.now(UTC))
        text = json.dumps(detail, ensure_ascii=False)
        with self._write() as cur:
            cur.execute(self._statements.reopen_incident, (now, text, kind))
            opened = int(getattr(cur, "rowcount", 0) or 0) > 0
            if not opened:
                try:
                    cur.execute(self._statements.insert_incident, (kind, now, text))
                    opened = True
                except Exception as exc:
                    if not self.backend.is_duplicate_key(exc):
                        raise
            if opened:
                self._audit(cur, "incident_opened", None, None, {"kind": kind, **detail}, now)
                alert = {"kind": kind, "opened": True, "at": now, "detail": detail}
                cur.execute(self._statements.insert_outbox, ("alert", f"{kind}:{now}:opened", json.dumps(alert), now))
        return opened

    def resolve_incident(self, kind: str, detail: dict[str, Any] | None = None) -> bool:
        """Mark incident `kind` resolved; True only for the one caller that made the transition."""
        now = self.backend.to_db_time(datetime.now(UTC))
        with self._write() as cur:
            cur.execute(self._statements.resolve_incident, (now, kind))
            resolved = int(getattr(cur, "rowcount", 0) or 0) > 0
            if resolved:
                self._audit(cur, "incident_resolved", None, None, {"kind": kind, **(detail or {})}, now)
                alert = {"kind": kind, "opened": False, "at": now, "detail": detail or {}}
                cur.execute(self._statements.insert_outbox, ("alert", f"{kind}:{now}:resolved", json.dumps(alert), now))
        return resolved

    def incidents(self) -> dict[str, dict[str, Any]]:
        """Every incident ever raised: `open`, `opened_at`, `resolved_at`, `detail`."""
        with self._read() as cur:
            cur.execute(self._statements.list_incidents)
            rows = cur.fetchall()
        result = {}
        for kind, is_open, opened_at, resolved_at, detail in rows:
            result[str(kind)] = {
                "open": bool(is_open),
                "opened_at": iso_utc(self.backend.from_db_time(opened_at)),
                "resolved_at": None if resolved_at is None else iso_utc(self.backend.from_db_time(resolved_at)),
                "detail": json.loads(detail) if detail else {},
            }
        return result

    def get_state(self, key: str) -> dict[str, Any] | None:
        """The JSON value kept under `key` in `state`, or None."""
        with self._read() as cur:
            cur.execute(self._statements.get_state, (key,))
            row = cur.fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        """Set `state[key]` (insert or replace) in one statement."""
        now = self.backend.to_db_time(datetime.now(UTC))
        with self._write() as cur:
            cur.execute(self._statements.put_state, (key, json.dumps(value), now))

    def try_acquire_lease(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take the lease `name` for `owner` unless someone else holds an unexpired one (one write)."""
        now = datetime.now(UTC)
        expires = self.backend.to_db_time(datetime.fromtimestamp(now.timestamp() + ttl_seconds, tz=UTC))
        with self._write() as cur:
            cur.execute(self._statements.acquire_lease, (name, owner, expires, self.backend.to_db_time(now)))
            return int(getattr(cur, "rowcount", 0) or 0) > 0

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as cur:
            cur.execute(self._statements.release_lease, (name, owner))

    def recently_polled(self, ids: Sequence[str], since: datetime) -> set[str]:
        """Which of `ids` the poller queued at or after `since` (500 at a time)."""
        stamp = self.backend.to_db_time(since)
        return self._ids_found(self._statements.recently_polled, ids, lambda chunk: (stamp, *chunk))

    def record_polled(self, ids: Sequence[str], at: datetime, keep_after: datetime) -> None:
        """Remember that the poller queued `ids` at `at`; forget entries older than `keep_after`."""
        unique = list(dict.fromkeys(ids))
        stamp = self.backend.to_db_time(at)
        with self._write() as cur:
            for start in range(0, len(unique), ID_CHUNK):
                chunk = unique[start : start + ID_CHUNK]
                cur.execute(self._statements.forget_polled.format(params=", ".join("?" * len(chunk))), tuple(chunk))
                cur.executemany(self._statements.insert_polled, [(lead_id, stamp) for lead_id in chunk])
            cur.execute(self._statements.prune_polled, (self.backend.to_db_time(keep_after),))

    def record_poll_run(self, run: PollRun) -> None:
        """Keep a poller/reconciliation run's figures for stats and the digest."""
        t = self.backend.to_db_time
        with self._write() as cur:
            cur.execute(
                self._statements.insert_poll_run,
                (
                    run.trigger,
                    t(run.started_at),
                    t(run.finished_at),
                    None if run.window_start is None else t(run.window_start),
                    None if run.window_end is None else t(run.window_end),
                    run.forms_checked,
                    run.leads_seen,
                    run.missing_found,
                    run.enqueued,
                    run.graph_calls,
                    run.duration_ms,
                    run.error,
                ),
            )

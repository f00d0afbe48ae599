"""Idle mode: when no lead has moved for a while, the timers leave the database alone.

A serverless Azure SQL database pauses only after `autoPauseDelay` minutes without any query,
and three timers used to query it every few minutes whatever happened. With
`IDLE_AFTER_MINUTES` set (the Bicep sets it with the serverless tier), the queue triggers mark
activity in the `agentstate` table (at most once a minute per instance), and once no activity
was marked for that long the app is idle:

- `flush_outbox` and the dead-letter sweep's purge and watch query SQL once in every
  `IDLE_SQL_EVERY_MINUTES` slot instead of every run; a message on a poison queue still reaches
  SQL at once;
- the poller asks Meta only (token, subscriptions, leads since its last run) and runs its SQL
  part when Meta shows something new, or once per slot.

The slots are aligned to the clock, so the timers' idle queries come together in a few minutes and
the database pauses `autoPauseDelay` later, until the next slot.

Reading the table costs no SQL compute. When it cannot be read the gate says "not idle": a
storage hiccup costs a query, never a missed lead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.errors import TransientError
from shared.logs import get_logger
from shared.storage.state import SharedState

log = get_logger(__name__)

ACTIVITY_KEY = "activity"
TOUCH_EVERY_SECONDS = 60.0


class IdleGate:
    """Whether the app is idle, and whether an idle timer's database run is due."""

    def __init__(
        self,
        state: SharedState,
        idle_after_seconds: float,
        sql_every_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._idle_after = idle_after_seconds
        self._sql_every = sql_every_seconds
        self._clock = clock
        self._touched_at = -1e18
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._idle_after > 0

    def touch(self) -> None:
        """Something moved (a lead, a notification): mark activity, at most once a minute per process."""
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            if now - self._touched_at < TOUCH_EVERY_SECONDS:
                return
            self._touched_at = now
        try:
            self._state.put_state(ACTIVITY_KEY, {"at": now})
        except TransientError:
            with self._lock:
                self._touched_at = -1e18  # try again on the next message
            log.warning("idle: activity not marked (state table unavailable)")

    def idle(self) -> bool:
        """True once no activity was marked for `IDLE_AFTER_MINUTES` (never when the mode is off)."""
        if not self.enabled:
            return False
        try:
            state = self._state.get_state(ACTIVITY_KEY) or {}
        except TransientError:
            return False
        return self._clock() - float(state.get("at", 0.0)) >= self._idle_after

    def _slot(self) -> int:
        return int(self._clock() // self._sql_every)

    def sql_due(self, job: str, after: tuple[str, ...] = ()) -> bool:
        """While idle: True when `job` has not queried the database in the current slot, or when one of
        the `after` jobs queried it since `job` last did (the outbox flush follows the timers that may
        have written an alert row).

        Slots are `IDLE_SQL_EVERY_MINUTES` long and aligned to the clock, not to each job's last run,
        so the three timers' idle queries fall in the same few minutes and the database can pause
        for the rest of the slot (three independent cadences would keep it online).
        """
        try:
            own = self._state.get_state(f"idle_run:{job}") or {}
            if own.get("slot") != self._slot():
                return True
            last = float(own.get("at", 0.0))
            return any(
                float((self._state.get_state(f"idle_run:{other}") or {}).get("at", 0.0)) > last for other in after
            )
        except TransientError:
            return True

    def may_query(self, job: str, after: tuple[str, ...] = ()) -> bool:
        """Whether the timer `job` should query the database on this run; when idle, record it as run now."""
        if not self.idle():
            return True
        if not self.sql_due(job, after):
            return False
        self.ran(job)
        return True

    def ran(self, job: str, at: float | None = None) -> None:
        """Record that `job` queried the database in the current slot, finishing at `at` (now by default).

        A job that may write rows another job reads records the time it finished, so the reader,
        which records the time it started, reads again after it.
        """
        try:
            self._state.put_state(f"idle_run:{job}", {"slot": self._slot(), "at": self._clock() if at is None else at})
        except TransientError:
            log.warning("idle: run time not recorded (state table unavailable)", extra={"job": job})

"""Where each form's poll starts: its checkpoint (minus the overlap), however long ago, within a cap.

A form is read from its own checkpoint, so leads created while the poller was down (an outage, a
stopped app, an expired token) are fetched when it comes back, however long that took. Reading
reaches back at most `max_backfill_days` (90 by default: third parties report that Meta stops
returning leads after about 90 days; Meta's docs give no figure). A form without a checkpoint
starts where the oldest checkpoint does, or `first_run_hours` back on a first install. The hourly
full pass also covers the reconciliation window. When the oldest checkpoint lies further back
than that window, the outage left a gap the hourly pass alone would never have read: the plan
names it, so the run record and an alert can say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class BackfillLimits:
    """How far back reading may start (from settings)."""

    overlap_seconds: int
    window_seconds: float
    first_run_seconds: float
    max_backfill_seconds: float


@dataclass(frozen=True)
class Gap:
    """Polling stopped at `stopped_at` (the oldest checkpoint); this run reads from `backfill_from`.

    `backfill_from` is the checkpoint minus the overlap, or the cap when that lies further back.
    """

    stopped_at: int
    wanted_from: int
    backfill_from: int
    now: float

    @property
    def capped(self) -> bool:
        """True when the checkpoint is older than the cap: leads before `backfill_from` are not read."""
        return self.backfill_from > self.wanted_from

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON for the run report, the incident and its alert."""
        return {
            "since": _iso(self.stopped_at),
            "hours": round((self.now - self.stopped_at) / 3600, 2),
            "backfill_from": _iso(self.backfill_from),
            "capped": self.capped,
            "unreadable_hours": round((self.backfill_from - self.wanted_from) / 3600, 2),
        }


@dataclass(frozen=True)
class PollPlan:
    """Each form's start (`GREATER_THAN` this epoch second), and the gap behind them, if any."""

    starts: dict[str, int]
    gap: Gap | None


def plan_poll(checkpoints: Mapping[str, int | None], now: float, limits: BackfillLimits, full: bool) -> PollPlan:
    """Where each form in `checkpoints` (form id -> its checkpoint, or None) starts reading.

    Guarantees: a form never starts after its checkpoint minus the overlap, nor before
    `now - max_backfill`; a full pass starts no later than the reconciliation window's floor.
    """
    floor = int(now - limits.max_backfill_seconds)
    known = [int(value) for value in checkpoints.values() if value is not None]
    oldest = min(known) if known else None
    default_start = int(now - limits.first_run_seconds) if oldest is None else oldest - limits.overlap_seconds
    window_floor = int(now - limits.window_seconds)
    starts = {}
    for form_id, checkpoint in checkpoints.items():
        start = default_start if checkpoint is None else int(checkpoint) - limits.overlap_seconds
        if full:
            start = min(start, window_floor)
        starts[form_id] = max(start, floor)
    gap = None
    if oldest is not None and oldest < window_floor:
        wanted = oldest - limits.overlap_seconds
        gap = Gap(stopped_at=oldest, wanted_from=wanted, backfill_from=max(wanted, floor), now=now)
    return PollPlan(starts, gap)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

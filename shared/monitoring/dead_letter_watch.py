"""The dead-letter sweep timer's work: move poison messages, purge old rows, watch; less while idle.

Reading the poison queues costs no database query, so it happens on every run. The purge and the
watchers query SQL; while the app is idle (`shared/storage/idle.py`) they run once every
`IDLE_SQL_EVERY_MINUTES`, or at once when a poison queue held a message (a dead letter is news:
it counts towards `dead_letters_growing`, and it marks activity so the outbox flush runs again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.messaging.sweep import SweepReport
from shared.monitoring.watch import WatchReport
from shared.storage.idle import IdleGate

JOB = "sweep_dead_letters"


@dataclass(frozen=True)
class SweepRun:
    """One run: what the sweep moved and purged, and the watchers' figures (None when idle left SQL alone)."""

    swept: SweepReport
    watched: WatchReport | None


def sweep_and_watch(
    sweep: Callable[[bool], SweepReport], watch: Callable[[], WatchReport], idle: IdleGate | None = None
) -> SweepRun:
    """Sweep the poison queues (`sweep(purge)`), then watch, leaving the database alone while idle and quiet."""
    quiet = idle is not None and idle.idle()
    due = not quiet or idle is None or idle.sql_due(JOB)
    swept = sweep(due)
    if quiet and not due and (swept.moved or swept.already_recorded):
        due = True
    watched = watch() if due else None
    if quiet and idle is not None and (due or swept.moved):
        idle.ran(JOB)  # after the watchers: an alert row they wrote is then flushed (shared/ops/outbox.py)
        if swept.moved:
            idle.touch()  # a dead letter is news: the app is active again
    return SweepRun(swept, watched)

"""Watchers for silent trouble: dead letters piling up or left unattended, and no leads when there should be some.

Each condition is an incident (opened once, resolved once), checked every few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.monitoring.incidents import close_incident, open_incident
from shared.store import Store

BASELINE_DAYS = 7


@dataclass(frozen=True)
class WatchReport:
    dead_letters_open: int
    leads_in_silence_window: int
    expected_in_silence_window: float
    dead_letters_unattended: int = 0


def watch(
    store: Store,
    now: datetime,
    dead_letter_threshold: int,
    silence_hours: float,
    min_expected: float,
    unattended_days: float = 25,
) -> WatchReport:
    """Open or resolve `dead_letters_growing`, `dead_letters_unattended` and `silence` from current counts.

    An open dead letter older than `unattended_days` is never purged; it raises
    `dead_letters_unattended` until someone reprocesses or resolves it.
    """
    open_count = store.stats.count_failed_events("open")
    if open_count >= dead_letter_threshold:
        open_incident(store, "dead_letters_growing", {"count": open_count, "threshold": dead_letter_threshold})
    else:
        close_incident(store, "dead_letters_growing", {"count": open_count})
    unattended = store.stats.count_failed_before("open", now - timedelta(days=unattended_days))
    if unattended:
        open_incident(store, "dead_letters_unattended", {"count": unattended, "days": unattended_days})
    else:
        close_incident(store, "dead_letters_unattended")

    window = timedelta(hours=silence_hours)
    recent = store.stats.count_leads(now - window, now)
    baseline_total = store.stats.count_leads(now - timedelta(days=BASELINE_DAYS) - window, now - window)
    windows_in_baseline = (timedelta(days=BASELINE_DAYS) / window) or 1
    expected = baseline_total / windows_in_baseline
    if recent == 0 and expected >= min_expected > 0:
        open_incident(store, "silence", {"hours": silence_hours, "expected": round(expected, 1)})
    elif recent > 0:
        close_incident(store, "silence", {"leads": recent})
    return WatchReport(open_count, recent, expected, unattended)

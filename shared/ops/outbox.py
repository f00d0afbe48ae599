"""The notification timers' work: queue what the outbox holds, and today's digest once.

With `EMAIL_SENDER=none` nothing is sent, so neither does anything. While the app is idle
(`shared/storage/idle.py`) the flush queries the database only once every `IDLE_SQL_EVERY_MINUTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.deliver.consumer import flush_deliveries
from shared.messaging.sender import QueueSender
from shared.notify.digest import digest_key
from shared.notify.outbox import enqueue_notification, flush_outbox
from shared.storage.idle import IdleGate
from shared.store import Store

# The timers that may write an outbox row (an incident's alert) while the app is idle: the flush reads after them.
WRITERS = ("poll_leads", "sweep_dead_letters")


@dataclass(frozen=True)
class Outbox:
    """Where notifications wait (`store`) and go (`queues`); `enabled` is False when no email is sent."""

    store: Store
    queues: QueueSender
    enabled: bool
    idle: IdleGate | None = None
    delivering: bool = False  # deliveries beyond email are configured: their rows are flushed too


def flush(outbox: Outbox, now: datetime) -> int:
    """Queue outbox rows and deliveries that never got their message (alerts, leads after a crash); how many."""
    if not (outbox.enabled or outbox.delivering):
        return 0
    if outbox.idle is not None and not outbox.idle.may_query("flush_outbox", after=WRITERS):
        return 0
    queued = flush_outbox(outbox.queues, outbox.store, now) if outbox.enabled else 0
    return queued + (flush_deliveries(outbox.queues, outbox.store, now) if outbox.delivering else 0)


def queue_daily_digest(outbox: Outbox, now: datetime) -> bool:
    """Queue the digest of the UTC day `now` falls on, once (its outbox key is the date); whether it was."""
    if not outbox.enabled:
        return False
    key = digest_key(now)
    if not outbox.store.outbox.add_outbox("digest", key):
        return False
    enqueue_notification(outbox.queues, outbox.store, "digest", key)
    return True

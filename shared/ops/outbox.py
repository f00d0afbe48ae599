"""The notification timers' work: queue what the outbox holds, and today's digest once.

With `EMAIL_SENDER=none` nothing is sent, so neither does anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.messaging.sender import QueueSender
from shared.notify.digest import digest_key
from shared.notify.outbox import enqueue_notification, flush_outbox
from shared.store import Store


@dataclass(frozen=True)
class Outbox:
    """Where notifications wait (`store`) and go (`queues`); `enabled` is False when no email is sent."""

    store: Store
    queues: QueueSender
    enabled: bool


def flush(outbox: Outbox, now: datetime) -> int:
    """Queue outbox rows that never got their message (alerts, and leads after a crash); how many."""
    if not outbox.enabled:
        return 0
    return flush_outbox(outbox.queues, outbox.store, now)


def queue_daily_digest(outbox: Outbox, now: datetime) -> bool:
    """Queue the digest of the UTC day `now` falls on, once (its outbox key is the date); whether it was."""
    if not outbox.enabled:
        return False
    key = digest_key(now)
    if not outbox.store.outbox.add_outbox("digest", key):
        return False
    enqueue_notification(outbox.queues, outbox.store, "digest", key)
    return True

"""The `notifications` consumer: one message body in, one outcome out, at most one email per notification.

The queue trigger calls `handle_notification`; the message processor parses the body at the edge
and gives every failure its outcome (`retrying`, `dead_lettered`); `shared/notify/notifier.py`
holds the domain steps. As in Powertools' batch utilities, the record handler and the processor
meet here, once.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from functools import partial

from shared.errors import StoreUnavailable
from shared.messaging.messages import NotificationMessage
from shared.messaging.processor import Consumer, Handled, Outcome, process
from shared.notify.notifier import handle
from shared.notify.types import NotifyDeps, StoreAway
from shared.storage.names import NOTIFICATIONS_QUEUE


def handle_notification(body: bytes, deps: NotifyDeps) -> Outcome[NotificationMessage, Handled]:
    """Process one `notifications` message; at most one email per notification. Only `QueueUnavailable` escapes."""
    consumer = Consumer(NOTIFICATIONS_QUEUE, "notify", "notification", deps.policy, deps.queues, deps.store, deps.rng)
    outcome = process(body, NotificationMessage, partial(handle, deps=deps), consumer)
    message = outcome.message
    if message is not None and outcome.delay_seconds is not None and not isinstance(outcome.result, StoreAway):
        # The outbox row learns when its message is due, so the flush does not copy a message that waits.
        # Best effort: without it the flush makes one harmless extra copy (the claim stops a second email).
        due = deps.clock() + timedelta(seconds=outcome.delay_seconds)
        with suppress(StoreUnavailable):
            deps.store.outbox.mark_outbox_queued(message.kind, message.key, due)
    return outcome

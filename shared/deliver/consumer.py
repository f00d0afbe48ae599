"""The `deliveries` consumer, and putting rows on its queue (after their commit, and again from the flush).

The queue trigger calls `handle_delivery`; the message processor parses the body at the edge and
gives every failure its outcome; `shared/deliver/deliver.py` holds the domain steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import partial

from shared.deliver.deliver import STALE_CLAIM, DeliverDeps, deliver
from shared.messaging.messages import DeliveryMessage
from shared.messaging.processor import Consumer, Handled, Outcome, process
from shared.messaging.sender import QueueSender
from shared.storage.names import DELIVERIES_QUEUE
from shared.store import Store


def handle_delivery(body: bytes, deps: DeliverDeps) -> Outcome[DeliveryMessage, Handled]:
    """Process one `deliveries` message: its row delivered once, retried on the ladder, or dead-lettered."""
    consumer = Consumer(DELIVERIES_QUEUE, "deliver", "delivery", deps.policy, deps.queues, deps.store, deps.rng)
    return process(body, DeliveryMessage, partial(deliver, deps=deps), consumer)


def enqueue_deliveries(queues: QueueSender, store: Store, keys: Sequence[str]) -> None:
    """Queue a message per row and mark them queued (the flush covers a crash between)."""
    if not keys:
        return
    queues.send_many(DELIVERIES_QUEUE, [DeliveryMessage(key=key).to_text() for key in keys])
    store.deliveries.mark_queued(keys)


def enqueue_lead_deliveries(queues: QueueSender, store: Store, facebook_lead_id: str) -> None:
    """Queue the deliveries a just-stored lead got in its transaction (one per destination in the routing)."""
    from shared.store.deliveries import delivery_key

    keys = [delivery_key(name, "lead", facebook_lead_id) for name in store.deliveries.routing.lead]
    enqueue_deliveries(queues, store, keys)


def flush_deliveries(queues: QueueSender, store: Store, now: datetime) -> int:
    """Queue rows whose message never went (1 min), went missing (30 min past due) or whose claim went stale."""
    keys = store.deliveries.due(now, timedelta(minutes=1), timedelta(minutes=30), STALE_CLAIM)
    enqueue_deliveries(queues, store, keys)
    return len(keys)

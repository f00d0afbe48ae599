"""Deliveries on demand: list them, replay one, and record a lead's stage (its Conversions API event)."""

from __future__ import annotations

import re
from typing import Any

from shared.deliver.consumer import enqueue_deliveries
from shared.messaging.sender import QueueSender
from shared.ops.errors import NotFound, NotReplayable, OpsRefused
from shared.store import Store
from shared.store.deliveries import STATUSES, DeliveryStatus

STAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


def list_deliveries(store: Store, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` deliveries, of one status (`pending`, `delivering`, `delivered`, `failed`) or all."""
    if status is not None and status not in STATUSES:
        raise OpsRefused(f"status is one of {', '.join(STATUSES)}")
    chosen: DeliveryStatus | None = status
    return [row.as_json() for row in store.deliveries.newest(chosen, limit)]


def replay_delivery(store: Store, queues: QueueSender, delivery_id: str) -> dict[str, Any]:
    """Send delivery `delivery_id` again (attempts from zero, the same `webhook-id`); what was queued."""
    if not (delivery_id.isascii() and delivery_id.isdigit()) or len(delivery_id) > 18:
        raise NotFound("no delivery with this id", id=delivery_id)
    row = store.deliveries.replay(int(delivery_id))
    if row is None:
        if store.deliveries.by_id(int(delivery_id)) is None:
            raise NotFound("no delivery with this id", id=delivery_id)
        raise NotReplayable("the delivery is being sent right now; try again in a minute", id=delivery_id)
    enqueue_deliveries(queues, store, [row.delivery_key])
    return {"id": row.id, "destination": row.destination, "webhook_id": row.webhook_id, "status": "pending"}


def record_stage(store: Store, queues: QueueSender, facebook_lead_id: str, stage: object) -> dict[str, Any]:
    """Record a lead's stage once (`qualified`, `converted` …) and queue its Conversions API event once."""
    if not isinstance(stage, str) or not STAGE.match(stage):
        raise OpsRefused("stage is 1 to 100 letters, digits, spaces, dots, dashes or underscores", stage=None)
    outcome, keys = store.deliveries.record_stage(facebook_lead_id, stage)
    if outcome == "unknown_lead":
        raise NotFound("no stored lead with this id", facebook_lead_id=facebook_lead_id)
    enqueue_deliveries(queues, store, keys)
    capi = "queued" if keys else ("not configured" if not store.deliveries.routing.stage else "already queued")
    return {
        "facebook_lead_id": facebook_lead_id,
        "stage": stage,
        "recorded": outcome == "recorded",
        "conversions_api": capi,
        "stages": store.deliveries.stages(facebook_lead_id),
    }

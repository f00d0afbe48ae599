"""Reprocess: put a failed event (by its id) or a lead (by `facebook_lead_id`) back on its queue.

The result is always visible afterwards: the lead is stored (or counted as a duplicate), or it
fails again and becomes a fresh dead letter; the old row is marked `reprocessed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.messaging.messages import LeadMessage
from shared.messaging.sender import QueueSender
from shared.ops.errors import NotFound, NotReplayable
from shared.storage.names import DELIVERIES_QUEUE, LEADS_QUEUE, NOTIFICATIONS_QUEUE, POISON_SUFFIX
from shared.store import Store
from shared.store.failed_events import FailedEventRow
from shared.store.leads import LeadRouting

MAX_EVENT_ID_DIGITS = 12  # failed-event ids are small; lead ids are 15+ digits


@dataclass(frozen=True)
class Requeued:
    """What was put back on a queue: the queue, the message id and what it is about."""

    queue: str
    message_id: str
    facebook_lead_id: str | None
    failed_event_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ops view: `queue`, then `failed_event_id` when a dead letter was replayed, the lead and message ids."""
        event = {} if self.failed_event_id is None else {"failed_event_id": self.failed_event_id}
        return {"queue": self.queue, **event, "facebook_lead_id": self.facebook_lead_id, "message_id": self.message_id}


def reprocess(identifier: str, store: Store, sender: QueueSender) -> Requeued:
    """Re-queue what `identifier` names; raises `NotFound` (unknown id) or `NotReplayable` (no message in it)."""
    identifier = identifier.strip()
    if identifier.isascii() and identifier.isdigit() and len(identifier) <= MAX_EVENT_ID_DIGITS:
        event = store.failed_events.get_failed_event(int(identifier))
        if event is not None:
            return _requeue_failed_event(event, store, sender)
    if not (identifier.isascii() and identifier.isdigit()):
        raise NotFound("unknown id: failed-event and lead ids are digits only")
    routing = store.leads.lead_routing(identifier)
    failed = store.failed_events.latest_failed_event_for_lead(identifier)
    if routing is None and failed is None:
        raise NotFound(f"no failed event or lead with id {identifier}")
    if routing is None and failed is not None:
        routing = _routing_from_payload(failed.payload or "")
    where = {} if routing is None else {"page_id": routing.page_id, "form_id": routing.form_id, "ad_id": routing.ad_id}
    message = LeadMessage(facebook_lead_id=identifier, source="reprocess", **where)
    message_id = sender.send(LEADS_QUEUE, message.to_text())
    if failed is not None and failed.status == "open":
        store.failed_events.set_failed_event_status(failed.id, "reprocessed", {"message_id": message_id})
    store.audit("reprocess_queued", identifier, {"by": "lead_id"})
    return Requeued(LEADS_QUEUE, message_id, identifier)


def _requeue_failed_event(event: FailedEventRow, store: Store, sender: QueueSender) -> Requeued:
    queue = event.queue.removesuffix(POISON_SUFFIX)
    payload = event.payload or ""
    if queue == LEADS_QUEUE:
        try:
            original = LeadMessage.model_validate_json(payload)
        except ValidationError:
            raise NotReplayable(
                "this dead letter holds no lead to reprocess (malformed webhook or change)",
                failed_event_id=event.id,
                reason=event.error,
            ) from None
        message = original.model_copy(update={"attempt": 0, "source": "reprocess", "last_error": None, "lead": None})
        text = message.to_text()
        lead_id: str | None = message.facebook_lead_id
    elif queue == NOTIFICATIONS_QUEUE:
        from shared.messaging.messages import NotificationMessage

        try:
            notification = NotificationMessage.model_validate_json(payload)
        except ValidationError:
            raise NotReplayable("this dead letter holds no notification", failed_event_id=event.id) from None
        text = notification.model_copy(update={"attempt": 0, "last_error": None}).to_text()
        lead_id = event.facebook_lead_id
    elif queue == DELIVERIES_QUEUE:
        text = _replayed_delivery(event, store)
        lead_id = event.facebook_lead_id
    else:
        text, lead_id = payload, event.facebook_lead_id
    message_id = sender.send(queue, text)
    store.failed_events.set_failed_event_status(event.id, "reprocessed", {"message_id": message_id})
    return Requeued(queue, message_id, lead_id, failed_event_id=event.id)


def _replayed_delivery(event: FailedEventRow, store: Store) -> str:
    """A failed delivery's row made `pending` again (the same `webhook-id`), and its message."""
    from shared.messaging.messages import DeliveryMessage

    try:
        message = DeliveryMessage.model_validate_json(event.payload or "")
    except ValidationError:
        raise NotReplayable("this dead letter holds no delivery", failed_event_id=event.id) from None
    row = store.deliveries.get(message.key)
    if row is None or store.deliveries.replay(row.id) is None:
        raise NotReplayable("the delivery is gone or being sent right now", failed_event_id=event.id)
    return DeliveryMessage(key=message.key).to_text()


def _routing_from_payload(payload: str) -> LeadRouting | None:
    try:
        message = LeadMessage.model_validate_json(payload)
    except ValidationError:
        return None
    return LeadRouting(message.page_id, message.form_id, message.ad_id)

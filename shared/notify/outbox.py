"""The notification outbox's queue side: queue a notification, re-queue what never got its message, record a send.

An outbox row is written with the change it announces; its message goes on the `notifications`
queue afterwards. The flush covers a crash between the two. A send is recorded under its claim;
when the database is away right after the provider accepted the email, a receipt message records
it later, so a database outage never causes a second email.
"""

from __future__ import annotations

import time
from contextlib import suppress
from datetime import datetime, timedelta

from shared.errors import LeadAgentError, StoreUnavailable
from shared.logs import get_logger
from shared.messaging.messages import NotificationKind, NotificationMessage, Receipt
from shared.messaging.sender import QueueSender
from shared.notify.types import STORE_RECHECK_SECONDS, NotifyDeps
from shared.storage.names import NOTIFICATIONS_QUEUE
from shared.store import Store

log = get_logger(__name__)


def enqueue_notification(queues: QueueSender, store: Store, kind: NotificationKind, key: str, delay: float = 0) -> None:
    """Queue a notification and mark its outbox row `queued` (the outbox flush covers a crash between)."""
    queues.send(NOTIFICATIONS_QUEUE, NotificationMessage(kind=kind, key=key).to_text(), delay_seconds=delay)
    store.outbox.mark_outbox_queued(kind, key)


def flush_outbox(queues: QueueSender, store: Store, now: datetime, grace: timedelta = timedelta(minutes=1)) -> int:
    """Queue every outbox row that never got its message, and again any whose message is 30+ minutes overdue."""
    due = store.outbox.outbox_due(now - grace, now - timedelta(minutes=30))
    for kind, key in due:
        enqueue_notification(queues, store, kind, key)  # type: ignore[arg-type]
    return len(due)


def record_sent(
    deps: NotifyDeps, message: NotificationMessage, claim_id: str, keys: list[str], provider_id: str
) -> None:
    """The email is out: record it now, or leave a receipt on the queue to record it when the database is back."""
    for attempt in range(3):
        try:
            mark_sent(deps, message, claim_id, keys, provider_id)
            return
        except StoreUnavailable:
            time.sleep(0.5 * 2**attempt)
    receipt = message.model_copy(update={"receipt": Receipt(claim_id=claim_id, keys=keys, provider_id=provider_id)})
    deps.queues.send(NOTIFICATIONS_QUEUE, receipt.to_text(), delay_seconds=STORE_RECHECK_SECONDS)


def mark_sent(deps: NotifyDeps, message: NotificationMessage, claim_id: str, keys: list[str], provider_id: str) -> None:
    """Record a send under its claim (the outbox rows close either way).

    When the claim is no longer `sending` under `claim_id` and was not already recorded under it (a
    repeated receipt, or a look-up that found the send done), the email went out after its claim was
    taken over as stuck, and the taker may send a labelled copy: that is logged and audited.
    """
    if deps.store.outbox.mark_claim_sent(claim_id, message.kind, keys, provider_id):
        return
    state = deps.store.outbox.notification_state(message.key, message.kind, deps.sender.name)
    if state is not None and state.claim_id == claim_id and state.status == "sent":
        return
    log.warning(
        "notify: an email went out after its claim was taken over",
        extra={"stage": "notify", "outcome": "sent_late", "kind": message.kind},
    )
    with suppress(LeadAgentError):
        deps.store.audit("notification_sent_late", None, {"kind": message.kind, "key": message.key})

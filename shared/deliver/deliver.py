"""Deliver one row of `deliveries`: the record handler of the `deliveries` consumer (`shared/deliver/consumer.py`).

Claim the row (one sender at a time), build what its channel expects from the stored lead, alert or
stage, send it, and record the answer:

- **webhook**: a Standard Webhooks POST, `{"type": "lead.created", "timestamp", "data"}` with `data` the
  lead as `/api/ops/last-leads` shows it, signed `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`;
  `webhook-id` is the row's, the same through every retry and replay, so a receiver dedupes on it;
- **slack** / **teams**: the lead or the alert as a Block Kit message / Adaptive Card (`chat.py`);
- **capi**: the lead's stage as a Meta Conversions API event (`action_source: system_generated`).

A 2xx is delivered. Any other answer, a timeout or no connection is retried on the ladder
(`DELIVERY_RETRY_SECONDS`, the Standard Webhooks / Svix schedule by default: 5 s up to 10 h, 27.6 h in
all), honouring `Retry-After`; the attempts and the next time live in the row. After the last rung,
or at once for an answer that will not change (the Conversions API refusing an event), the row is
`failed` and the message a dead letter with its reason; `POST /api/ops/deliveries/{id}/replay` sends
it again with the same `webhook-id`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.deliver import chat
from shared.deliver.destinations import Destination, Destinations
from shared.deliver.http import DeliveryFailed, post_json
from shared.errors import LeadAgentError, PermanentError, StoreUnavailable, TransientError
from shared.logs import get_logger
from shared.messaging.messages import DeliveryMessage
from shared.messaging.processor import Handled, LookAgain
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.settings import DELIVERY_LADDER, signing_key
from shared.store import Store
from shared.store.backend import iso_utc
from shared.store.deliveries import Claimed, Delivery

log = get_logger(__name__)

LEAD_EVENT_SOURCE = "Lead Monitoring Agent"  # `custom_data.lead_event_source`: the CRM's name, as Meta asks
IN_PROGRESS_RECHECK_SECONDS = 30.0
# A claim older than this is taken over: far longer than one send (DELIVERY_TIMEOUT_SECONDS is at most 30 s),
# short enough that a sender that died mid-send, or a database that went away under it, delays a delivery
# by minutes, not hours. The taker sends with the same webhook-id, which the receiver dedupes.
STALE_CLAIM = timedelta(minutes=2)


class DeliveryGaveUp(PermanentError):
    """The delivery failed for good: the ladder ran out, or the destination refuses it for a reason that stays."""


class NothingToDeliver(PermanentError):
    """What the row delivers is gone: the lead was erased, or the destination was removed from the settings."""


@dataclass
class DeliverDeps:
    """What a delivery needs; tests pass real parts (SQLite, Azurite, a receiver on loopback, the sandbox)."""

    store: Store
    queues: QueueSender
    destinations: Destinations
    policy: RetryPolicy  # the processor's own retries, for a database that is away
    ladder: tuple[float, ...] = DELIVERY_LADDER
    post: Callable[[str, bytes, Mapping[str, str], float], int] = post_json
    send_events: Callable[[str, list[dict[str, Any]]], None] | None = None  # the Conversions API (Graph)
    webhook_secret: Callable[[], str] = lambda: ""
    form_name: Callable[[str], str | None] = lambda form_id: None
    field_map: Mapping[str, str] = field(default_factory=dict)  # FIELD_MAP: the lead's `mapped` names
    timeout: float = 10.0
    stale_after: timedelta = STALE_CLAIM
    clock: Callable[[], float] = time.time
    rng: random.Random | None = field(default=None)


def deliver(message: DeliveryMessage, deps: DeliverDeps) -> Handled | LookAgain:
    """Send the row `message` names, once; `delivered`, `duplicate`, `skipped`, or looked at again later."""
    claim = deps.store.deliveries.claim(message.key, uuid.uuid4().hex, deps.stale_after)
    if not isinstance(claim, Claimed):
        if claim.reason == "in_progress":
            return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS)
        outcome = "duplicate" if claim.reason == "delivered" else "skipped"
        return Handled(outcome, f"delivery {claim.reason}")
    row = claim.delivery
    try:
        status = _send(row, deps)
    except StoreUnavailable:
        with suppress(LeadAgentError):  # give the claim back if the database lets us; else it goes stale
            deps.store.deliveries.release(row.delivery_key, claim.claim_id)
        raise  # the processor retries the message
    except NothingToDeliver as exc:
        deps.store.deliveries.give_up(row.delivery_key, str(exc))
        return Handled("skipped", str(exc))
    except (TransientError, PermanentError) as exc:
        return _attempt_failed(row, claim.claim_id, exc, deps)
    deps.store.deliveries.mark_delivered(row.delivery_key, claim.claim_id, status)
    latency = round((datetime.now(UTC) - row.created_at).total_seconds() * 1000)
    log.info(
        "deliver: delivered",
        extra={"stage": "deliver", "outcome": "delivered", "destination": row.destination, "kind": row.kind,
               "attempt": row.attempts + 1, "latency_ms": latency},
    )  # fmt: skip
    return Handled("delivered")


def _send(row: Delivery, deps: DeliverDeps) -> int:
    destination = deps.destinations.get(row.destination)
    if destination is None:
        raise NothingToDeliver("destination no longer configured")
    target = destination.target()
    if not target:
        raise DeliveryFailed(None, f"{destination.name}: no URL could be read (setting or Key Vault)")
    if destination.channel == "capi":
        return _send_stage(row, target, deps)
    body = _body(row, destination, deps)
    headers: dict[str, str] = {}
    if destination.channel == "webhook":
        headers = signed_headers(deps.webhook_secret(), row.webhook_id, int(deps.clock()), body)
    return deps.post(target, body, headers, deps.timeout)


def _body(row: Delivery, destination: Destination, deps: DeliverDeps) -> bytes:
    if row.kind == "alert":
        alert = json.loads(row.payload or "{}")
        message = chat.slack_alert(alert) if destination.channel == "slack" else chat.teams_alert(alert)
        return _json(message)
    stored = deps.store.leads.leads([row.subject])
    if not stored:
        raise NothingToDeliver("the lead is no longer stored (erased)")
    lead = stored[0]
    view = lead.ops_view(deps.field_map)
    if destination.channel == "webhook":
        return _json({"type": "lead.created", "timestamp": iso_utc(lead.stored_at), "data": view})
    form = deps.form_name(lead.form_id) if lead.form_id else None
    return _json(chat.slack_lead(view, form) if destination.channel == "slack" else chat.teams_lead(view, form))


def _send_stage(row: Delivery, dataset_id: str, deps: DeliverDeps) -> int:
    if deps.send_events is None:
        raise NothingToDeliver("the Conversions API is not configured")
    stage = json.loads(row.payload or "{}")
    lead_id = row.subject.rsplit(":", 1)[0]
    event = {
        "event_name": str(stage["stage"]),
        "event_time": int(stage["event_time"]),
        "event_id": row.webhook_id,
        "action_source": "system_generated",
        "user_data": {"lead_id": int(lead_id)},
        "custom_data": {"event_source": "crm", "lead_event_source": LEAD_EVENT_SOURCE},
    }
    deps.send_events(dataset_id, [event])
    return 200


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64>`)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), content, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def _attempt_failed(row: Delivery, claim_id: str, exc: Exception, deps: DeliverDeps) -> LookAgain:
    """Record the failed attempt; wait for the next rung, or give up (the processor dead-letters it)."""
    status = exc.status if isinstance(exc, DeliveryFailed) else None
    reason = f"{type(exc).__name__}: {exc}"[:500]
    attempts = row.attempts + 1
    dims = {"stage": "deliver", "destination": row.destination, "kind": row.kind, "attempt": attempts,
            "error_type": type(exc).__name__, "status": status}  # fmt: skip
    if isinstance(exc, PermanentError) or attempts > len(deps.ladder):
        deps.store.deliveries.mark_attempt_failed(row.delivery_key, claim_id, status, reason, None)
        log.error("deliver: failed for good", extra={**dims, "outcome": "failed"})
        raise DeliveryGaveUp(f"{row.destination} after {attempts} attempts: {reason}") from None
    rung = deps.ladder[attempts - 1] * (deps.rng or random).uniform(0.9, 1.1)
    delay = max(rung, exc.retry_after if isinstance(exc, DeliveryFailed) else 0.0)
    retry_at = datetime.fromtimestamp(deps.clock() + delay, tz=UTC)
    deps.store.deliveries.mark_attempt_failed(row.delivery_key, claim_id, status, reason, retry_at)
    log.warning(
        "deliver: attempt failed, retrying later",
        extra={**dims, "outcome": "retrying", "delay_seconds": round(delay, 1)},
    )
    return LookAgain("retrying", delay, reason)


def _json(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

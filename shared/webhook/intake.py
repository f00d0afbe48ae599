"""Webhook intake: verify, parse, and turn each leadgen change into one durable queue message.

`receive_webhook` never raises for bad input: it returns the HTTP status Meta should see and
what happened, so the trigger stays a thin mapping. 200 is returned only after every message
(and every dead letter) is on a queue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.errors import QueueUnavailable, SignatureInvalid
from shared.logs import get_logger
from shared.models.envelope import LeadgenChange, WebhookEnvelope
from shared.models.messages import DeadLetterInfo, LeadMessage, utc_now
from shared.queues.dead_letters import dead_letter_message, dead_letter_raw_body, send_dead_letter
from shared.queues.names import LEADS_QUEUE
from shared.queues.sender import QueueSender
from shared.webhook.signature import verify_signature

log = get_logger(__name__)

CountIgnored = Callable[[str, int], None]


@dataclass
class IntakeResult:
    """What the webhook answers (`status`, `body`) and what it did."""

    status: int
    body: str
    queued: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    lead_ids: list[str] = field(default_factory=list)


def _json(http_status: int, **payload: object) -> IntakeResult:
    return IntakeResult(status=http_status, body=json.dumps(payload))


def receive_webhook(
    body: bytes,
    signature: str | None,
    secrets: Iterable[str],
    sender: QueueSender,
    max_body_bytes: int,
    count_ignored: CountIgnored | None = None,
) -> IntakeResult:
    """Verify `body` and enqueue one `leads-inbound` message per leadgen change.

    Guarantees: nothing is queued for a bad signature (401); a signed body that is not a
    valid envelope is kept whole as a dead letter (400); a change without `leadgen_id` is
    dead-lettered while the rest of the batch is queued; 200 only after all are durable;
    503 when the queue cannot take them (Meta retries and ingestion dedupes).
    """
    if len(body) > max_body_bytes:
        return _json(413, error="payload too large", limit_bytes=max_body_bytes)
    try:
        verify_signature(body, signature, secrets)
    except SignatureInvalid as exc:
        return _json(401, error=str(exc))

    try:
        envelope = WebhookEnvelope.model_validate_json(body)
    except ValidationError as exc:
        reason = "body is not JSON" if _is_json_error(exc) else "body is not a webhook envelope"
        info = DeadLetterInfo(reason=reason, stage="webhook", error_type="MalformedWebhook")
        try:
            send_dead_letter(sender, LEADS_QUEUE, dead_letter_raw_body(info, body))
        except QueueUnavailable:
            log.warning("webhook: malformed body could not be dead-lettered; asking Meta to retry")
            return _json(503, error="queue unavailable")
        log.warning("webhook: signed body rejected and dead-lettered", extra={"stage": "webhook", "outcome": reason})
        return _json(400, error=reason)

    if envelope.object != "page":
        _count(count_ignored, f"object:{envelope.object}", 1)
        return _json(200, status="ignored", reason=f"object {envelope.object!r} is not handled")

    messages: list[str] = []
    letters: list[tuple[DeadLetterInfo, dict[str, object]]] = []
    ignored: dict[str, int] = {}
    lead_ids: list[str] = []
    received_at = utc_now()
    for entry in envelope.entry:
        for change in entry.changes:
            if change.field != "leadgen":
                ignored[f"field:{change.field}"] = ignored.get(f"field:{change.field}", 0) + 1
                continue
            raw_value = change.value or {}
            try:
                value = LeadgenChange.model_validate(raw_value)
            except ValidationError as exc:
                info = DeadLetterInfo(
                    reason=f"unusable leadgen change: {_first_error(exc)}",
                    stage="webhook",
                    error_type="MalformedChange",
                )
                letters.append((info, {"entry_id": entry.id, "change": change.model_dump()}))
                continue
            message = LeadMessage(
                facebook_lead_id=value.leadgen_id,
                page_id=value.page_id or entry.id or None,
                form_id=value.form_id,
                ad_id=value.ad_id or value.adgroup_id,
                created_time=value.created_time,
                source="webhook",
                received_at=received_at,
                event=raw_value,
            )
            messages.append(message.to_text())
            lead_ids.append(value.leadgen_id)

    try:
        if messages:
            sender.send_many(LEADS_QUEUE, messages)
        for info, payload in letters:
            send_dead_letter(sender, LEADS_QUEUE, dead_letter_message(info, payload))
    except QueueUnavailable:
        log.warning("webhook: queue unavailable; answering 503 so Meta retries", extra={"stage": "webhook"})
        return _json(503, error="queue unavailable")

    for kind, count in ignored.items():
        _count(count_ignored, kind, count)
    result = IntakeResult(
        status=200,
        body="",
        queued=len(messages),
        ignored=sum(ignored.values()),
        dead_lettered=len(letters),
        lead_ids=lead_ids,
    )
    result.body = json.dumps(
        {"status": "ok", "queued": result.queued, "ignored": result.ignored, "dead_lettered": result.dead_lettered}
    )
    log.info(
        "webhook: accepted",
        extra={"stage": "webhook", "outcome": "queued", "queued": result.queued, "ignored": result.ignored},
    )
    return result


def _count(count_ignored: CountIgnored | None, kind: str, n: int) -> None:
    log.info("webhook: ignored unsupported content", extra={"stage": "webhook", "outcome": "ignored", "kind": kind})
    if count_ignored is None:
        return
    try:
        count_ignored(kind, n)
    except Exception:  # counting must never make Meta retry a delivery we handled
        log.warning("webhook: could not count ignored content", exc_info=True)


def _is_json_error(exc: ValidationError) -> bool:
    return any(error["type"] == "json_invalid" for error in exc.errors())


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "value"
    return f"{where}: {error['msg']}"

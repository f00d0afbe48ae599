"""Webhook intake: verify, parse, and turn each leadgen change into one durable queue message.

`receive_webhook` returns what happened to a body (an `IntakeResult`) and raises only
`SignatureInvalid` (nothing is queued) and `QueueUnavailable` (the messages are not all durable, so
Meta must deliver again); the HTTP edge turns both into the answer Meta sees. A body is `accepted`
only after every message (and every dead letter) is on a queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from pydantic_core import from_json

from shared.errors import QueueUnavailable
from shared.logs import get_logger
from shared.messaging.dead_letters import dead_letter_message, dead_letter_raw_body, send_dead_letter
from shared.messaging.messages import DeadLetterInfo, LeadMessage, utc_now
from shared.messaging.sender import MAX_MESSAGE_BYTES, QueueSender, encoded_size
from shared.models.envelope import Change, Entry, LeadgenChange, WebhookEnvelope
from shared.storage.names import LEADS_QUEUE
from shared.webhook.signature import verify_signature

log = get_logger(__name__)

CountIgnored = Callable[[str, int], None]
FormChosen = Callable[[str | None], bool]
NOT_AN_OBJECT = "Input should be an object"
EVENT_IDS = {"leadgen_id", "page_id", "form_id", "ad_id", "adgroup_id", "created_time"}


Outcome = Literal["accepted", "ignored", "too_large", "malformed"]


@dataclass
class IntakeResult:
    """What became of one body.

    `accepted`: every leadgen change is queued and every malformed part dead-lettered (a body that
    is JSON but no envelope is one dead letter). `ignored`: an object this agent does not handle.
    `too_large`: over the limit, not read. `malformed`: signed but not a JSON object; kept whole as
    a dead letter. `reason` says why for `ignored` and `malformed`.
    """

    outcome: Outcome
    reason: str = ""
    queued: int = 0
    ignored: int = 0
    dead_lettered: int = 0
    lead_ids: list[str] = field(default_factory=list)


def receive_webhook(
    body: bytes,
    signature: str | None,
    secrets: Iterable[str],
    sender: QueueSender,
    max_body_bytes: int,
    count_ignored: CountIgnored | None = None,
    form_chosen: FormChosen | None = None,
) -> IntakeResult:
    """Verify `body` and enqueue one `leads-inbound` message per leadgen change.

    Guarantees: nothing is queued for a bad signature (`SignatureInvalid`); a signed body that is
    not a JSON object is kept whole as a dead letter (`malformed`); a JSON object that is not an
    envelope is kept whole as a dead letter (`accepted`: Meta's retries would bring the same bytes).
    Each entry and each change is validated on its own: a malformed one is dead-lettered with its
    reason while the rest of the batch is queued (`accepted`). A change for a form `form_chosen`
    refuses is not queued and is counted as ignored content of kind `form:<form id>`. `accepted` only
    after all are durable; `QueueUnavailable` when the queue cannot take them (Meta retries and
    ingestion dedupes).
    """
    if len(body) > max_body_bytes:
        return IntakeResult("too_large")
    verify_signature(body, signature, secrets)

    try:
        document = from_json(body, allow_inf_nan=False)
    except ValueError:
        return _reject_body(sender, body, "body is not JSON", "malformed")
    if not isinstance(document, dict):
        return _reject_body(sender, body, "body is not a JSON object", "malformed")
    try:
        envelope = WebhookEnvelope.model_validate(document)
    except ValidationError as exc:
        return _reject_body(sender, body, f"body is not a webhook envelope: {_first_error(exc)}", "accepted")

    if envelope.object != "page":
        _count(count_ignored, f"object:{envelope.object}", 1)
        return IntakeResult("ignored", reason=f"object {envelope.object!r} is not handled")

    batch = _Batch(received_at=utc_now(), form_chosen=form_chosen)
    for raw_entry in envelope.entry:
        _read_entry(raw_entry, batch)

    try:
        if batch.messages:
            sender.send_many(LEADS_QUEUE, batch.messages)
        for info, payload in batch.letters:
            send_dead_letter(sender, LEADS_QUEUE, dead_letter_message(info, payload))
    except QueueUnavailable:
        log.warning("webhook: queue unavailable; Meta must deliver again", extra={"stage": "webhook"})
        raise

    for kind, count in batch.ignored.items():
        _count(count_ignored, kind, count)
    result = IntakeResult(
        "accepted",
        queued=len(batch.messages),
        ignored=sum(batch.ignored.values()),
        dead_lettered=len(batch.letters),
        lead_ids=batch.lead_ids,
    )
    log.info(
        "webhook: accepted",
        extra={
            "stage": "webhook",
            "outcome": "queued",
            "queued": result.queued,
            "ignored": result.ignored,
            "dead_lettered": result.dead_lettered,
        },
    )
    return result


@dataclass
class _Batch:
    """What one POST turns into: queue messages, dead letters, and ignored content by kind."""

    received_at: datetime
    form_chosen: FormChosen | None = None
    messages: list[str] = field(default_factory=list)
    letters: list[tuple[DeadLetterInfo, dict[str, Any]]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    lead_ids: list[str] = field(default_factory=list)

    def ignore(self, kind: str) -> None:
        self.ignored[kind] = self.ignored.get(kind, 0) + 1

    def dead_letter(self, reason: str, error_type: str, payload: dict[str, Any]) -> None:
        self.letters.append((DeadLetterInfo(reason=reason, stage="webhook", error_type=error_type), payload))


def _read_entry(raw_entry: object, batch: _Batch) -> None:
    """Add one entry's changes to `batch`; a malformed entry becomes one dead letter."""
    if not isinstance(raw_entry, dict):
        batch.dead_letter(f"malformed entry: {NOT_AN_OBJECT}", "MalformedEntry", {"entry": raw_entry})
        return
    try:
        entry = Entry.model_validate(raw_entry)
    except ValidationError as exc:
        batch.dead_letter(f"malformed entry: {_first_error(exc)}", "MalformedEntry", {"entry": raw_entry})
        return
    for raw_change in entry.changes:
        _read_change(entry, raw_change, batch)


def _read_change(entry: Entry, raw_change: object, batch: _Batch) -> None:
    """Queue one leadgen change, ignore another field, or dead-letter it with its reason."""
    where = {"entry_id": entry.page_id, "change": raw_change}
    if not isinstance(raw_change, dict):
        batch.dead_letter(f"malformed change: {NOT_AN_OBJECT}", "MalformedChange", where)
        return
    try:
        change = Change.model_validate(raw_change)
    except ValidationError as exc:
        batch.dead_letter(f"malformed change: {_first_error(exc)}", "MalformedChange", where)
        return
    if change.field != "leadgen":
        batch.ignore(f"field:{change.field}")
        return
    if not isinstance(change.value, dict):
        batch.dead_letter(f"unusable leadgen change: value: {NOT_AN_OBJECT}", "MalformedChange", where)
        return
    try:
        value = LeadgenChange.model_validate(change.value)
    except ValidationError as exc:
        batch.dead_letter(f"unusable leadgen change: {_first_error(exc)}", "MalformedChange", where)
        return
    if batch.form_chosen is not None and not batch.form_chosen(value.form_id):
        batch.ignore(f"form:{value.form_id}")  # FACEBOOK_FORMS_INCLUDE / _EXCLUDE: never queued, never fetched
        return
    message = LeadMessage(
        facebook_lead_id=value.leadgen_id,
        page_id=value.page_id or entry.page_id,
        form_id=value.form_id,
        ad_id=value.ad_id or value.adgroup_id,
        created_time=value.created_time,
        source="webhook",
        received_at=batch.received_at,
        event=change.value,
    )
    text = message.to_text()
    if encoded_size(text) > MAX_MESSAGE_BYTES:  # Meta sent more than ids: keep the ids, never fail the batch
        text = message.model_copy(update={"event": value.model_dump(include=EVENT_IDS, exclude_none=True)}).to_text()
    batch.messages.append(text)
    batch.lead_ids.append(value.leadgen_id)


def _reject_body(sender: QueueSender, body: bytes, reason: str, outcome: Outcome) -> IntakeResult:
    """Keep the whole signed body as a dead letter (`QueueUnavailable` if it cannot be kept)."""
    info = DeadLetterInfo(reason=reason, stage="webhook", error_type="MalformedWebhook")
    try:
        send_dead_letter(sender, LEADS_QUEUE, dead_letter_raw_body(info, body))
    except QueueUnavailable:
        log.warning("webhook: malformed body could not be dead-lettered; Meta must deliver again")
        raise
    log.warning("webhook: signed body dead-lettered", extra={"stage": "webhook", "outcome": reason[:100]})
    return IntakeResult(outcome, reason=reason, dead_lettered=1)


def _count(count_ignored: CountIgnored | None, kind: str, n: int) -> None:
    log.info("webhook: ignored unsupported content", extra={"stage": "webhook", "outcome": "ignored", "kind": kind})
    if count_ignored is None:
        return
    try:
        count_ignored(kind, n)
    except Exception:  # counting must never make Meta retry a delivery we handled
        log.warning("webhook: could not count ignored content", exc_info=True)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "value"
    return f"{where}: {error['msg']}"

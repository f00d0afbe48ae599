"""One message, one outcome: the processor both queue consumers run each message through.

`process(body, Model, handler, consumer)` parses the body at the edge (`envelope.parse_message`),
calls the handler with the typed message, and settles the message's fate once:

- the handler returns `Handled` (done) or `LookAgain` (nothing failed, but the message comes back
  after a delay without using an attempt: a cap, a claim in progress, a throttled sender);
- it raises `TransientError` → a copy is re-queued along the retry ladder (`RetryPolicy`), or
  dead-lettered once the attempts are exhausted;
- it raises `PermanentError`, or the body is malformed → a dead letter on `<queue>-poison` with
  its reason, mirrored into `failed_events` (when the store is away, the poison queue keeps it
  and the sweep records it later).

`QueueUnavailable` is the one exception that escapes: the host then retries the original message,
so nothing is lost. Every outcome is logged here; the consumers hold only their domain steps.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, Self, TypeVar

from shared.errors import LeadAgentError, MalformedMessage, PermanentError, QueueUnavailable, TransientError
from shared.logs import get_logger
from shared.messaging.dead_letters import dead_letter_message, dead_letter_raw_body, send_dead_letter
from shared.messaging.envelope import MessageModel, parse_message
from shared.messaging.messages import DeadLetterInfo
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.storage.names import poison_queue
from shared.store import Store
from shared.store.failed_events import FailedEvent

log = get_logger(__name__)

REASON_WIDTH = 1000


class QueueMessage(MessageModel, Protocol):
    """What the processor needs of a message model: our attempt count, the lead it names, its text."""

    @property
    def attempt(self) -> int: ...

    @property
    def lead_id(self) -> str | None: ...

    def to_text(self) -> str: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


M = TypeVar("M", bound=QueueMessage)
R = TypeVar("R", bound="Handled")


@dataclass(frozen=True)
class Handled:
    """A handler's result for a message that is done: what happened, in a word."""

    outcome: str
    reason: str | None = None


@dataclass(frozen=True)
class LookAgain:
    """A handler's result for a message that must come back after `delay_seconds`; no attempt is used."""

    outcome: str
    delay_seconds: float
    reason: str | None = None


@dataclass(frozen=True)
class Consumer:
    """One queue's consumer: the queue, its stage name, its retry ladder, and where dead letters go."""

    queue: str
    stage: Literal["ingest", "notify", "deliver"]
    what: str  # how a malformed message's reason names it: "lead message", "notification"
    retry: RetryPolicy
    sender: QueueSender
    store: Store
    rng: random.Random | None = None


@dataclass(frozen=True)
class Outcome(Generic[M, R]):
    """What became of one message (ids, counts and reasons only, never lead data).

    `outcome` is the handler's word (`stored`, `sent`, `in_progress`…), else `retrying` or
    `dead_lettered`; `result` is the handler's result when it returned one; `delay_seconds` is set
    when a copy was re-message.
    """

    outcome: str
    message: M | None
    result: R | LookAgain | None = None
    attempt: int = 0
    reason: str | None = None
    delay_seconds: float | None = None


def process(body: bytes, model: type[M], handler: Callable[[M], R | LookAgain], consumer: Consumer) -> Outcome[M, R]:
    """Parse `body` as `model`, run `handler` on it, and give the message exactly one outcome."""
    try:
        message = parse_message(body, model, consumer.what)
    except MalformedMessage as exc:
        info = DeadLetterInfo(reason=str(exc), stage=consumer.stage, error_type=type(exc).__name__)
        send_dead_letter(consumer.sender, consumer.queue, dead_letter_raw_body(info, body))
        _mirror(consumer, info, body.decode("utf-8", errors="replace"))
        log.error(f"{consumer.stage}: dead-lettered", extra={"stage": consumer.stage, "outcome": "dead_lettered"})
        return Outcome("dead_lettered", None, reason=info.reason)
    try:
        result = handler(message)
    except QueueUnavailable:
        raise
    except TransientError as exc:
        return _retry_later(message, exc, consumer)
    except PermanentError as exc:
        return _dead_letter(message, exc, consumer, attempts=message.attempt + 1)
    if isinstance(result, LookAgain):
        consumer.sender.send(consumer.queue, message.to_text(), delay_seconds=result.delay_seconds)
        return Outcome(result.outcome, message, result, message.attempt, result.reason, result.delay_seconds)
    return Outcome(result.outcome, message, result, message.attempt, result.reason)


def _retry_later(message: M, exc: TransientError, consumer: Consumer) -> Outcome[M, R]:
    """Re-queue a copy along the retry ladder, or dead-letter it when this was the last attempt."""
    if exc.counts_attempt and consumer.retry.exhausted(message.attempt):
        return _dead_letter(message, exc, consumer, attempts=message.attempt + 1, exhausted=True)
    attempts, delay = consumer.retry.next_retry(message.attempt, exc, consumer.rng)
    reason = _describe(exc)
    retry = message.model_copy(update={"attempt": attempts, "last_error": reason})
    consumer.sender.send(consumer.queue, retry.to_text(), delay_seconds=delay)
    with suppress(LeadAgentError):  # counted for stats when the store is up; the retry itself is queued
        consumer.store.audit(
            f"{consumer.stage}_retry", message.lead_id, {"attempt": attempts, "error": type(exc).__name__}
        )
    log.warning(
        f"{consumer.stage}: transient failure, retrying later",
        extra={
            "stage": consumer.stage,
            "outcome": "retrying",
            "facebook_lead_id": message.lead_id,
            "attempt": attempts,
            "delay_seconds": round(delay, 1),
            "error_type": type(exc).__name__,
        },
    )
    return Outcome("retrying", message, None, attempts, reason, delay)


def _dead_letter(
    message: M, exc: LeadAgentError, consumer: Consumer, attempts: int, exhausted: bool = False
) -> Outcome[M, R]:
    """Put the message on `<queue>-poison` with its reason, and mirror it into `failed_events`."""
    reason = _describe(exc)
    if exhausted:
        reason = f"attempts exhausted after {attempts}: {reason}"
    info = DeadLetterInfo(
        reason=reason,
        stage=consumer.stage,
        error_type=type(exc).__name__,
        attempts=attempts,
        facebook_lead_id=message.lead_id,
    )
    text = message.to_text()
    send_dead_letter(consumer.sender, consumer.queue, dead_letter_message(info, json.loads(text)))
    _mirror(consumer, info, text)
    log.error(
        f"{consumer.stage}: dead-lettered",
        extra={
            "stage": consumer.stage,
            "outcome": "dead_lettered",
            "facebook_lead_id": message.lead_id,
            "attempt": attempts,
            "error_type": type(exc).__name__,
        },
    )
    return Outcome("dead_lettered", message, None, attempts, reason)


def _mirror(consumer: Consumer, info: DeadLetterInfo, payload: str) -> None:
    """Mirror a dead letter into `failed_events`; the poison queue already holds it durably."""
    try:
        consumer.store.failed_events.record_failed_event(
            FailedEvent(
                queue=poison_queue(consumer.queue),
                stage=info.stage,
                error=info.reason,
                attempts=info.attempts,
                payload=payload,
                facebook_lead_id=info.facebook_lead_id,
                failed_at=info.failed_at,
                dead_letter_id=info.id,
            )
        )
    except LeadAgentError as exc:  # the sweep records it from the poison queue later
        dims = {"stage": consumer.stage, "facebook_lead_id": info.facebook_lead_id, "error_type": type(exc).__name__}
        log.warning(f"{consumer.stage}: dead letter kept on the poison queue only (store unavailable)", extra=dims)


def _describe(exc: LeadAgentError) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_WIDTH]


__all__ = ["Consumer", "Handled", "LookAgain", "Outcome", "QueueMessage", "process"]

"""Ingest one `leads-inbound` message: every message ends stored, duplicate, retrying or dead-lettered.

Failures are classified once. Transient ones (Graph 5xx/timeout/throttling, token invalid,
permission missing, store unavailable) re-queue a copy with `attempt + 1` and an exponential
visibility delay, so the host's dequeue count is not burnt and an outage of hours ends in
ingestion. Permanent ones (malformed message, lead not fetchable, invalid lead, attempts
exhausted) become a dead letter on `leads-inbound-poison` plus a `failed_events` row.
The only exception that escapes is `QueueUnavailable` while re-queuing or dead-lettering: the
host then retries the original message, so nothing is lost.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from shared.errors import InvalidLead, LeadAgentError, PermanentError, TransientError
from shared.graph.integration import IntegrationMonitor
from shared.ingest.transform import normalise_lead
from shared.logs import get_logger
from shared.messaging.dead_letters import dead_letter_message, dead_letter_raw_body, send_dead_letter
from shared.messaging.messages import DeadLetterInfo, LeadMessage
from shared.messaging.retry import retry_delay
from shared.messaging.sender import QueueSender
from shared.models.lead import GraphLead
from shared.queues.names import LEADS_QUEUE, poison_queue
from shared.store import Store
from shared.store.failed_events import FailedEvent
from shared.store.leads import AlreadyStored

log = get_logger(__name__)

Outcome = Literal["stored", "duplicate", "retrying", "dead_lettered"]


@dataclass(frozen=True)
class IngestPolicy:
    """How many of our own attempts a lead gets, and the delays between them."""

    max_attempts: int = 40
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    paused_retry_seconds: float = 300.0


@dataclass
class IngestDeps:
    """What the pipeline needs; tests pass real parts (SQLite, Azurite, sandbox Graph)."""

    store: Store
    fetch_lead: Callable[[str], dict[str, Any]]
    sender: QueueSender
    policy: IngestPolicy
    monitor: IntegrationMonitor | None = None
    announce: Callable[[str], None] | None = None
    rng: random.Random | None = None


@dataclass(frozen=True)
class IngestResult:
    """What happened to one message (ids and reasons only, never lead data)."""

    outcome: Outcome
    facebook_lead_id: str | None
    attempt: int = 0
    reason: str | None = None
    delay_seconds: float | None = None
    source: str | None = None


def ingest_lead_message(body: bytes, deps: IngestDeps) -> IngestResult:
    """Run the pipeline for one queue message body (already base64-decoded by the host)."""
    try:
        message = LeadMessage.model_validate_json(body)
    except ValidationError as exc:
        info = DeadLetterInfo(
            reason=f"malformed lead message: {exc.errors()[0]['msg']}", stage="ingest", error_type="MalformedMessage"
        )
        send_dead_letter(deps.sender, LEADS_QUEUE, dead_letter_raw_body(info, body))
        _record_failed(deps, info, body.decode("utf-8", errors="replace"))
        return IngestResult("dead_lettered", None, reason=info.reason)

    try:
        return _ingest(message, deps)
    except TransientError as exc:
        return _retry_later(message, exc, deps)
    except PermanentError as exc:
        return _dead_letter(message, exc, deps, attempts=message.attempt + 1)


def _ingest(message: LeadMessage, deps: IngestDeps) -> IngestResult:
    lead_id = message.facebook_lead_id
    detail = {"attempt": message.attempt}
    if deps.store.leads.has_lead(lead_id):
        deps.store.leads.record_duplicate(lead_id, message.source, detail)
        return IngestResult("duplicate", lead_id, message.attempt, source=message.source)
    if deps.monitor is not None:
        deps.monitor.check_fetch_allowed()
    raw = deps.fetch_lead(lead_id)
    if deps.monitor is not None:
        deps.monitor.token_ok()
    try:
        lead = GraphLead.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidLead(f"Graph lead does not validate: {where}: {first['msg']}") from None
    if lead.id != lead_id:
        raise InvalidLead(f"Graph returned lead {lead.id} for {lead_id}")
    notify = deps.announce is not None
    outcome = deps.store.leads.store_lead(normalise_lead(lead, message), message.event, raw, detail, notify=notify)
    if isinstance(outcome, AlreadyStored):
        return IngestResult("duplicate", lead_id, message.attempt, source=message.source)
    if deps.announce is not None:
        try:
            deps.announce(lead_id)
        except TransientError:  # the outbox row is committed: the outbox flush queues it shortly
            log.warning("ingest: notification left to the outbox flush", extra={"facebook_lead_id": lead_id})
    return IngestResult("stored", lead_id, message.attempt, source=message.source)


def _retry_later(message: LeadMessage, exc: TransientError, deps: IngestDeps) -> IngestResult:
    policy = deps.policy
    if exc.counts_attempt:
        attempts = message.attempt + 1
        if attempts >= policy.max_attempts:
            return _dead_letter(message, exc, deps, attempts=attempts, exhausted=True)
        delay = retry_delay(
            message.attempt, policy.retry_base_seconds, policy.retry_max_seconds, exc.min_delay_seconds, deps.rng
        )
    else:
        # An operator must fix this (token, permission): wait as long as it takes, attempts untouched.
        attempts = message.attempt
        floor = max(policy.paused_retry_seconds, exc.min_delay_seconds)
        delay = retry_delay(0, floor, max(floor, policy.retry_max_seconds), floor, deps.rng)
    retry = message.model_copy(update={"attempt": attempts, "last_error": _describe(exc)})
    deps.sender.send(LEADS_QUEUE, retry.to_text(), delay_seconds=delay)
    with suppress(LeadAgentError):  # counted for stats when the store is up; the retry itself is queued
        deps.store.audit("ingest_retry", message.facebook_lead_id, {"attempt": attempts, "error": type(exc).__name__})
    log.warning(
        "ingest: transient failure, retrying later",
        extra={
            "stage": "ingest",
            "outcome": "retrying",
            "facebook_lead_id": message.facebook_lead_id,
            "attempt": attempts,
            "delay_seconds": round(delay, 1),
            "error_type": type(exc).__name__,
        },
    )
    return IngestResult("retrying", message.facebook_lead_id, attempts, _describe(exc), delay)


def _dead_letter(
    message: LeadMessage, exc: LeadAgentError, deps: IngestDeps, attempts: int, exhausted: bool = False
) -> IngestResult:
    reason = _describe(exc)
    if exhausted:
        reason = f"attempts exhausted after {attempts}: {reason}"
    info = DeadLetterInfo(
        reason=reason,
        stage="ingest",
        error_type=type(exc).__name__,
        attempts=attempts,
        facebook_lead_id=message.facebook_lead_id,
    )
    payload = json.loads(message.to_text())
    send_dead_letter(deps.sender, LEADS_QUEUE, dead_letter_message(info, payload))
    _record_failed(deps, info, message.to_text())
    log.error(
        "ingest: dead-lettered",
        extra={
            "stage": "ingest",
            "outcome": "dead_lettered",
            "facebook_lead_id": message.facebook_lead_id,
            "attempt": attempts,
            "error_type": type(exc).__name__,
        },
    )
    return IngestResult("dead_lettered", message.facebook_lead_id, attempts, reason)


def _record_failed(deps: IngestDeps, info: DeadLetterInfo, payload: str) -> None:
    """Mirror a dead letter into `failed_events`; the poison queue already holds it durably."""
    try:
        deps.store.failed_events.record_failed_event(
            FailedEvent(
                queue=poison_queue(LEADS_QUEUE),
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
        log.warning(
            "ingest: dead letter kept on the poison queue only (store unavailable)",
            extra={"stage": "ingest", "facebook_lead_id": info.facebook_lead_id, "error_type": type(exc).__name__},
        )


def _describe(exc: LeadAgentError) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


__all__ = ["IngestDeps", "IngestPolicy", "IngestResult", "ingest_lead_message"]

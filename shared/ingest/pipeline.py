"""Ingest one lead: the domain steps of the `leads-inbound` consumer (`shared/ingest/consumer.py`).

The domain steps only: skip a lead already stored, fetch it from Graph, validate it, store it
(the unique key decides), and queue its email. Failures are raised, classified once
(`shared/errors.py`), and the message processor (`shared/messaging/processor.py`) gives them their
outcome: transient ones (Graph 5xx/timeout/throttling, token invalid, permission missing, store
unavailable) re-queue a copy along the retry ladder, so an outage of hours ends in ingestion;
permanent ones (malformed message, lead not fetchable, invalid lead, attempts exhausted) become a
dead letter on `leads-inbound-poison` plus a `failed_events` row.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from shared.errors import InvalidLead, TransientError
from shared.ingest.transform import normalise_lead
from shared.logs import get_logger
from shared.messaging.messages import LeadMessage
from shared.messaging.processor import Handled
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.models.lead import GraphLead, NormalisedLead
from shared.monitoring.token_state import IntegrationMonitor
from shared.store import Store
from shared.store.leads import AlreadyStored

log = get_logger(__name__)


@dataclass
class IngestDeps:
    """What the pipeline needs; tests pass real parts (SQLite, Azurite, sandbox Graph)."""

    store: Store
    fetch_lead: Callable[[str, str | None], dict[str, Any]]  # (lead id, page id)
    sender: QueueSender
    policy: RetryPolicy
    monitor: IntegrationMonitor | None = None
    announce: Callable[[str], None] | None = None
    deliver: Callable[[str], None] | None = None  # queue the lead's deliveries (webhooks, chats) after its commit
    rng: random.Random | None = None
    form_chosen: Callable[[str | None], bool] | None = None  # FACEBOOK_FORMS_INCLUDE / _EXCLUDE; None takes every form


def ingest_lead(message: LeadMessage, deps: IngestDeps) -> Handled:
    """Store the lead `message` names, once: `stored`, or `duplicate` when it already was.

    A lead of a form that is not chosen is `skipped` ("form not chosen"): never fetched when the
    message names its form, never stored or announced when only Graph's answer does.
    """
    lead_id = message.facebook_lead_id
    detail = {"attempt": message.attempt}
    if not _chosen(deps, message.form_id):
        return FORM_NOT_CHOSEN
    if deps.store.leads.has_lead(lead_id):
        deps.store.leads.record_duplicate(lead_id, message.source, detail)
        return Handled("duplicate")
    if deps.monitor is not None:
        deps.monitor.check_fetch_allowed(message.page_id)
    raw = deps.fetch_lead(lead_id, message.page_id)  # with the page's own token when it has one
    if deps.monitor is not None:
        deps.monitor.token_ok(message.page_id)
    lead = _graph_lead(raw, lead_id)
    if message.form_id is None and not _chosen(deps, lead.form_id):
        return FORM_NOT_CHOSEN
    notify = deps.announce is not None
    normalised = normalise_lead(lead, message)
    outcome = deps.store.leads.store_lead(normalised, message.event, raw, detail, notify=notify)
    if isinstance(outcome, AlreadyStored):
        return Handled("duplicate")
    stored = Ingested.timed(normalised, datetime.now(UTC))
    if deps.announce is not None:
        try:
            deps.announce(lead_id)
        except TransientError:  # the outbox row is committed: the outbox flush queues it shortly
            log.warning("ingest: notification left to the outbox flush", extra={"facebook_lead_id": lead_id})
    if deps.deliver is not None:
        try:
            deps.deliver(lead_id)
        except TransientError:  # the rows are committed: the flush queues them shortly
            log.warning("ingest: deliveries left to the outbox flush", extra={"facebook_lead_id": lead_id})
    return stored


@dataclass(frozen=True)
class Ingested(Handled):
    """A lead stored now, with how long it took to get here (ms; the trigger logs them as dimensions).

    `created_to_stored_ms` runs from Meta's `created_time`; `webhook_to_stored_ms` from our webhook's
    receipt, None for a polled or reprocessed lead.
    """

    created_to_stored_ms: int | None = None
    webhook_to_stored_ms: int | None = None

    @classmethod
    def timed(cls, lead: NormalisedLead, stored_at: datetime) -> Ingested:
        received = lead.webhook_received_at
        return cls(
            "stored",
            created_to_stored_ms=round((stored_at - lead.created_time).total_seconds() * 1000),
            webhook_to_stored_ms=None if received is None else round((stored_at - received).total_seconds() * 1000),
        )

    def dimensions(self) -> dict[str, int | None]:
        return {"created_to_stored_ms": self.created_to_stored_ms, "webhook_to_stored_ms": self.webhook_to_stored_ms}


FORM_NOT_CHOSEN = Handled("skipped", "form not chosen")


def _chosen(deps: IngestDeps, form_id: str | None) -> bool:
    return deps.form_chosen is None or deps.form_chosen(form_id)


def _graph_lead(raw: dict[str, Any], lead_id: str) -> GraphLead:
    """Stage three of the edge: Graph's answer as a `GraphLead`, and the one asked for (else `InvalidLead`)."""
    try:
        lead = GraphLead.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidLead(f"Graph lead does not validate: {where}: {first['msg']}") from None
    if lead.id != lead_id:
        raise InvalidLead(f"Graph returned lead {lead.id} for {lead_id}")
    return lead


__all__ = ["IngestDeps", "Ingested", "ingest_lead"]

"""Queue messages: a lead change on `leads-inbound`, a notification on `notifications`, a dead letter on `-poison`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models.envelope import DigitsId, GraphId
from shared.telemetry import current_traceparent

LeadSource = Literal["webhook", "polling", "reprocess"]
NotificationKind = Literal["lead", "alert", "digest"]
MESSAGE_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


class LeadMessage(BaseModel):
    """One lead to ingest, named by ids only: never the lead's answers, so no PII waits on a queue.

    `attempt` counts our own delayed retries (not the host's dequeue count). `event` is the
    webhook's `leadgen` value (ids only). A `lead` key left by an older poller is ignored: the
    lead is fetched from Graph.
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    v: int = MESSAGE_VERSION
    kind: Literal["lead"] = "lead"
    facebook_lead_id: DigitsId
    page_id: GraphId | None = None
    form_id: DigitsId | None = None
    ad_id: GraphId | None = None
    created_time: int | None = None
    source: LeadSource = "webhook"
    received_at: datetime = Field(default_factory=utc_now)
    attempt: int = Field(0, ge=0)
    event: dict[str, Any] | None = None
    last_error: str | None = None
    # W3C trace context of where the lead came in (webhook, poller): ingestion continues that trace.
    # Set only while OpenTelemetry is on (shared/telemetry.py); the retries' copies keep it.
    traceparent: str | None = Field(default_factory=current_traceparent)

    @property
    def lead_id(self) -> str:
        """The lead this message names (dead letters and audit rows carry it)."""
        return self.facebook_lead_id

    def to_text(self) -> str:
        """Compact JSON, the queue message text before the host's base64."""
        return self.model_dump_json(exclude_none=True)


class Receipt(BaseModel):
    """An email the provider accepted whose `sent` record could not be written yet."""

    model_config = ConfigDict(defer_build=True)

    claim_id: str
    keys: list[str]
    provider_id: str


class NotificationMessage(BaseModel):
    """The `notifications` queue message: what to announce and how many sends were tried."""

    model_config = ConfigDict(defer_build=True)

    v: int = 1
    kind: NotificationKind
    key: str
    attempt: int = 0
    last_error: str | None = None
    receipt: Receipt | None = None
    resend: bool = False
    # W3C trace context of the ingestion that queued it (only while OpenTelemetry is on): the send continues it.
    traceparent: str | None = Field(default_factory=current_traceparent)

    @property
    def lead_id(self) -> str | None:
        """The lead a lead notification announces; None for alerts and digests."""
        return self.key if self.kind == "lead" else None

    def to_text(self) -> str:
        return self.model_dump_json(exclude_none=True)


class DeliveryMessage(BaseModel):
    """The `deliveries` queue message: which row of `deliveries` to send (its state and attempts live in the row)."""

    model_config = ConfigDict(defer_build=True)

    v: int = 1
    key: str = Field(min_length=1, max_length=300)
    attempt: int = 0  # the processor's own retries (database away); the delivery ladder counts in the row
    last_error: str | None = None

    @property
    def lead_id(self) -> str | None:
        """The lead a lead delivery carries (`<destination>|lead|<id>`); None for alerts and stages."""
        _, kind, subject = [*self.key.split("|", 2), "", ""][:3]
        return subject if kind == "lead" else None

    def to_text(self) -> str:
        return self.model_dump_json(exclude_none=True)


def new_dead_letter_id() -> str:
    return uuid.uuid4().hex


class DeadLetterInfo(BaseModel):
    """Why a message was dead-lettered: the poison queue carries no reason of its own.

    `id` names the dead letter everywhere (poison message and `failed_events` row), so mirroring
    it twice writes one row.
    """

    model_config = ConfigDict(defer_build=True)

    id: str = Field(default_factory=new_dead_letter_id)
    reason: str
    stage: Literal["webhook", "ingest", "notify", "deliver"]
    error_type: str
    attempts: int = 0
    failed_at: datetime = Field(default_factory=utc_now)
    facebook_lead_id: str | None = None
    failed_event_id: int | None = None


class DeadLetter(BaseModel):
    """The body we put on `<queue>-poison`: the reason, and the message or raw body that failed."""

    model_config = ConfigDict(defer_build=True)

    dead_letter: DeadLetterInfo
    message: dict[str, Any] | None = None
    raw_body: str | None = None
    raw_body_encoding: Literal["utf-8", "zlib+base64"] | None = None
    raw_body_truncated: bool = False
    raw_body_size: int | None = None
    raw_body_sha256: str | None = None

    def to_text(self) -> str:
        return self.model_dump_json(exclude_none=True)

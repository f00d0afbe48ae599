"""What the email templates are given: a lead to announce, a day to summarise, an incident to report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.timing import Timing


@dataclass(frozen=True)
class LeadSummary:
    """One stored lead as an instant email shows it (every answer, names of form/ad when known)."""

    facebook_lead_id: str
    created_time: datetime
    source: str
    page_id: str | None
    form_id: str | None
    form_name: str | None
    ad_id: str | None
    ad_name: str | None
    adset_name: str | None
    campaign_id: str | None
    campaign_name: str | None
    full_name: str | None
    email: str | None
    phone_number: str | None
    fields: dict[str, list[str]]
    is_organic: bool | None = None
    platform: str | None = None
    mapped: dict[str, str] = field(default_factory=dict)  # FIELD_MAP's names (and the built-in ones) → first answer


@dataclass(frozen=True)
class DigestData:
    """The last 24 hours, for the daily digest."""

    period_start: datetime
    period_end: datetime
    leads_total: int
    by_source: dict[str, int]
    by_form: list[tuple[str, int]]
    duplicates_ignored: int
    dead_letters_open: int
    poll_runs: int
    poll_errors: int
    missing_found: int
    enqueued_by_poller: int
    token: dict[str, Any]
    open_incidents: dict[str, dict[str, Any]]
    leads_per_hour: list[tuple[datetime, int]] = field(default_factory=list)
    notifications_sent: int = 0
    speed_to_lead: Timing = field(default_factory=Timing)  # Meta's created_time → email accepted
    webhook_to_stored: Timing = field(default_factory=Timing)  # webhook receipt → lead row committed
    not_from_webhook: int = 0  # leads stored by polling or reprocess: no webhook time, not in the figure above


@dataclass(frozen=True)
class AlertData:
    """An incident's transition: opened (something needs a human) or resolved."""

    kind: str
    opened: bool
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

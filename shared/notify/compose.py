"""What an email carries and to whom: recipients, the sending slot and claim, the lead group, the rendering.

`prepare` reserves a sending slot (per-minute and per-hour caps shared by every instance), claims
the notification, and for a lead also claims every other pending lead for the same recipients, so
a burst becomes a few grouped emails. When there is nothing to send now it answers why instead
(no recipients, cap reached, claimed elsewhere) and gives back what it took.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from shared.errors import StoreUnavailable
from shared.messaging.messages import NotificationMessage
from shared.messaging.processor import Handled, LookAgain
from shared.models.fields import mapped_fields
from shared.notify.base import OutgoingEmail
from shared.notify.models import AlertData, LeadSummary
from shared.notify.templates import RenderedEmail, render_alert, render_lead_email
from shared.notify.templates.html import SUBJECT_MAX, shorten
from shared.notify.types import IN_PROGRESS_RECHECK_SECONDS, NotifyDeps
from shared.store.leads import StoredLead
from shared.store.outbox import PendingLead


@dataclass(frozen=True)
class Prepared:
    """An email ready to go: what it carries (`keys`) under `claim_id`, in the sending slot `slot`."""

    email: OutgoingEmail
    keys: list[str]
    claim_id: str
    slot: str


def prepare(
    message: NotificationMessage, deps: NotifyDeps, channel: str, announced: list[StoredLead]
) -> Prepared | Handled | LookAgain:
    """Reserve a slot and claim what this email will carry; the result instead when there is nothing to send now."""
    head = _head_lead(message, deps)
    recipients = _recipients(message, deps, head)
    if not recipients:
        deps.store.outbox.mark_outbox(message.kind, message.key, "skipped")
        return Handled("skipped", "no recipients configured")
    now = deps.clock()
    policy = deps.policy
    slot, claim_id = uuid.uuid4().hex, uuid.uuid4().hex
    claim = deps.store.outbox.claim_email(
        message.key, message.kind, channel, claim_id, slot, now, policy.per_minute, policy.per_hour
    )
    if claim == "cap_reached":
        return LookAgain("waiting", _cap_wait(message, deps, now), "email cap reached")
    if claim == "taken":
        return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS)
    keys = [message.key]
    try:
        rendered = _render(message, deps, recipients, channel, claim_id, keys, announced, head)
    except BaseException:
        give_back_slot(deps, claim_id, slot)
        raise
    if isinstance(rendered, Handled):
        give_back_slot(deps, claim_id, slot)
        return rendered
    subject = shorten(f"(resent) {rendered.subject}", SUBJECT_MAX) if message.resend else rendered.subject
    if message.kind == "digest":
        email = OutgoingEmail(subject, rendered.text, rendered.html, bcc=recipients, idempotency_key=claim_id)
    else:
        email = OutgoingEmail(subject, rendered.text, rendered.html, to=recipients, idempotency_key=claim_id)
    return Prepared(email, keys, claim_id, slot)


def release_quietly(deps: NotifyDeps, claim_id: str) -> None:
    """Give a claim back if the database lets us; a stale `claimed` row is reclaimable anyway."""
    with suppress(StoreUnavailable):
        deps.store.outbox.release_claim(claim_id)


def give_back_slot(deps: NotifyDeps, claim_id: str, slot: str) -> None:
    """Give back a claim and its sending slot when nothing is sent under them (best effort)."""
    release_quietly(deps, claim_id)
    with suppress(StoreUnavailable):
        deps.store.outbox.release_email_slot(slot)


def lead_summary(row: StoredLead, form_name: str | None, field_map: Mapping[str, str] | None = None) -> LeadSummary:
    """A stored lead as the instant email shows it, its answers also under `field_map`'s names (`mapped`)."""
    return LeadSummary(
        facebook_lead_id=row.facebook_lead_id,
        created_time=row.created_time,
        source=row.source,
        page_id=row.page_id,
        form_id=row.form_id,
        form_name=form_name,
        ad_id=row.ad_id,
        ad_name=row.ad_name,
        adset_name=row.adset_name,
        campaign_id=row.campaign_id,
        campaign_name=row.campaign_name,
        full_name=row.full_name,
        email=row.email,
        phone_number=row.phone_number,
        fields=row.fields,
        is_organic=row.is_organic,
        platform=row.platform,
        mapped=mapped_fields(row.fields, field_map or {}),
    )


def _render(
    message: NotificationMessage,
    deps: NotifyDeps,
    recipients: tuple[str, ...],
    channel: str,
    claim_id: str,
    keys: list[str],
    announced: list[StoredLead],
    head: StoredLead | None,
) -> RenderedEmail | Handled:
    """The email's content; for a lead, first claim the other pending leads it will carry (into `keys`)."""
    if message.kind == "lead":
        keys += _claim_group(message.key, recipients, deps, channel, claim_id)
        return _render_leads(keys, deps, announced, head)
    if message.kind == "alert":
        return _render_alert(message.key, deps)
    if deps.build_digest is None:
        return Handled("skipped", "digest not configured")
    return deps.build_digest(message.key)


def _cap_wait(message: NotificationMessage, deps: NotifyDeps, now: datetime) -> float:
    """Seconds to wait for a sending slot, spread over the backlog so waiting messages do not all wake at once.

    The next slot frees at `free_at`; after it, one email per slot interval carries up to
    `max_group` leads, so a backlog of B leads needs about B / max_group slots. A lead message
    waits for the next slot plus a random share of that horizon: roughly a group's worth of
    messages wakes per slot (one sends, the rest find their lead announced) instead of all of them.
    """
    policy = deps.policy
    free_at = deps.store.outbox.next_email_slot(now, policy.per_minute, policy.per_hour)
    delay = max(1.0, (free_at - now).total_seconds() + 1)
    if message.kind != "lead":
        return delay
    slot_interval = max(60.0 / max(policy.per_minute, 1), 3600.0 / max(policy.per_hour, 1))
    emails_needed = math.ceil(deps.store.outbox.count_pending_lead_notifications() / max(policy.max_group, 1))
    horizon = max(emails_needed - 1, 0) * slot_interval
    return delay + (deps.rng or random).uniform(0, horizon)


def _head_lead(message: NotificationMessage, deps: NotifyDeps) -> StoredLead | None:
    """The lead a lead notification names, read once for its recipients and its rendering (None otherwise)."""
    if message.kind != "lead":
        return None
    rows = deps.store.leads.leads([message.key])
    return rows[0] if rows else None


def _recipients(message: NotificationMessage, deps: NotifyDeps, head: StoredLead | None) -> tuple[str, ...]:
    if message.kind == "alert":
        return deps.recipients.for_alerts()
    if message.kind == "digest":
        return deps.recipients.for_digest()
    if head is None:
        return deps.recipients.default
    return deps.recipients.for_lead(head.page_id, head.form_id)


def _claim_group(first: str, recipients: tuple[str, ...], deps: NotifyDeps, channel: str, claim_id: str) -> list[str]:
    """Claim other pending leads for the same recipients, up to the per-email maximum."""

    def same_recipients(pending: PendingLead) -> bool:
        return deps.recipients.for_lead(pending.page_id, pending.form_id) == recipients

    return deps.store.outbox.claim_group(first, channel, claim_id, deps.policy.max_group, same_recipients)


def _render_leads(
    keys: list[str], deps: NotifyDeps, announced: list[StoredLead], head: StoredLead | None
) -> RenderedEmail | Handled:
    """The email of the claimed leads; the head lead was read before its claim, the grouped ones are read here."""
    rows = {head.facebook_lead_id: head} if head is not None else {}
    others = [key for key in keys if key not in rows]
    if others:
        rows.update((row.facebook_lead_id, row) for row in deps.store.leads.leads(others))
    summaries = []
    for key in keys:
        row = rows.get(key)
        if row is None:
            continue
        announced.append(row)
        summaries.append(lead_summary(row, deps.form_name(row.form_id) if row.form_id else None, deps.field_map))
    if not summaries:
        return Handled("skipped", "lead not stored")
    return render_lead_email(summaries, deps.tz)


def _render_alert(key: str, deps: NotifyDeps) -> RenderedEmail | Handled:
    payload = deps.store.outbox.outbox_payload("alert", key)
    if payload is None:
        return Handled("skipped", "alert not in the outbox")
    at = datetime.fromisoformat(str(payload["at"]).replace("Z", "+00:00"))
    return render_alert(
        AlertData(payload["kind"], bool(payload["opened"]), at, dict(payload.get("detail") or {})), deps.tz
    )

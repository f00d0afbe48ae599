"""Turn a validated Graph lead into the normalised lead the store keeps.

Every `field_data` name maps to its list of values exactly as sent (unicode intact, order kept);
`email`, `full_name` and `phone_number` are normalised copies for search and notification.
"""

from __future__ import annotations

import re
from datetime import datetime

from shared.messaging.messages import LeadMessage
from shared.models.lead import GraphLead, NormalisedLead

_PHONE_NOISE = re.compile(r"[\s().\-/]")


def answers_by_name(lead: GraphLead) -> dict[str, list[str]]:
    """Every question key → its values, in Meta's order (a repeated key's values are appended)."""
    fields: dict[str, list[str]] = {}
    for datum in lead.field_data:
        fields.setdefault(datum.name, []).extend(datum.values)
    return fields


def _first(fields: dict[str, list[str]], *names: str) -> str | None:
    lowered = {key.lower(): values for key, values in fields.items()}
    for name in names:
        for value in lowered.get(name, []):
            if value.strip():
                return value.strip()
    return None


def normalise_email(value: str | None) -> str | None:
    """Trimmed and lower-cased; None when empty."""
    return value.strip().lower() or None if value else None


def normalise_phone(value: str | None) -> str | None:
    """Spaces, dots, dashes, slashes and brackets removed; a leading `+` kept; no country guessed."""
    if not value:
        return None
    compact = _PHONE_NOISE.sub("", value.strip())
    return compact or None


def normalise_lead(lead: GraphLead, message: LeadMessage) -> NormalisedLead:
    """The store's view of `lead`; ids missing from Graph fall back to the webhook's."""
    fields = answers_by_name(lead)
    full_name = _first(fields, "full_name", "name")
    if full_name is None:
        parts = [p for p in (_first(fields, "first_name"), _first(fields, "last_name")) if p]
        full_name = " ".join(parts) or None
    return NormalisedLead(
        facebook_lead_id=lead.id,
        page_id=message.page_id,
        form_id=lead.form_id or message.form_id,
        ad_id=lead.ad_id or message.ad_id,
        ad_name=lead.ad_name,
        adset_id=lead.adset_id,
        adset_name=lead.adset_name,
        campaign_id=lead.campaign_id,
        campaign_name=lead.campaign_name,
        created_time=lead.created_time,
        is_organic=lead.is_organic,
        platform=lead.platform,
        source=message.source,
        email=normalise_email(_first(fields, "email", "work_email")),
        full_name=full_name,
        phone_number=normalise_phone(_first(fields, "phone_number", "phone", "work_phone_number")),
        fields=fields,
        disclaimers=[d.model_dump() for d in lead.custom_disclaimer_responses],
        webhook_received_at=webhook_received_at(message),
    )


def webhook_received_at(message: LeadMessage) -> datetime | None:
    """When the webhook took this lead change; None for a polled or reprocessed lead.

    Only a time the message carries counts: `received_at` defaults to the moment a message without
    one is read, which is not when the webhook received anything.
    """
    if message.source != "webhook" or "received_at" not in message.model_fields_set:
        return None
    return message.received_at

"""Builders for leads and lead messages used across tests (fake data only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.ingest.transform import normalise_lead
from shared.messaging.messages import LeadMessage
from shared.models.lead import GraphLead, NormalisedLead


def graph_lead_payload(lead_id: str, name: str = "Zoë Åström", created: int = 1_790_000_000) -> dict[str, Any]:
    """A Graph lead as `GET /{lead-id}` returns it."""
    return {
        "id": lead_id,
        "created_time": datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "form_id": "100000000000101",
        "field_data": [
            {"name": "full_name", "values": [name]},
            {"name": "email", "values": [f"lead{lead_id}@example.com"]},
            {"name": "phone_number", "values": ["+44 20 7946 0000"]},
            {"name": "interests", "values": ["solar", "batteries"]},
        ],
        "is_organic": True,
        "platform": "fb",
        "custom_disclaimer_responses": [],
    }


def normalised(lead_id: str, source: str = "webhook", created: int = 1_790_000_000) -> NormalisedLead:
    """A normalised lead ready for `Store.store_lead`."""
    message = LeadMessage(facebook_lead_id=lead_id, page_id="1000000000001", source=source)  # type: ignore[arg-type]
    return normalise_lead(GraphLead.model_validate(graph_lead_payload(lead_id, created=created)), message)


def store_one_lead_in_process(path: str, lead_id: str, start_at: float) -> str:
    """Worker for the multi-process exactly-once test: open the store, wait for the start line, insert."""
    import time

    from shared.store import Store
    from shared.store.sqlite import SqliteBackend

    store = Store(SqliteBackend(path))
    store.migrate()
    while time.time() < start_at:
        time.sleep(0.001)
    outcome = store.leads.store_lead(normalised(lead_id), {"leadgen_id": lead_id}, graph_lead_payload(lead_id))
    return type(outcome).__name__

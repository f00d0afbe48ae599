"""Operations on stored leads: the newest ones, and erasing one person's data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.store import Store


def last_leads(store: Store, limit: int, field_map: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The newest `limit` leads by creation time, in the ops shape, `mapped` by `field_map` (`FIELD_MAP`)."""
    return [lead.ops_view(field_map) for lead in store.leads.last_leads(limit)]


def erase_lead(store: Store, facebook_lead_id: str) -> dict[str, Any]:
    """Erase one person's data from every table (a tombstone and an audit row without PII remain).

    The tombstone is written even when the lead is not stored yet, so it never will be.
    """
    erasure = store.leads.erase_lead(facebook_lead_id)
    return {
        "facebook_lead_id": facebook_lead_id,
        "erased": erasure.erased,
        "tombstoned": erasure.tombstoned,
        "tables": erasure.rows,
    }

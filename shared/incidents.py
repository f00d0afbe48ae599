"""Incidents: a condition that needs a human (token invalid, subscription lost …), raised once.

An incident is kept in `state` (`incident:<kind>`) and every transition is audited
(`incident_opened`, `incident_resolved`), so an alert goes out once per incident and once on
recovery. Email delivery of these alerts hangs off the same transitions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from shared.store.base import LeadStore, iso_utc

log = logging.getLogger(__name__)

IncidentKind = Literal["token_invalid", "subscription_lost", "polling_failing", "dead_letters_growing", "silence"]


def _key(kind: str) -> str:
    return f"incident:{kind}"


def open_incident(store: LeadStore, kind: IncidentKind, detail: dict[str, Any]) -> bool:
    """Mark `kind` open; True only on the transition (the caller alerts then, not on repeats)."""
    current = store.get_state(_key(kind))
    if current and current.get("open"):
        return False
    now = iso_utc(datetime.now(UTC))
    store.put_state(_key(kind), {"open": True, "since": now, "detail": detail})
    store.audit("incident_opened", None, {"kind": kind, **detail})
    log.error("incident opened: %s", kind, extra={"stage": "incident", "outcome": "opened", "kind": kind})
    return True


def close_incident(store: LeadStore, kind: IncidentKind, detail: dict[str, Any] | None = None) -> bool:
    """Mark `kind` resolved; True only on the transition (the recovery alert)."""
    current = store.get_state(_key(kind))
    if not current or not current.get("open"):
        return False
    now = iso_utc(datetime.now(UTC))
    store.put_state(_key(kind), {"open": False, "since": current.get("since"), "resolved_at": now, **(detail or {})})
    store.audit("incident_resolved", None, {"kind": kind, **(detail or {})})
    log.warning("incident resolved: %s", kind, extra={"stage": "incident", "outcome": "resolved", "kind": kind})
    return True


def is_open(store: LeadStore, kind: IncidentKind) -> bool:
    current = store.get_state(_key(kind))
    return bool(current and current.get("open"))

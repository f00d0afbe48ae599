"""Incidents: a condition that needs a human (token invalid, subscription lost …), raised once.

Each kind is one row in `incidents`; opening and resolving are single conditional writes, so
across every instance an incident is announced once and its recovery once. Every transition is
audited (`incident_opened`, `incident_resolved`); email alerts hang off the same transitions.
"""

from __future__ import annotations

from typing import Any, Literal

from shared.logs import get_logger
from shared.store import Store

log = get_logger(__name__)

IncidentKind = Literal[
    "token_invalid",
    "subscription_lost",
    "polling_failing",
    "dead_letters_growing",
    "dead_letters_unattended",
    "silence",
    "backfill_gap",
]


def open_incident(store: Store, kind: IncidentKind, detail: dict[str, Any]) -> bool:
    """Mark `kind` open; True only on the transition (the caller alerts then, not on repeats)."""
    opened = store.coordination.open_incident(kind, detail)
    if opened:
        log.error("incident opened: %s", kind, extra={"stage": "incident", "outcome": "opened", "kind": kind})
    return opened


def close_incident(store: Store, kind: IncidentKind, detail: dict[str, Any] | None = None) -> bool:
    """Mark `kind` resolved; True only on the transition (the recovery alert)."""
    resolved = store.coordination.resolve_incident(kind, detail)
    if resolved:
        log.warning("incident resolved: %s", kind, extra={"stage": "incident", "outcome": "resolved", "kind": kind})
    return resolved


def is_open(store: Store, kind: IncidentKind) -> bool:
    return store.coordination.incident_open(kind)

"""The audit log: one row per thing that happened to a lead or the integration (ids and reasons, never lead data)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.store.backend import Tx, fit_text
from shared.store.schema import width

INSERT_AUDIT = "INSERT INTO audit_log (at, action, facebook_lead_id, source, detail) VALUES (?, ?, ?, ?, ?)"


def write_audit(
    tx: Tx, action: str, lead_id: str | None, source: str | None, detail: dict[str, Any] | None, at: datetime
) -> None:
    """Add one audit row inside the caller's transaction."""
    text = None if detail is None else json.dumps(detail, ensure_ascii=False, default=str)
    tx.execute(INSERT_AUDIT, (at, fit_text(action, width("audit_log", "action")), lead_id, source, text))

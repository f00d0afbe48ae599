"""Health and operations routes. `/api/health` is anonymous; everything else needs a function key."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared.errors import StoreUnavailable
from shared.health import overall_health
from shared.services import get_services

bp = func.Blueprint()

MAX_LAST_LEADS = 100


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json")


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when the queue and the database answer, 503 with which one does not."""
    status, body = overall_health(get_services())
    return _json(body, status)


@bp.function_name("ops_last_leads")
@bp.route(route="ops/last-leads", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def ops_last_leads(req: func.HttpRequest) -> func.HttpResponse:
    """`{"leads": [...]}` newest first; `limit` from 1 to 100 (default 10)."""
    raw = req.params.get("limit", "10")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LAST_LEADS:
        return _json({"error": f"limit must be a whole number from 1 to {MAX_LAST_LEADS}"}, 400)
    try:
        leads = get_services().store.last_leads(int(raw))
    except StoreUnavailable:
        return _json({"error": "database unavailable"}, 503)
    return _json({"leads": leads})

"""Health and operations routes. `/api/health` is anonymous; everything else needs a function key."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared.errors import QueueUnavailable, StoreUnavailable
from shared.health import overall_health
from shared.ops.reprocess import reprocess
from shared.poller.reconcile import reconcile_window
from shared.services import get_services

bp = func.Blueprint()

MAX_LAST_LEADS = 100
MAX_FAILED_EVENTS = 500
MAX_RECONCILE_HOURS = 90 * 24


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


@bp.function_name("ops_failed_events")
@bp.route(route="ops/failed-events", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def ops_failed_events(req: func.HttpRequest) -> func.HttpResponse:
    """`{"events": [...]}` newest first; sweeps the poison queues first so nothing is hidden."""
    status = req.params.get("status", "open")
    raw = req.params.get("limit", "100")
    if status not in ("open", "reprocessed", "resolved") or not raw.isdigit() or not 1 <= int(raw) <= MAX_FAILED_EVENTS:
        return _json({"error": f"status is open|reprocessed|resolved; limit 1 to {MAX_FAILED_EVENTS}"}, 400)
    try:
        events = get_services().list_failed_events(status, int(raw))
    except StoreUnavailable:
        return _json({"error": "database unavailable"}, 503)
    return _json({"events": events})


@bp.function_name("ops_reprocess")
@bp.route(route="ops/reprocess/{id}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def ops_reprocess(req: func.HttpRequest) -> func.HttpResponse:
    """Re-queue a failed event (by id) or a lead (by facebook_lead_id): 202, 404 or 409."""
    services = get_services()
    try:
        result = reprocess(req.route_params.get("id", ""), services.store, services.sender)
    except StoreUnavailable:
        return _json({"error": "database unavailable"}, 503)
    except QueueUnavailable:
        return _json({"error": "queue unavailable"}, 503)
    return _json(result.body, result.status)


@bp.function_name("ops_reconcile")
@bp.route(route="ops/reconcile", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def ops_reconcile(req: func.HttpRequest) -> func.HttpResponse:
    """Reconcile the last `hours` (1 to 2160) now; returns the run's figures."""
    raw = req.params.get("hours", "24")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1
    if not 0 < hours <= MAX_RECONCILE_HOURS:
        return _json({"error": f"hours must be a number from 1 to {MAX_RECONCILE_HOURS}"}, 400)
    services = get_services()
    try:
        report = reconcile_window(services.poller_deps(), hours, services.settings.reconcile_http_budget_seconds)
    except StoreUnavailable:
        return _json({"error": "database unavailable"}, 503)
    status = 409 if report.skipped == "another poll is running" else 200
    return _json(report.as_dict(), status)

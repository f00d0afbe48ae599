"""Operations routes (function key, rate limited): last leads, dead letters, reprocess, reconcile, erasure."""

from __future__ import annotations

import azure.functions as func

from functions.guard import rate_limited
from functions.responses import answers_errors, json_response
from shared.ops.dead_letters import list_failed_events
from shared.ops.deliveries import list_deliveries, record_stage, replay_delivery
from shared.ops.export import leads_csv, leads_page
from shared.ops.leads import erase_lead, last_leads
from shared.ops.reprocess import reprocess
from shared.poller.reconcile import reconcile_window
from wiring import get_services

bp = func.Blueprint()

MAX_LAST_LEADS = 100
MAX_FAILED_EVENTS = 500
MAX_RECONCILE_HOURS = 90 * 24
MAX_DELIVERIES = 500


@bp.function_name("ops_last_leads")
@bp.route(route="ops/last-leads", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_last_leads(req: func.HttpRequest) -> func.HttpResponse:
    """`{"leads": [...]}` newest first; `limit` from 1 to 100 (default 10)."""
    raw = req.params.get("limit", "10")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LAST_LEADS:
        return json_response({"error": f"limit must be a whole number from 1 to {MAX_LAST_LEADS}"}, 400)
    services = get_services()
    return json_response({"leads": last_leads(services.store, int(raw), services.settings.field_map)})


@bp.function_name("ops_failed_events")
@bp.route(route="ops/failed-events", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_failed_events(req: func.HttpRequest) -> func.HttpResponse:
    """`{"events": [...]}` newest first; sweeps the poison queues first so nothing is hidden."""
    status = req.params.get("status", "open")
    raw = req.params.get("limit", "100")
    if (
        status not in ("open", "reprocessed", "resolved")
        or not (raw.isascii() and raw.isdigit())
        or not 1 <= int(raw) <= MAX_FAILED_EVENTS
    ):
        return json_response({"error": f"status is open|reprocessed|resolved; limit 1 to {MAX_FAILED_EVENTS}"}, 400)
    services = get_services()
    return json_response({"events": list_failed_events(services.store, services.sweep, status, int(raw))})


@bp.function_name("ops_reprocess")
@bp.route(route="ops/reprocess/{id}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_reprocess(req: func.HttpRequest) -> func.HttpResponse:
    """Re-queue a failed event (by id) or a lead (by facebook_lead_id): 202, 404 or 409."""
    services = get_services()
    requeued = reprocess(req.route_params.get("id", ""), services.store, services.sender)
    return json_response({"queued": requeued.as_dict()}, 202)


@bp.function_name("ops_reconcile")
@bp.route(route="ops/reconcile", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_reconcile(req: func.HttpRequest) -> func.HttpResponse:
    """Reconcile the last `hours` (1 to 2160) now; returns the run's figures."""
    raw = req.params.get("hours", "24")
    try:
        hours = float(raw)
    except ValueError:
        hours = -1
    if not 0 < hours <= MAX_RECONCILE_HOURS:
        return json_response({"error": f"hours must be a number from 1 to {MAX_RECONCILE_HOURS}"}, 400)
    services = get_services()
    report = reconcile_window(services.poller_deps(), hours, services.settings.reconcile_http_budget_seconds)
    status = 409 if report.skipped == "another poll is running" else 200
    return json_response(report.as_dict(), status)


@bp.function_name("ops_erase_lead")
@bp.route(route="ops/leads/{facebook_lead_id}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_erase_lead(req: func.HttpRequest) -> func.HttpResponse:
    """Erase one person's data from every table; an audit row without PII and a tombstone remain.

    The tombstone is written even when the lead is not stored yet, so it never will be.
    """
    lead_id = req.route_params.get("facebook_lead_id", "")
    if not (lead_id.isascii() and lead_id.isdigit()) or len(lead_id) > 32:
        return json_response({"error": "a lead id is digits only"}, 404)
    return json_response(erase_lead(get_services().store, lead_id))


@bp.function_name("ops_deliveries")
@bp.route(route="ops/deliveries", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_deliveries(req: func.HttpRequest) -> func.HttpResponse:
    """`{"deliveries": [...]}` newest first; `status` pending|delivering|delivered|failed (all when absent)."""
    raw = req.params.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DELIVERIES:
        return json_response({"error": f"limit must be a whole number from 1 to {MAX_DELIVERIES}"}, 400)
    deliveries = list_deliveries(get_services().store, req.params.get("status"), int(raw))
    return json_response({"deliveries": deliveries})


@bp.function_name("ops_replay_delivery")
@bp.route(route="ops/deliveries/{id}/replay", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_replay_delivery(req: func.HttpRequest) -> func.HttpResponse:
    """Send a delivery again with the same `webhook-id`: 202, 404 or 409 (being sent right now)."""
    services = get_services()
    return json_response({"queued": replay_delivery(services.store, services.sender, req.route_params["id"])}, 202)


@bp.function_name("ops_lead_stage")
@bp.route(route="ops/leads/{facebook_lead_id}/stage", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_lead_stage(req: func.HttpRequest) -> func.HttpResponse:
    """Record `{"stage": "qualified"}` for a stored lead and send Meta its Conversions API event once: 202."""
    try:
        body = req.get_json()
    except ValueError:
        return json_response({"error": 'the body must be JSON like {"stage": "qualified"}'}, 400)
    stage = body.get("stage") if isinstance(body, dict) else None
    services = get_services()
    lead_id = req.route_params.get("facebook_lead_id", "")
    return json_response(record_stage(services.store, services.sender, lead_id, stage), 202)


@bp.function_name("ops_leads_csv")
@bp.route(route="ops/leads.csv", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_leads_csv(req: func.HttpRequest) -> func.HttpResponse:
    """The leads of `[since, until)` (default the last 30 days), of `form_id` when given, as a UTF-8 CSV.

    Built in a spooled file (memory up to 8 MiB, then disk); the response carries the file's bytes.
    """
    services = get_services()
    params = req.params
    exported = leads_csv(
        services.store, params.get("since"), params.get("until"), params.get("form_id"), services.settings.field_map
    )
    return func.HttpResponse(
        exported.body,
        status_code=200,
        mimetype="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"', "Cache-Control": "no-store"},
    )


@bp.function_name("ops_leads")
@bp.route(route="ops/leads", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def ops_leads(req: func.HttpRequest) -> func.HttpResponse:
    """`{"leads": [...], "next_cursor": ...}` oldest first since `since`; `limit` 1 to 1000 (default 100)."""
    services = get_services()
    params = req.params
    page = leads_page(
        services.store, params.get("since"), params.get("cursor"), params.get("limit"), services.settings.field_map
    )
    return json_response(page)

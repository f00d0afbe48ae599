"""Stats routes (function key): overview, ingestion and notification figures."""

from __future__ import annotations

import azure.functions as func

from functions.guard import rate_limited
from functions.responses import answers_errors, json_response, window_hours
from shared import stats
from wiring import get_services

bp = func.Blueprint()
BAD_HOURS = {"error": "hours must be a number greater than 0 and at most 720"}


@bp.function_name("stats")
@bp.route(route="stats", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def stats_overview(req: func.HttpRequest) -> func.HttpResponse:
    """Totals, leads by source, duplicates, open dead letters, success rate, last lead time."""
    return json_response(stats.overview(get_services().store))


@bp.function_name("stats_ingestion")
@bp.route(route="stats/ingestion", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def stats_ingestion(req: func.HttpRequest) -> func.HttpResponse:
    """Webhook vs polling per hour and per form, duplicates, retries, dead letters, reconciliation."""
    hours = window_hours(req)
    if hours is None:
        return json_response(BAD_HOURS, 400)
    services = get_services()
    return json_response(
        stats.ingestion(services.store, hours, services.form_name, day_counters=services.counters.totals)
    )


@bp.function_name("stats_notifications")
@bp.route(route="stats/notifications", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
@answers_errors
def stats_notifications(req: func.HttpRequest) -> func.HttpResponse:
    """Emails sent, grouped, retried, failed, pending, and latency percentiles."""
    hours = window_hours(req)
    if hours is None:
        return json_response(BAD_HOURS, 400)
    return json_response(stats.notifications(get_services().store, hours))

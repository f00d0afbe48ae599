"""Health routes: `/api/health` (anonymous, no internals) and the detailed checks (function key)."""

from __future__ import annotations

import azure.functions as func

from functions.guard import rate_limited
from functions.responses import json_response
from shared.monitoring.health import HealthReport, detailed_health, overall_health
from wiring import get_services

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when queue, database, Facebook and email are healthy; 503 naming which are not."""
    return _answer(overall_health(get_services()))


@bp.function_name("health_db")
@bp.route(route="health/db", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
def health_db(req: func.HttpRequest) -> func.HttpResponse:
    """A real query with its latency, and the schema version."""
    return _answer(detailed_health(get_services(), "db"))


@bp.function_name("health_facebook")
@bp.route(route="health/facebook", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
def health_facebook(req: func.HttpRequest) -> func.HttpResponse:
    """Token validity, expiry and scopes; each page's subscription; the throttling state."""
    return _answer(detailed_health(get_services(), "facebook"))


@bp.function_name("health_email")
@bp.route(route="health/email", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
def health_email(req: func.HttpRequest) -> func.HttpResponse:
    """The sender is configured and reachable (SMTP connect + EHLO; ACS credential obtainable)."""
    return _answer(detailed_health(get_services(), "email"))


def _answer(report: HealthReport) -> func.HttpResponse:
    """200 when healthy, else 503; the body names each check either way."""
    return json_response(report.as_dict(), 200 if report.healthy else 503)

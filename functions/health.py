"""Health routes: `/api/health` (anonymous, no internals) and the detailed checks (function key)."""

from __future__ import annotations

import azure.functions as func

from functions.guard import rate_limited
from functions.responses import json_response
from shared.health import detailed_health, overall_health
from shared.services import get_services

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when queue, database, Facebook and email are healthy; 503 naming which are not."""
    status, body = overall_health(get_services())
    return json_response(body, status)


@bp.function_name("health_db")
@bp.route(route="health/db", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
def health_db(req: func.HttpRequest) -> func.HttpResponse:
    """A real query with its latency, and the schema version."""
    status, body = detailed_health(get_services(), "db")
    return json_response(body, status)


@bp.function_name("health_facebook")
@bp.route(route="health/facebook", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
def health_facebook(req: func.HttpRequest) -> func.HttpResponse:
    """Token validity, expiry and scopes; each page's subscription; the throttling state."""
    status, body = detailed_health(get_services(), "facebook")
    return json_response(body, status)


@bp.function_name("health_email")
@bp.route(route="health/email", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@rate_limited("ops")
def health_email(req: func.HttpRequest) -> func.HttpResponse:
    """The sender is configured and reachable (SMTP connect + EHLO; ACS credential obtainable)."""
    status, body = detailed_health(get_services(), "email")
    return json_response(body, status)

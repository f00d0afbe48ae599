"""`GET|POST /api/webhook/facebook/leads` (anonymous; the HMAC signature is the authentication)."""

from __future__ import annotations

import json

import azure.functions as func

from functions.responses import answers_errors
from shared.logs import log_context
from shared.models.forms import ChosenForms
from shared.webhook.handshake import answer_handshake
from shared.webhook.intake import IntakeResult, receive_webhook
from wiring import get_services

bp = func.Blueprint()


@bp.function_name("facebook_leads_webhook")
@bp.route(route="webhook/facebook/leads", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def facebook_leads_webhook(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Handshake on GET; on POST verify, enqueue one message per leadgen change, answer after."""
    with log_context(invocation_id=context.invocation_id):
        return _answer(req)


@answers_errors
def _answer(req: func.HttpRequest) -> func.HttpResponse:
    services = get_services()
    settings = services.settings
    if req.method.upper() == "GET":
        challenge = answer_handshake(req.params, services.secrets.verify_token())
        if challenge is None:
            return func.HttpResponse("verification failed", status_code=403, mimetype="text/plain")
        return func.HttpResponse(challenge, status_code=200, mimetype="text/plain")
    result = receive_webhook(
        req.get_body(),
        req.headers.get("X-Hub-Signature-256"),
        services.secrets.app_secrets(),
        services.sender,
        settings.webhook_max_body_bytes,
        services.count_ignored,
        ChosenForms.of(settings.facebook_forms_include, settings.facebook_forms_exclude),
    )
    return _intake_answer(result, settings.webhook_max_body_bytes)


def _intake_answer(result: IntakeResult, max_body_bytes: int) -> func.HttpResponse:
    """What Meta sees: 200 for a body it must not send again, 400 not JSON, 413 too large."""
    if result.outcome == "too_large":
        return _json(413, error="payload too large", limit_bytes=max_body_bytes)
    if result.outcome == "malformed":
        return _json(400, error=result.reason)
    if result.outcome == "ignored":
        return _json(200, status="ignored", reason=result.reason)
    return _json(200, status="ok", queued=result.queued, ignored=result.ignored, dead_lettered=result.dead_lettered)


def _json(http_status: int, /, **payload: object) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(payload), status_code=http_status, mimetype="application/json")

"""`GET|POST /api/webhook/facebook/leads` (anonymous; the HMAC signature is the authentication)."""

from __future__ import annotations

import azure.functions as func

from functions.guard import count_failed_auth
from shared.logs import log_context
from shared.services import get_services
from shared.webhook.handshake import answer_handshake
from shared.webhook.intake import receive_webhook

bp = func.Blueprint()


@bp.function_name("facebook_leads_webhook")
@bp.route(route="webhook/facebook/leads", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def facebook_leads_webhook(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Handshake on GET; on POST verify, enqueue one message per leadgen change, answer after."""
    with log_context(invocation_id=context.invocation_id):
        return _answer(req)


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
    )
    if result.status == 401:  # only failed signatures count toward the limit, never signed deliveries
        limited = count_failed_auth(req)
        if limited is not None:
            return limited
    return func.HttpResponse(result.body, status_code=result.status, mimetype="application/json")

"""Rate limits for HTTP functions: ops routes (`@rate_limited`) and failed webhook authentication.

Apply `@rate_limited(scope)` directly above the plain function, below `@bp.route(...)`: the
wrapper keeps the function's name and signature (`functools.wraps`), so the Functions decorators
and the worker still see `req` as the HTTP trigger argument.

    @bp.function_name("ops_last_leads")
    @bp.route(route="ops/last-leads", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    @rate_limited("ops")
    def ops_last_leads(req: func.HttpRequest) -> func.HttpResponse: ...
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, ParamSpec

import azure.functions as func

from shared.storage.ratelimit import RateDecision, RateLimiter, RateLimitUnavailable, client_ip
from wiring import get_services

log = logging.getLogger(__name__)

P = ParamSpec("P")

WEBHOOK_AUTH_SCOPE = "webhook-auth"


def _services_limiter() -> RateLimiter:
    # `Services.rate_limiter` (wiring.py) builds the process's limiter from the settings.
    services: Any = get_services()
    limiter: RateLimiter = services.rate_limiter
    return limiter


# Looked up on every request, so tests (or another wiring) can point it at their own limiter.
limiter: Callable[[], RateLimiter] = _services_limiter


def rate_limited(
    scope: str, fail_open: bool = False
) -> Callable[[Callable[P, func.HttpResponse]], Callable[P, func.HttpResponse]]:
    """Count each call against the caller's IP in `scope`; answer 429 over the limit.

    When the limiter is unavailable the request goes through if `fail_open`, else it is answered
    503 `{"error": "rate limiter unavailable"}`.
    """

    def decorate(handler: Callable[P, func.HttpResponse]) -> Callable[P, func.HttpResponse]:
        @functools.wraps(handler)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> func.HttpResponse:
            refused = _check(request_of(args, kwargs), scope, fail_open)
            return refused if refused is not None else handler(*args, **kwargs)

        return guarded

    return decorate


def count_failed_auth(req: func.HttpRequest) -> func.HttpResponse | None:
    """Count one failed authentication of the caller; the 429 response when over the limit, else None.

    Fails open: when the limiter is unavailable the caller answers its 401 anyway.
    """
    return _check(req, WEBHOOK_AUTH_SCOPE, fail_open=True)


def too_many_requests(decision: RateDecision) -> func.HttpResponse:
    """429 with `Retry-After` (seconds until the caller's window ends)."""
    return func.HttpResponse(
        json.dumps({"error": "rate limited", "retry_after": decision.retry_after}),
        status_code=429,
        headers={"Retry-After": str(decision.retry_after)},
        mimetype="application/json",
    )


def _check(req: func.HttpRequest, scope: str, fail_open: bool) -> func.HttpResponse | None:
    ip = client_ip(req.headers)
    try:
        decision = limiter().hit(scope, ip)
    except RateLimitUnavailable as exc:
        log.warning("rate limiter unavailable (%s); %s %s", exc, scope, "allowed" if fail_open else "refused")
        if fail_open:
            return None
        return func.HttpResponse(
            json.dumps({"error": "rate limiter unavailable"}), status_code=503, mimetype="application/json"
        )
    if decision.allowed:
        return None
    if decision.count == decision.limit + 1:  # once per client and window, not per refused request
        log.warning("rate limiting %s in %s until its window ends in %ds", ip, scope, decision.retry_after)
    return too_many_requests(decision)


def request_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> func.HttpRequest:
    """The call's `func.HttpRequest` (the worker passes it by its argument name, tests often by position)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, func.HttpRequest):
            return value
    raise TypeError("an HTTP route wrapper needs a function that takes a func.HttpRequest")

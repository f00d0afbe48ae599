"""HTTP answers of the blueprints: JSON responses, and the one mapping from domain errors to responses.

The core (`shared/`) returns domain results and raises domain errors; it never picks a status.
Each HTTP function is wrapped in `@answers_errors` (as Powertools' `event_handler` runs every route
through `_call_route` and its exception handlers): an error the function lets through is answered
by the handler registered for the nearest class in its MRO, so "database unavailable" is written
once for every route.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec

import azure.functions as func

from functions.guard import count_failed_auth, request_of
from shared.errors import QueueUnavailable, SignatureInvalid, StoreUnavailable
from shared.ops.errors import NotFound, NotReplayable, OpsRefused

P = ParamSpec("P")
ErrorHandler = Callable[[Exception, func.HttpRequest], func.HttpResponse]


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    """`body` as UTF-8 JSON with its status."""
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json")


def window_hours(req: func.HttpRequest, default: float = 24, maximum: float = 720) -> float | None:
    """The `hours` query parameter, or None when it is not a number in (0, maximum]."""
    try:
        hours = float(req.params.get("hours", default))
    except ValueError:
        return None
    return hours if 0 < hours <= maximum else None


def _refused(status: int) -> ErrorHandler:
    def answer(exc: Exception, req: func.HttpRequest) -> func.HttpResponse:
        detail = exc.detail if isinstance(exc, OpsRefused) else {}
        return json_response({"error": str(exc), **detail}, status)

    return answer


def _unavailable(what: str) -> ErrorHandler:
    return lambda exc, req: json_response({"error": f"{what} unavailable"}, 503)


def _signature_invalid(exc: Exception, req: func.HttpRequest) -> func.HttpResponse:
    """401; only failed signatures count toward the caller's limit (429 over it), never signed deliveries."""
    limited = count_failed_auth(req)
    return limited if limited is not None else json_response({"error": str(exc)}, 401)


EXCEPTION_HANDLERS: dict[type[Exception], ErrorHandler] = {
    StoreUnavailable: _unavailable("database"),
    QueueUnavailable: _unavailable("queue"),
    SignatureInvalid: _signature_invalid,
    NotFound: _refused(404),
    NotReplayable: _refused(409),
    OpsRefused: _refused(400),  # the request itself is wrong (a bad status, a malformed stage)
}


def error_response(exc: Exception, req: func.HttpRequest) -> func.HttpResponse | None:
    """The answer of the handler registered for `exc`'s nearest class, or None when none is."""
    for cls in type(exc).__mro__:
        handler = EXCEPTION_HANDLERS.get(cls)
        if handler is not None:
            return handler(exc, req)
    return None


def answers_errors(route: Callable[P, func.HttpResponse]) -> Callable[P, func.HttpResponse]:
    """Run `route`; a domain error it raises is answered by `EXCEPTION_HANDLERS`, anything else propagates."""

    @functools.wraps(route)
    def call_route(*args: P.args, **kwargs: P.kwargs) -> func.HttpResponse:
        try:
            return route(*args, **kwargs)
        except Exception as exc:
            answer = error_response(exc, request_of(args, kwargs))
            if answer is None:
                raise
            return answer

    return call_route

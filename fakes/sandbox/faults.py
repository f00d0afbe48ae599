"""Faults the sandbox injects on purpose: expired tokens, throttling, 5xx, slow answers, lost permissions.

A fault matches Graph calls of one route kind (or all of them) and lasts for the next `count`
matching calls, for `seconds`, or until cleared, whichever ends first; `page` narrows it to calls
on that page's objects and `token` to calls made with that token (one page's token expiring). Each fault turns into the
exact error Meta sends for that condition, headers included; a `slow` fault (default delay 1 s)
only delays the normal answer. A `proxy_error` fault (default `status` 403) is not Meta speaking:
it answers as a proxy or gateway in front of Graph would, with an HTML page and no Graph envelope
(a 408 request timeout, a corporate proxy's 403, a load balancer's 404).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, cast, get_args

from fakes.sandbox.errors import GraphError, expired_token

FaultKind = Literal["token_expired", "throttle", "server_error", "slow", "permission", "proxy_error"]
RouteKind = Literal[
    "lead", "form", "form_leads", "leadgen_forms", "debug_token", "subscribed_apps", "test_leads", "capi_events"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
ROUTE_KINDS: tuple[str, ...] = get_args(RouteKind)

_RATE_LIMIT_DOC = (
    "For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
)
THROTTLE_MESSAGES: dict[int, str] = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: f"(#80001) There have been too many calls to this Page account. Wait a bit and try again. {_RATE_LIMIT_DOC}",
    80005: (
        "(#80005) There have been too many leadgen api calls to this Page account. Wait a bit and try again. "
        f"{_RATE_LIMIT_DOC}"
    ),
}
PERMISSION_MESSAGES: dict[int, str] = {
    10: "(#10) Application does not have permission for this action",
    200: "(#200) Requires extended permission: leads_retrieval",
}
SERVER_ERROR_MESSAGE = "An unexpected error has occurred. Please retry your request later."
DEFAULT_PROXY_STATUS = 403


class ProxyPage(Exception):
    """An HTML error page from a proxy in front of Graph: a status and a body that is not JSON."""

    def __init__(self, status: int) -> None:
        super().__init__(f"proxy answered {status}")
        self.status = status
        phrase = HTTPStatus(status).phrase
        self.html = (
            f"<html><head><title>{status} {phrase}</title></head>"
            f"<body><h1>{phrase}</h1><hr><center>proxy</center></body></html>"
        )


@dataclass
class Fault:
    """One injected fault; `remaining` and `until` (monotonic seconds) bound how long it lasts."""

    kind: FaultKind
    route: RouteKind | None = None
    remaining: int | None = None
    until: float | None = None
    code: int | None = None
    subcode: int | None = None
    delay: float = 0.0
    regain_minutes: int = 1
    status: int | None = None
    page: str | None = None
    token: str | None = None

    def is_over(self, now: float) -> bool:
        """Whether the fault has used up its count or its time."""
        return (self.remaining is not None and self.remaining <= 0) or (self.until is not None and now >= self.until)

    def matches(self, route: str, page_id: str | None = None, token: str | None = None) -> bool:
        """Whether a call of this route kind, on this page's objects, made with this token, is affected."""
        return (
            (self.route is None or self.route == route)
            and (self.page is None or self.page == page_id)
            and (self.token is None or self.token == token)
        )

    def describe(self, now: float) -> dict[str, Any]:
        """A JSON view for the control API: what it does and how much of it is left."""
        return {
            "kind": self.kind,
            "route": self.route,
            "remaining": self.remaining,
            "seconds_left": None if self.until is None else max(0.0, round(self.until - now, 3)),
            "code": self.code,
            "subcode": self.subcode,
            "delay": self.delay,
            "regain_minutes": self.regain_minutes,
            "status": self.status,
            "page": self.page,
            "token": self.token,
        }

    def proxy_page(self) -> ProxyPage:
        """The HTML page a `proxy_error` fault answers with."""
        return ProxyPage(self.status or DEFAULT_PROXY_STATUS)

    def error(self, page_id: str, wall_now: float) -> GraphError:
        """The Graph error this fault answers with (never called for `slow` or `proxy_error`)."""
        if self.kind == "token_expired":
            error = expired_token(wall_now - 60, wall_now)
            error.code = self.code or 190
            error.subcode = self.subcode if self.subcode is not None else 463
            return error
        if self.kind == "throttle":
            code = self.code or 613
            usage = [
                {
                    "type": "leadgen",
                    "call_count": 100,
                    "total_cputime": 25,
                    "total_time": 25,
                    "estimated_time_to_regain_access": self.regain_minutes,
                }
            ]
            headers = {
                "X-Business-Use-Case-Usage": json.dumps({page_id: usage}, separators=(",", ":")),
                "X-App-Usage": json.dumps(
                    {"call_count": 100, "total_cputime": 25, "total_time": 25}, separators=(",", ":")
                ),
            }
            message = THROTTLE_MESSAGES.get(code, f"(#{code}) Rate limit reached")
            return GraphError(message, code=code, subcode=self.subcode, headers=headers, is_transient=True)
        if self.kind == "server_error":
            return GraphError(
                SERVER_ERROR_MESSAGE, code=self.code or 2, subcode=self.subcode, status=500, is_transient=True
            )
        code = self.code or 10
        message = PERMISSION_MESSAGES.get(code, f"(#{code}) Permissions error")
        return GraphError(message, code=code, subcode=self.subcode, status=400)


def _optional_int(spec: Mapping[str, Any], name: str) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def fault_from_spec(spec: Mapping[str, Any], monotonic_now: float) -> Fault:
    """Build a fault from the control API's JSON; `ValueError` names the first bad key."""
    kind = spec.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    route = spec.get("route")
    if route is not None and route not in ROUTE_KINDS:
        raise ValueError(f"route must be one of {', '.join(ROUTE_KINDS)}")
    count = _optional_int(spec, "count")
    if count is not None and count < 1:
        raise ValueError("count must be at least 1")
    seconds = spec.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0):
        raise ValueError("seconds must be a positive number")
    delay = spec.get("delay", 1.0 if kind == "slow" else 0.0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise ValueError("delay must be a non-negative number")
    regain = _optional_int(spec, "regain_minutes")
    status = _optional_int(spec, "status")
    if status is not None and not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    page, token = spec.get("page"), spec.get("token")
    if page is not None and not (isinstance(page, str) and page.isdigit()):
        raise ValueError("page must be a page id (a string of digits)")
    if token is not None and not (isinstance(token, str) and token):
        raise ValueError("token must be a non-empty string")
    return Fault(
        kind=cast(FaultKind, kind),
        route=cast("RouteKind | None", route),
        remaining=count,
        until=None if seconds is None else monotonic_now + float(seconds),
        code=_optional_int(spec, "code"),
        subcode=_optional_int(spec, "subcode"),
        delay=float(delay),
        regain_minutes=1 if regain is None else regain,
        status=status,
        page=page,
        token=token,
    )


class FaultBook:
    """The faults in force, oldest first; thread-safe, so a count-limited fault fails exactly N calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, spec: Mapping[str, Any]) -> Fault:
        """Add a fault described like the control API's JSON; `ValueError` names a bad key."""
        fault = fault_from_spec(spec, time.monotonic())
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, route: str, page_id: str | None = None, token: str | None = None) -> Fault | None:
        """The first fault matching this call, used up by one; None when none applies."""
        now = time.monotonic()
        with self._lock:
            self._faults = [fault for fault in self._faults if not fault.is_over(now)]
            for fault in self._faults:
                if fault.matches(route, page_id, token):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def active(self) -> list[dict[str, Any]]:
        """A JSON view of each fault still in force."""
        now = time.monotonic()
        with self._lock:
            return [fault.describe(now) for fault in self._faults if not fault.is_over(now)]

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

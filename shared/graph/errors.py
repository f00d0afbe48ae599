"""Map a Graph API error response to the agent's exception hierarchy (decide by `error.code`).

Throttling comes back as HTTP 400 with codes 4/17/32/613/80001/80005…, never 429; the regain
time is read from `X-Business-Use-Case-Usage` (minutes) when present.

Only Meta's own verdict on a lead is permanent: code 100 (invalid parameter; 100/33 "does not
exist, cannot be loaded due to missing permissions"). Anything that is not Meta speaking (a 408,
an HTML page from a proxy or gateway, a body without Meta's error envelope) and any code this
module does not know is retried with a delay, counting attempts, so it ends in a dead letter only
when the attempts run out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.errors import (
    GraphPermissionDenied,
    GraphThrottled,
    GraphUnavailable,
    LeadAgentError,
    LeadNotFetchable,
    TokenInvalid,
)
from shared.graph.redact import scrub

# A page's own limits (Page request limit, Pages and LeadGen business use cases): the rest go on.
PAGE_THROTTLE_CODES = frozenset({32, 80001, 80005})
THROTTLE_CODES = frozenset({4, 17, 32, 341, 613, 80000, 80001, 80002, 80003, 80004, 80005, 80006, 80008, 80009, 80014})
TOKEN_CODES = frozenset({102, 190, 463, 467})
# 3: "capability or permissions issue" (Meta's error table): fixed by an operator, like 10 and 200-299.
PERMISSION_CODES = frozenset({3, 10})
PERMANENT_CODES = frozenset({100})
DEFAULT_THROTTLE_SECONDS = 60.0


def regain_seconds(headers: Mapping[str, str]) -> float:
    """The longest `estimated_time_to_regain_access` (minutes) in the BUC header, in seconds."""
    raw = _header(headers, "X-Business-Use-Case-Usage")
    longest = 0.0
    if raw:
        try:
            usage = json.loads(raw)
        except ValueError:
            usage = {}
        if isinstance(usage, dict):
            for items in usage.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict):
                        minutes = item.get("estimated_time_to_regain_access") or 0
                        if isinstance(minutes, int | float):
                            longest = max(longest, float(minutes) * 60)
    return longest


def classify_error(status: int, payload: Any, headers: Mapping[str, str]) -> LeadAgentError:
    """The exception for a non-2xx Graph answer (`payload` is None when the body is not JSON).

    Permanent (`LeadNotFetchable`) only for Meta's code 100; everything unknown is transient.
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    error = error if isinstance(error, dict) else {}
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    trace = error.get("fbtrace_id") or "-"
    if not error:
        # Not Meta's envelope: an HTML page from a proxy or gateway, a 408, an empty body.
        kind = "non-JSON" if payload is None else "non-Graph JSON"
        return GraphUnavailable(f"Graph answered status={status} with a {kind} body (not Meta's error envelope)")
    text = f"Graph error code={code} subcode={subcode} status={status} fbtrace_id={trace}: {error.get('message', '')}"
    text = scrub(text)[:500]
    if code in THROTTLE_CODES:
        return GraphThrottled(text, regain_seconds(headers) or DEFAULT_THROTTLE_SECONDS, code)
    if code in TOKEN_CODES:
        return TokenInvalid(text, code=code or 190, subcode=subcode)
    if code in PERMISSION_CODES or (code is not None and 200 <= code <= 299):
        return GraphPermissionDenied(text)
    if code in PERMANENT_CODES and error.get("is_transient") is not True:
        return LeadNotFetchable(text)
    # 5xx, 408, 429, temporary codes (1, 2, 368), Meta's `is_transient`, and every code not known here.
    return GraphUnavailable(text)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None

"""The sandbox's control API under `/_sandbox/` (not Meta's; no token): seed leads, inject faults, inspect.

| route | does |
|---|---|
| `GET /_sandbox/health` | `{"ok": true}` once serving |
| `POST /_sandbox/leads` | create a lead, maybe in the past or from an ad; no `field_data`: every question answered |
| `GET /_sandbox/leads` | every lead with all fields plus `page_id`, in creation order |
| `GET /_sandbox/calls` | Graph calls per route kind and `total` |
| `GET /_sandbox/capi_events` | Conversions API events received, each with `dataset_id` and `test_event_code` |
| `POST /_sandbox/reset` | back to the starting state (lead ids keep increasing) |
| `POST` / `GET` / `DELETE /_sandbox/faults` | inject a fault / list active ones / clear all |
| `POST /_sandbox/tokens` | `{"valid": [...], "expired": [...]}`: replace global tokens, expire any (global or Page) |
| `POST /_sandbox/page_tokens` | `{"page_id", "token"}`: add or renew a Page token that serves only that page |
| `GET /_sandbox/page_tokens` | `{"data": {page id: token}}`: the Page tokens, valid or expired |
| `POST /_sandbox/quirks` | `{"short_pages": N, "usage": {...}}`: cap `/leads` pages, fix `X-App-Usage` |
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fakes.sandbox.errors import invalid_parameter, unknown_path
from fakes.sandbox.messages import JsonResponse, SandboxRequest
from fakes.sandbox.state import SandboxGraph

logger = logging.getLogger("fakes.sandbox")

ControlHandler = Callable[[SandboxGraph, dict[str, Any]], JsonResponse]
_AD_KEYS = ("ad_id", "ad_name", "adset_id", "adset_name", "campaign_id", "campaign_name")


def _success() -> JsonResponse:
    return JsonResponse(200, {"success": True})


def _string_list(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid_parameter(f"{name} must be a list of strings")
    return value


def create_lead(sandbox: SandboxGraph, body: dict[str, Any]) -> JsonResponse:
    """Create a lead from `form_id`, `field_data` and the optional created_time, ad fields and platform."""
    form_id = body.get("form_id")
    if not isinstance(form_id, str | int) or isinstance(form_id, bool):
        raise invalid_parameter("form_id is required")
    created = body.get("created_time")
    if created is not None and (isinstance(created, bool) or not isinstance(created, int | float)):
        raise invalid_parameter("created_time must be epoch seconds")
    ad = {key: str(body[key]) for key in _AD_KEYS if body.get(key) is not None}
    platform = body.get("platform", "fb")
    if not isinstance(platform, str):
        raise invalid_parameter("platform must be a string")
    lead_id = sandbox.create_lead(
        str(form_id),
        body.get("field_data"),
        created_time=created,
        platform=platform,
        custom_disclaimer_responses=body.get("custom_disclaimer_responses"),
        ad_id=ad.get("ad_id"),
        ad_name=ad.get("ad_name"),
        adset_id=ad.get("adset_id"),
        adset_name=ad.get("adset_name"),
        campaign_id=ad.get("campaign_id"),
        campaign_name=ad.get("campaign_name"),
    )
    logger.info("sandbox lead %s seeded on form %s", lead_id, form_id)
    return JsonResponse(200, {"id": lead_id})


def add_fault(sandbox: SandboxGraph, body: dict[str, Any]) -> JsonResponse:
    """Inject one fault; the answer echoes it as stored."""
    try:
        fault = sandbox.add_fault_spec(body)
    except ValueError as exc:
        raise invalid_parameter(str(exc)) from None
    logger.info("sandbox fault %s injected (route %s)", fault.kind, fault.route or "any")
    return JsonResponse(200, {"success": True, "faults": sandbox.active_faults()})


def set_tokens(sandbox: SandboxGraph, body: dict[str, Any]) -> JsonResponse:
    """Replace the valid tokens and/or expire some."""
    sandbox.set_tokens(valid=_string_list(body, "valid"), expired=_string_list(body, "expired"))
    return _success()


def add_page_token(sandbox: SandboxGraph, body: dict[str, Any]) -> JsonResponse:
    """Bind a token to one configured page as its Page token."""
    page_id, token = body.get("page_id"), body.get("token")
    if not isinstance(page_id, str | int) or isinstance(page_id, bool) or not str(page_id).isdigit():
        raise invalid_parameter("page_id must be a page id")
    if not isinstance(token, str) or not token:
        raise invalid_parameter("token must be a non-empty string")
    sandbox.add_page_token(str(page_id), token)
    logger.info("sandbox page token added for page %s", page_id)
    return _success()


def set_quirks(sandbox: SandboxGraph, body: dict[str, Any]) -> JsonResponse:
    """Replace the quirks: `short_pages` (max leads per `/leads` page) and `usage` (fixed `X-App-Usage`)."""
    short_pages = body.get("short_pages")
    usage = body.get("usage")
    if short_pages is not None and (isinstance(short_pages, bool) or not isinstance(short_pages, int)):
        raise invalid_parameter("short_pages must be an integer")
    if usage is not None and not (isinstance(usage, dict) and all(isinstance(v, int) for v in usage.values())):
        raise invalid_parameter("usage must be an object of integer percentages")
    try:
        sandbox.set_quirks(short_pages=short_pages, usage=usage)
    except ValueError as exc:
        raise invalid_parameter(str(exc)) from None
    return _success()


def _reset(sandbox: SandboxGraph, _: dict[str, Any]) -> JsonResponse:
    sandbox.reset()
    return _success()


def _clear_faults(sandbox: SandboxGraph, _: dict[str, Any]) -> JsonResponse:
    sandbox.clear_faults()
    return _success()


ROUTES: dict[tuple[str, str], ControlHandler] = {
    ("GET", "/_sandbox/health"): lambda sandbox, _: JsonResponse(200, {"ok": True}),
    ("POST", "/_sandbox/leads"): create_lead,
    ("GET", "/_sandbox/leads"): lambda sandbox, _: JsonResponse(200, {"data": sandbox.all_leads()}),
    ("GET", "/_sandbox/calls"): lambda sandbox, _: JsonResponse(200, sandbox.calls()),
    ("GET", "/_sandbox/capi_events"): lambda sandbox, _: JsonResponse(200, {"data": sandbox.capi_events()}),
    ("POST", "/_sandbox/reset"): _reset,
    ("POST", "/_sandbox/faults"): add_fault,
    ("GET", "/_sandbox/faults"): lambda sandbox, _: JsonResponse(200, {"data": sandbox.active_faults()}),
    ("DELETE", "/_sandbox/faults"): _clear_faults,
    ("POST", "/_sandbox/tokens"): set_tokens,
    ("POST", "/_sandbox/page_tokens"): add_page_token,
    ("GET", "/_sandbox/page_tokens"): lambda sandbox, _: JsonResponse(200, {"data": sandbox.page_tokens()}),
    ("POST", "/_sandbox/quirks"): set_quirks,
}


def handle_control(sandbox: SandboxGraph, request: SandboxRequest) -> JsonResponse:
    """Answer one control call; bodies are JSON objects (an empty body counts as `{}`)."""
    handler = ROUTES.get((request.method, request.raw_path.rstrip("/")))
    if handler is None:
        raise unknown_path(request.raw_path)
    body = request.json_body if request.json_body is not None else {}
    if not isinstance(body, dict):
        raise invalid_parameter("the control API takes a JSON object")
    return handler(sandbox, body)

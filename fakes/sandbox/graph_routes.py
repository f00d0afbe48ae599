"""The Graph API routes the sandbox speaks, with Meta's shapes, in the order Meta applies checks.

Every call is counted, then authorised (190 when the token is missing, unknown or expired; 200
when a Page token is used on another page's objects), then offered to the fault book, then
answered. A route is chosen by the path's shape alone (`GET /{id}` of a form is counted as
`form`), so an unknown object id gets the same 100/33 answer Meta gives.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from fakes.sandbox.conversions import checked_events, checked_test_event_code
from fakes.sandbox.errors import GraphError, invalid_parameter, new_fbtrace_id, object_not_found, unknown_path
from fakes.sandbox.messages import JsonResponse, SandboxRequest
from fakes.sandbox.paging import decode_cursor, encode_cursor, parse_filtering, parse_limit
from fakes.sandbox.records import StoredLead, parse_field_tree, parse_fields
from fakes.sandbox.state import SandboxGraph

logger = logging.getLogger("fakes.sandbox")

Handler = Callable[[SandboxGraph, SandboxRequest, str], JsonResponse]
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/debug_token/?$"), "debug_token"),
    (re.compile(r"^/([^/]+)/leads/?$"), "form_leads"),
    (re.compile(r"^/([^/]+)/test_leads/?$"), "test_leads"),
    (re.compile(r"^/([^/]+)/leadgen_forms/?$"), "leadgen_forms"),
    (re.compile(r"^/([^/]+)/subscribed_apps/?$"), "subscribed_apps"),
    (re.compile(r"^/([^/]+)/events/?$"), "capi_events"),
    (re.compile(r"^/([^/_][^/]*)/?$"), "lead"),
)
# Route kinds whose object belongs to one page: a Page token reaches them only on its own page.
PAGE_SCOPED = frozenset({"lead", "form", "form_leads", "test_leads", "leadgen_forms", "subscribed_apps"})


def resolve(path: str) -> tuple[str, str] | None:
    """The route kind and object id for a version-less path; None when no route has this shape."""
    for pattern, kind in _SHAPES:
        match = pattern.match(path)
        if match:
            return kind, (match.group(1) if match.groups() else "")
    return None


def _only(request: SandboxRequest, object_id: str, *methods: str) -> None:
    if request.method not in methods:
        raise object_not_found(object_id or request.path.strip("/"), request.method)


def _lead_page(request: SandboxRequest, leads: list[StoredLead], has_more: bool) -> JsonResponse:
    fields = parse_fields(request.params.get("fields"))
    body: dict[str, Any] = {"data": [lead.render(fields) for lead in leads]}
    if leads:
        after = encode_cursor(leads[-1].sort_key)
        paging: dict[str, Any] = {"cursors": {"before": encode_cursor(leads[0].sort_key), "after": after}}
        if has_more:
            paging["next"] = request.url_with(after=after)
        body["paging"] = paging
    return JsonResponse(200, body)


def _list_leads(sandbox: SandboxGraph, request: SandboxRequest, form_id: str, *, test_only: bool) -> JsonResponse:
    filters = parse_filtering(request.params.get("filtering"))
    limit = parse_limit(request.params.get("limit"))
    cursor = request.params.get("after")
    size = min(limit, sandbox.short_pages) if sandbox.short_pages else limit
    leads, has_more = sandbox.form_leads(
        form_id, filters, decode_cursor(cursor) if cursor else None, size, test_only=test_only
    )
    return _lead_page(request, leads, has_more)


def get_lead(sandbox: SandboxGraph, request: SandboxRequest, lead_id: str) -> JsonResponse:
    """`GET /{lead-id}?fields=…`."""
    _only(request, lead_id, "GET")
    return JsonResponse(200, sandbox.lead(lead_id).render(parse_fields(request.params.get("fields"))))


def get_form(sandbox: SandboxGraph, request: SandboxRequest, form_id: str) -> JsonResponse:
    """`GET /{form-id}?fields=…` (e.g. `id,name,status,questions` or `questions{key,type}`)."""
    _only(request, form_id, "GET")
    tree = parse_field_tree(request.params.get("fields"))
    form, count, organic = sandbox.form_with_counts(form_id)
    return JsonResponse(200, form.render(None if tree is None else list(tree), count, organic, tree))


def get_form_leads(sandbox: SandboxGraph, request: SandboxRequest, form_id: str) -> JsonResponse:
    """`GET /{form-id}/leads?fields=…&filtering=…&limit=…&after=…`, newest first."""
    _only(request, form_id, "GET")
    return _list_leads(sandbox, request, form_id, test_only=False)


def _json_param(request: SandboxRequest, name: str) -> Any:
    value = request.value(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise invalid_parameter(f"param {name} must be JSON") from None
    return value


def form_test_leads(sandbox: SandboxGraph, request: SandboxRequest, form_id: str) -> JsonResponse:
    """`POST /{form-id}/test_leads` creates an organic lead now; `GET` lists the form's test leads."""
    _only(request, form_id, "GET", "POST")
    if request.method == "GET":
        return _list_leads(sandbox, request, form_id, test_only=True)
    lead_id = sandbox.create_test_lead(
        form_id, _json_param(request, "field_data"), _json_param(request, "custom_disclaimer_responses")
    )
    logger.info("sandbox test lead %s created on form %s", lead_id, form_id)
    return JsonResponse(200, {"id": lead_id})


def get_leadgen_forms(sandbox: SandboxGraph, request: SandboxRequest, page_id: str) -> JsonResponse:
    """`GET /{page-id}/leadgen_forms?fields=…`."""
    _only(request, page_id, "GET")
    tree = parse_field_tree(request.params.get("fields"))
    fields = None if tree is None else list(tree)
    rows = sandbox.forms_of(page_id)
    data = [form.render(fields, count, organic, tree) for form, count, organic in rows]
    body: dict[str, Any] = {"data": data}
    if rows:
        first, last = rows[0][0].id, rows[-1][0].id
        body["paging"] = {"cursors": {"before": encode_cursor((0, int(first))), "after": encode_cursor((0, int(last)))}}
    return JsonResponse(200, body)


def _subscribed_fields(request: SandboxRequest) -> list[str]:
    raw = request.value("subscribed_fields")
    if isinstance(raw, str) and raw.strip().startswith("["):
        raw = _json_param(request, "subscribed_fields")
    if isinstance(raw, str):
        fields = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        fields = list(raw)
    else:
        fields = []
    if not fields:
        raise invalid_parameter("The parameter subscribed_fields is required")
    return fields


def subscribed_apps(sandbox: SandboxGraph, request: SandboxRequest, page_id: str) -> JsonResponse:
    """`GET|POST|DELETE /{page-id}/subscribed_apps`: list, install or remove the app on the page."""
    _only(request, page_id, "GET", "POST", "DELETE")
    if request.method == "GET":
        return JsonResponse(200, {"data": sandbox.subscribed_apps(page_id)})
    if request.method == "POST":
        sandbox.subscribe(page_id, _subscribed_fields(request))
    else:
        sandbox.unsubscribe(page_id)
    logger.info("sandbox page %s subscription: %s", page_id, request.method)
    return JsonResponse(200, {"success": True})


def debug_token(sandbox: SandboxGraph, request: SandboxRequest, _: str) -> JsonResponse:
    """`GET /debug_token?input_token=…`."""
    _only(request, "debug_token", "GET")
    input_token = request.params.get("input_token")
    if not input_token:
        raise invalid_parameter("The parameter input_token is required")
    return JsonResponse(200, {"data": sandbox.debug_token(input_token)})


def post_capi_events(sandbox: SandboxGraph, request: SandboxRequest, dataset_id: str) -> JsonResponse:
    """`POST /{dataset-id}/events` with `data` (and `test_event_code`): every event is kept, or none (error 100)."""
    _only(request, dataset_id, "POST")
    if not dataset_id.isdigit():
        raise object_not_found(dataset_id, request.method)
    events = checked_events(_json_param(request, "data"), sandbox.now())
    test_event_code = checked_test_event_code(request.value("test_event_code"))
    received = sandbox.record_capi_events(dataset_id, events, test_event_code)
    logger.info("sandbox dataset %s received %d CAPI events", dataset_id, received)
    return JsonResponse(200, {"events_received": received, "messages": [], "fbtrace_id": new_fbtrace_id()})


HANDLERS: dict[str, Handler] = {
    "lead": get_lead,
    "form": get_form,
    "form_leads": get_form_leads,
    "test_leads": form_test_leads,
    "leadgen_forms": get_leadgen_forms,
    "subscribed_apps": subscribed_apps,
    "debug_token": debug_token,
    "capi_events": post_capi_events,
}


def _usage_header(sandbox: SandboxGraph, page_id: str) -> str:
    usage = sandbox.usage()
    entry = {"type": "leadgen", **usage, "estimated_time_to_regain_access": 0}
    return json.dumps({page_id: [entry]}, separators=(",", ":"))


def handle_graph(sandbox: SandboxGraph, request: SandboxRequest, wait: Callable[[float], object]) -> JsonResponse:
    """Answer one Graph call; raises `GraphError` with Meta's envelope for every failure."""
    resolved = resolve(request.path)
    kind, object_id = resolved if resolved else ("unknown", "")
    if kind == "lead" and sandbox.is_form(object_id):
        kind = "form"
    sandbox.record_call(kind)
    sandbox.authorize(request.token, app_token_ok=kind == "debug_token")
    if resolved is None:
        parts = request.path.strip("/").split("/", 1)
        raise unknown_path("/" + parts[-1])
    owner = sandbox.owner_of(object_id) if kind in PAGE_SCOPED else None
    if owner is not None:
        sandbox.authorize_page(request.token, owner)
    page_id = owner or sandbox.page_of(object_id)
    fault = sandbox.take_fault(kind, owner, request.token)
    if fault is not None:
        logger.info("sandbox fault %s on %s call for %s", fault.kind, kind, object_id or "-")
        if fault.kind == "proxy_error":
            raise fault.proxy_page()
        if fault.kind != "slow":
            raise fault.error(page_id, sandbox.now())
        wait(fault.delay)
    try:
        response = HANDLERS[kind](sandbox, request, object_id)
    except GraphError as error:
        error.headers.setdefault("X-Business-Use-Case-Usage", _usage_header(sandbox, page_id))
        raise
    response.headers.setdefault("X-Business-Use-Case-Usage", _usage_header(sandbox, page_id))
    return response

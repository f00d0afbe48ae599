"""A small Graph API client: explicit fields, token in the Authorization header, timeouts everywhere.

No token ever appears in a URL, so none reaches a logged URL (urllib3 logs request lines at
DEBUG): the caller's token goes in the `Authorization` header, and a parameter that carries one
(`debug_token`'s `input_token`, see `shared.graph.redact`) goes in a form body, a GET being sent
as a POST with `method=GET`. A failed call raises an exception whose text is scrubbed and which
chains no `requests` exception (whose message holds the URL and whose `.request` holds the
headers). Errors become the typed exceptions of `shared.errors` through `classify_error`. A
`ThrottleGate` stops every call while Meta's rate limit is in force; `on_token_invalid` hears
about every token error so the integration can pause.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import requests

from shared.errors import GraphThrottled, GraphUnavailable, TokenInvalid
from shared.graph.errors import PAGE_THROTTLE_CODES, classify_error, regain_seconds
from shared.graph.redact import scrub, split_secret_params
from shared.graph.throttle import ThrottleGate, usage_block_seconds
from shared.http_clients import direct_session
from shared.logs import get_logger
from shared.models.lead import LEAD_FIELDS

log = get_logger(__name__)

MAX_PAGES = 10_000


@dataclass(frozen=True)
class GraphResponse:
    """A successful Graph answer: its JSON body and headers."""

    body: dict[str, Any]
    headers: Mapping[str, str]


class GraphClient:
    """Calls `{base_url}/{version}/…` with a bearer token supplied on each call by `token`."""

    def __init__(
        self,
        base_url: str,
        version: str,
        token: Callable[[], str],
        timeout_seconds: float = 10.0,
        gate: ThrottleGate | None = None,
        on_token_invalid: Callable[[TokenInvalid, str | None], None] | None = None,
        page_token: Callable[[str], str] | None = None,
    ) -> None:
        """`token()` is the default token; `page_token(page_id)` a page's own (the default when it has none)."""
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._token = token
        self._page_token = page_token
        self._timeout = timeout_seconds
        self._gate = gate or ThrottleGate()
        self._on_token_invalid = on_token_invalid
        self._local = threading.local()
        self._calls_made = 0
        self._calls_lock = threading.Lock()

    def page_throttled(self, page_id: str) -> bool:
        """Whether `page_id`'s own rate limit holds its calls back (not the app's: that raises on the call)."""
        return self._gate.blocked_until(page_id) > self._gate.blocked_until()

    @property
    def calls_made(self) -> int:
        """Graph calls sent by this client so far (for run statistics)."""
        with self._calls_lock:
            return self._calls_made

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = direct_session()
            self._local.session = session
        return session

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        token: str | None = None,
        form: Mapping[str, str] | None = None,
        page: str | None = None,
    ) -> GraphResponse:
        """One Graph call; raises a `LeadAgentError` subclass for every failure.

        `token` (else the client's) goes in the `Authorization` header. When `params` (or a query
        written into `path`) hold a credential, every parameter goes in a form body instead of the
        URL, and a GET is sent as a POST with `method=GET`, which Graph serves as the GET
        ("Making Large Requests", developers.facebook.com/docs/graph-api/using-graph-api). `form` goes in a
        POST's form body (never in the URL): what it holds is data, such as the Conversions API's events.
        `page` names the page the call is for: its own token is used, and a token error is reported for it.
        """
        self._gate.check(page)
        where, _, inline = path.partition("?")
        plain, secret = split_secret_params({**dict(parse_qsl(inline, keep_blank_values=True)), **(params or {})})
        url = f"{self._base}/{where.lstrip('/')}"
        bearer = token or (self._page_token(page) if page and self._page_token else self._token())
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
        with self._calls_lock:
            self._calls_made += 1
        if secret:
            body = {
                **plain,
                **secret,
                **(form or {}),
                **({} if method.upper() == "POST" else {"method": method.upper()}),
            }
            response = self._send("POST", url, {}, body, headers, method, where)
        else:
            response = self._send(method, url, plain, dict(form) if form else None, headers, method, where)
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400 or (isinstance(payload, dict) and "error" in payload):
            error = classify_error(response.status_code, payload, response.headers)
            if isinstance(error, GraphThrottled):
                scope = page if error.code in PAGE_THROTTLE_CODES else None  # a page's own limit: that page only
                self._gate.block(error.regain_seconds, str(error), scope)
            elif isinstance(error, TokenInvalid) and self._on_token_invalid is not None:
                self._on_token_invalid(error, page)
            raise error
        pause = usage_block_seconds(response.headers)
        if pause:
            # The business use case header is the page's own usage; X-App-Usage is the whole app's.
            self._gate.block(pause, "usage headers at the limit", page if regain_seconds(response.headers) else None)
        if not isinstance(payload, dict):
            raise GraphUnavailable(f"Graph {method} answered {response.status_code} without a JSON object")
        return GraphResponse(body=payload, headers=response.headers)

    def _send(
        self,
        verb: str,
        url: str,
        query: Mapping[str, str],
        body: Mapping[str, str] | None,
        headers: Mapping[str, str],
        method: str,
        where: str,
    ) -> requests.Response:
        """Send one request; a transport failure becomes `GraphUnavailable` with scrubbed text and no chain."""
        try:
            return self._session().request(
                verb, url, params=dict(query), data=body, headers=dict(headers), timeout=self._timeout
            )
        except requests.RequestException as exc:
            # Raised after the except block, so neither `__cause__` nor `__context__` holds the
            # requests exception: its message carries the URL and its `.request` the headers.
            failure = f"Graph {method} {scrub(where)} failed: {type(exc).__name__} ({scrub(str(exc))[:300]})"
        raise GraphUnavailable(failure)

    def fetch_lead(self, lead_id: str, page_id: str | None = None) -> dict[str, Any]:
        """The raw lead object with every field in `LEAD_FIELDS`, read with its page's token."""
        return self.request("GET", lead_id, {"fields": ",".join(LEAD_FIELDS)}, page=page_id).body

    def paged(
        self, path: str, params: Mapping[str, str], token: str | None = None, page: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged edge, following `after` cursors on the same endpoint.

        Never follows an arbitrary `paging.next` URL (the token would go to it); a short or empty
        page does not end the listing, only a missing `next` does.
        """
        query = dict(params)
        for _ in range(MAX_PAGES):
            body = self.request("GET", path, query, token=token, page=page).body
            data = body.get("data") or []
            yield from (item for item in data if isinstance(item, dict))
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not paging.get("next") or not after:
                return
            query["after"] = str(after)
        raise GraphUnavailable(f"Graph paging of {path} did not end after {MAX_PAGES} pages")

    def form_leads(
        self, form_id: str, since: int, until: int | None = None, limit: int = 100, page_id: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Leads of a form created after `since` (and before `until`), with every lead field."""
        filters: list[dict[str, Any]] = [{"field": "time_created", "operator": "GREATER_THAN", "value": int(since)}]
        if until is not None:
            filters.append({"field": "time_created", "operator": "LESS_THAN", "value": int(until)})
        params = {"fields": ",".join(LEAD_FIELDS), "filtering": json.dumps(filters), "limit": str(limit)}
        return self.paged(f"{form_id}/leads", params, page=page_id)

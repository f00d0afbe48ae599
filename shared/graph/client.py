"""A small Graph API client: explicit fields, token in the Authorization header, timeouts everywhere.

The token never appears in a URL (so never in a logged URL). Errors become the typed exceptions
of `shared.errors` through `classify_error`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from shared.errors import GraphUnavailable
from shared.graph.errors import classify_error
from shared.models.lead import LEAD_FIELDS

log = logging.getLogger(__name__)


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
    ) -> None:
        self._base = f"{base_url.rstrip('/')}/{version}"
        self._token = token
        self._timeout = timeout_seconds
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None) -> GraphResponse:
        """One Graph call; raises a `LeadAgentError` subclass for every failure."""
        url = f"{self._base}/{path.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        try:
            response = self._session().request(
                method, url, params=dict(params or {}), headers=headers, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise GraphUnavailable(f"Graph {method} {path.split('?')[0]} failed: {type(exc).__name__}") from exc
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400 or (isinstance(payload, dict) and "error" in payload):
            raise classify_error(response.status_code, payload, response.headers)
        if not isinstance(payload, dict):
            raise GraphUnavailable(f"Graph {method} answered {response.status_code} without a JSON object")
        return GraphResponse(body=payload, headers=response.headers)

    def fetch_lead(self, lead_id: str) -> dict[str, Any]:
        """The raw lead object with every field in `LEAD_FIELDS`."""
        return self.request("GET", lead_id, {"fields": ",".join(LEAD_FIELDS)}).body

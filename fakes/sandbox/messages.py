"""The sandbox's request and response values, parsed once from WSGI at the edge.

Routes see a `SandboxRequest` (version prefix stripped, token found, body decoded) and return a
`JsonResponse`; neither touches the WSGI environ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fakes.sandbox.errors import invalid_parameter

MAX_BODY_BYTES = 10 * 1024 * 1024
_VERSIONED = re.compile(r"^/(v\d+\.\d+)(/.*)?$")


@dataclass(frozen=True)
class SandboxRequest:
    """One HTTP request: `path` without the `/vNN.N` prefix, `params` from query and form body."""

    method: str
    raw_path: str
    path: str
    version: str | None
    query: list[tuple[str, str]]
    params: dict[str, str]
    json_body: Any
    token: str | None
    base_url: str

    def value(self, name: str) -> Any:
        """A parameter from the JSON body, else from the query or form body; None when absent."""
        if isinstance(self.json_body, dict) and name in self.json_body:
            return self.json_body[name]
        return self.params.get(name)

    def url_with(self, **replacements: str) -> str:
        """This request's absolute URL with some query parameters replaced (or added)."""
        kept = [(k, v) for k, v in self.query if k not in replacements and k not in ("after", "before")]
        return f"{self.base_url}{self.raw_path}?{urlencode([*kept, *replacements.items()])}"


@dataclass
class JsonResponse:
    """A JSON answer: status, body and headers beyond the ones every answer carries."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _bearer_token(authorization: str) -> str | None:
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() in ("bearer", "oauth") and credentials.strip():
        return credentials.strip()
    return None


def read_request(environ: Mapping[str, Any]) -> SandboxRequest:
    """Parse a WSGI environ; a body that is not the JSON or form it claims to be raises error 100."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    raw_path = str(environ.get("PATH_INFO", "/")) or "/"
    versioned = _VERSIONED.match(raw_path)
    version = versioned.group(1) if versioned else None
    path = (versioned.group(2) or "/") if versioned else raw_path
    query = parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY_BYTES:
        raise invalid_parameter("request body too large")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    params = {k: v for k, v in reversed(query)}
    json_body: Any = None
    if body and content_type == "application/json":
        try:
            json_body = json.loads(body)
        except ValueError:
            raise invalid_parameter("Invalid JSON for postdata") from None
    elif body:
        try:
            form = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise invalid_parameter("request body must be UTF-8") from None
        params.update({k: v for k, v in reversed(form)})
    if method == "POST" and params.get("method", "").upper() == "GET":
        # Graph serves a POST carrying `method=GET` as the GET ("Making Large Requests").
        method = "GET"
        del params["method"]
    token = _bearer_token(str(environ.get("HTTP_AUTHORIZATION", "")))
    if token is None:
        from_body = json_body.get("access_token") if isinstance(json_body, dict) else None
        token = from_body if isinstance(from_body, str) else params.get("access_token")
    scheme = str(environ.get("wsgi.url_scheme", "http"))
    host = str(environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}")
    return SandboxRequest(
        method=method,
        raw_path=raw_path,
        path=path,
        version=version,
        query=query,
        params=params,
        json_body=json_body,
        token=token or None,
        base_url=f"{scheme}://{host}",
    )

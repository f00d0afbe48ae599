"""The sandbox as a WSGI application: parse at the edge, route, and write Meta's headers on every answer.

Every response is JSON (`Content-Type: application/json`) and carries `X-App-Usage`,
`x-fb-trace-id` and, on Graph routes, `facebook-api-version`; errors carry Meta's envelope. The
one exception is a `proxy_error` fault: an HTML page, as a proxy in front of Graph sends.
Logs name route kinds and object ids only, never query strings or bodies (lead answers are PII).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fakes.sandbox.control import handle_control
from fakes.sandbox.errors import GraphError, new_fbtrace_id, unexpected_error
from fakes.sandbox.faults import ProxyPage
from fakes.sandbox.graph_routes import handle_graph
from fakes.sandbox.messages import JsonResponse, read_request
from fakes.sandbox.state import SandboxGraph

logger = logging.getLogger("fakes.sandbox")

DEFAULT_VERSION = "v26.0"
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class SandboxApp:
    """WSGI callable over one `SandboxGraph`; `stopping` cuts short any `slow` fault being served."""

    def __init__(self, sandbox: SandboxGraph) -> None:
        self.sandbox = sandbox
        self.stopping = threading.Event()

    def _answer(self, environ: Mapping[str, Any]) -> tuple[JsonResponse, bool, str | None]:
        version: str | None = None
        is_graph = not str(environ.get("PATH_INFO", "")).startswith("/_sandbox/")
        try:
            request = read_request(environ)
            version = request.version
            if is_graph:
                return handle_graph(self.sandbox, request, self.stopping.wait), True, version
            return handle_control(self.sandbox, request), False, version
        except GraphError as error:
            return JsonResponse(error.status, error.envelope(), error.headers), is_graph, version
        except ProxyPage as page:
            html = JsonResponse(page.status, page.html.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8"})
            return html, is_graph, version
        except Exception:
            logger.exception("sandbox failed on a %s call", "graph" if is_graph else "control")
            failure = unexpected_error()
            return JsonResponse(failure.status, failure.envelope(), failure.headers), is_graph, version

    def __call__(self, environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Serve one request; never raises."""
        response, is_graph, version = self._answer(environ)
        if isinstance(response.body, bytes):  # a proxy's page, sent as it is
            body = response.body
        else:
            body = json.dumps(response.body, separators=(",", ":")).encode("ascii")
        headers = {
            "Content-Type": "application/json",
            "X-App-Usage": json.dumps(self.sandbox.usage(), separators=(",", ":")),
            "x-fb-trace-id": new_fbtrace_id(),
            **response.headers,
            "Content-Length": str(len(body)),
        }
        if is_graph:
            headers["facebook-api-version"] = version or DEFAULT_VERSION
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", list(headers.items()))
        return [body]

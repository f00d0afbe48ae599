"""HTTP triggers: a real WSGI server (waitress) that routes requests to the app's HTTP functions.

Requests are matched against `<routePrefix>/<route>` (prefix from host.json, default `api`),
turned into `func.HttpRequest` (raw body bytes, query params, route params, the `client-ip`
header the Azure front end adds) and the returned `func.HttpResponse` is written back. Unknown
paths get 404, known paths with another method 405, a raising function 500. Auth levels are not
enforced, as with Core Tools. Shutdown stops accepting connections first, then waits for the
requests already running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.util import request_uri

import azure.functions as func
from waitress import wasyncore
from waitress.server import create_server

from devhost.invocation import HostedFunction, StartupError, invoke
from devhost.routes import RouteError, RouteTemplate

log = logging.getLogger("devhost.http")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Invoker = Callable[[HostedFunction, Any, str], Any]

# Hop-by-hop headers are the server's business (waitress refuses them from an app); so is the length.
_DROPPED_RESPONSE_HEADERS = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding")
) | {"upgrade", "content-length"}
_RESERVED_PREFIXES = ("admin", "runtime")
HTTP_REASON = "This function was programmatically called via the host APIs."
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions front end's request body limit (larger: 413)
_ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def route_prefix(host_json: Mapping[str, Any]) -> str:
    """`extensions.http.routePrefix` from host.json without slashes; `api` when absent."""
    http = host_json.get("extensions", {}).get("http", {}) or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise StartupError("host.json: extensions.http.routePrefix must be a string")
    return prefix.strip("/")


def _name(value: Any) -> str:
    return value.name if isinstance(value, Enum) else str(value)


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP function: its route template, allowed methods (None = all) and auth level."""

    function: HostedFunction
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str

    @classmethod
    def of(cls, function: HostedFunction) -> HttpRoute:
        """The route of an HTTP-triggered function; reserved or malformed routes raise `StartupError`."""
        route = str(function.setting("route", function.name))
        if route.strip("/").lower().startswith(_RESERVED_PREFIXES):
            raise StartupError(
                f"function {function.name}: route {route!r} conflicts with the host's built-in "
                "'admin'/'runtime' routes (Azure rejects it too); choose another route"
            )
        try:
            template = RouteTemplate(route)
        except RouteError as exc:
            raise StartupError(f"function {function.name}: {exc}") from None
        methods = function.setting("methods")
        allowed = frozenset(_name(m).upper() for m in methods) if methods else None
        return cls(function, template, allowed, _name(function.setting("authLevel", "FUNCTION")).lower())

    def allows(self, method: str) -> bool:
        """Whether this route accepts the HTTP method."""
        return self.methods is None or method.upper() in self.methods

    def describe_methods(self) -> str:
        """The methods as `func start` lists them, e.g. `[GET,POST]`."""
        return "[" + ",".join(sorted(self.methods) if self.methods else _ALL_METHODS) + "]"


Reply = tuple[int, list[tuple[str, str]], bytes]


def _plain(status: int, text: str = "", headers: Iterable[tuple[str, str]] = ()) -> Reply:
    body = text.encode()
    return status, [("Content-Type", "text/plain; charset=utf-8"), *headers], body


def _request_headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH") and not value:
            continue
        canonical = "-".join(part.capitalize() for part in name.split("_"))
        if canonical.lower() != "client-ip":
            headers[canonical] = str(value)
    headers["client-ip"] = f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}"
    return headers


def _query_params(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def _read_body(environ: Mapping[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    return bytes(stream.read())


def _response(result: Any) -> Reply:
    if result is None:
        return HTTPStatus.NO_CONTENT, [], b""
    if isinstance(result, str):
        return _plain(HTTPStatus.OK, result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"an HTTP function must return func.HttpResponse or str, not {type(result).__name__}")
    headers = [(str(k), str(v)) for k, v in result.headers.items() if str(k).lower() not in _DROPPED_RESPONSE_HEADERS]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype, charset = str(result.mimetype), str(result.charset)
        headers.append(("Content-Type", f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype))
    return int(result.status_code), headers, result.get_body()


class HttpApp:
    """The WSGI application: route, build the request, invoke, convert the response."""

    def __init__(self, routes: Iterable[HttpRoute], prefix: str, invoker: Invoker = invoke) -> None:
        self.routes = sorted(routes, key=lambda r: r.template.precedence)
        self.prefix = prefix
        self._invoke = invoker
        self._accepting = True
        self._in_flight = 0
        self._idle = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        with self._idle:
            accepted = self._accepting
            if accepted:
                self._in_flight += 1
        try:
            if not accepted:
                status, headers, body = _plain(HTTPStatus.SERVICE_UNAVAILABLE, "The host is shutting down.")
            else:
                status, headers, body = self._handle(environ)
        except Exception:
            log.exception("HTTP %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, headers, body = _plain(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
        finally:
            if accepted:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()
        headers.append(("Content-Length", str(len(body))))
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        start_response(f"{int(status)} {phrase}", headers)
        return [body]

    def _path(self, environ: Mapping[str, Any]) -> str | None:
        raw = str(environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8", "replace")
        path = raw.strip("/")
        if not self.prefix:
            return path
        prefix = self.prefix.lower()
        if path.lower() == prefix:
            return ""
        return path[len(prefix) + 1 :] if path.lower().startswith(prefix + "/") else None

    def _handle(self, environ: dict[str, Any]) -> Reply:
        path = self._path(environ)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        matches = [] if path is None else [(r, p) for r in self.routes if (p := r.template.match(path)) is not None]
        if not matches:
            return _plain(HTTPStatus.NOT_FOUND)
        chosen = next(((r, p) for r, p in matches if r.allows(method)), None)
        if chosen is None:
            allowed = sorted({m for r, _ in matches for m in (r.methods or _ALL_METHODS)})
            return _plain(HTTPStatus.METHOD_NOT_ALLOWED, headers=[("Allow", ", ".join(allowed))])
        route, route_params = chosen
        request = func.HttpRequest(
            method=method,
            url=request_uri(environ, include_query=True),
            headers=_request_headers(environ),
            params=_query_params(str(environ.get("QUERY_STRING", ""))),
            route_params=route_params,
            body=_read_body(environ),
        )
        try:
            result = self._invoke(route.function, request, HTTP_REASON)
        except Exception:  # invoke logged it with its traceback
            return _plain(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
        return _response(result)

    def stop_accepting(self) -> None:
        """From now on requests get 503 instead of reaching a function."""
        with self._idle:
            self._accepting = False

    def wait_idle(self, deadline: float) -> bool:
        """Wait (until the `time.monotonic()` deadline) for running requests to finish; True when none run."""
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True


class HttpServer:
    """A waitress server for an `HttpApp` on host:port, run in a thread, stoppable without losing replies."""

    def __init__(self, app: HttpApp, host: str, port: int, threads: int = 8) -> None:
        self.app = app
        try:
            self._server: Any = create_server(
                app, host=host, port=port, threads=threads, ident="devhost", max_request_body_size=MAX_BODY_BYTES
            )
        except OSError as exc:
            raise StartupError(f"cannot listen on http://{host}:{port}: {exc.strerror or exc}") from None
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name="devhost-http", daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def _in_loop(self, action: Callable[[], None], timeout: float = 5.0) -> None:
        done = threading.Event()

        def thunk() -> None:
            try:
                action()
            finally:
                done.set()

        self._server.trigger.pull_trigger(thunk)
        done.wait(timeout)

    def stop_accepting(self) -> None:
        """Close the listening socket (new connections are refused) and answer 503 on open ones."""
        self.app.stop_accepting()
        if self._thread.is_alive():
            self._in_loop(lambda: wasyncore.dispatcher.close(self._server))

    def close(self, deadline: float) -> bool:
        """Wait for running requests (until `deadline`), flush their replies, stop the server thread."""
        finished = self.app.wait_idle(deadline)
        self._server.task_dispatcher.shutdown(timeout=max(0.1, deadline - time.monotonic()))
        flush_by = min(deadline, time.monotonic() + 2.0)
        while time.monotonic() < flush_by and any(
            ch.total_outbufs_len for ch in list(self._server.active_channels.values())
        ):
            time.sleep(0.01)
        if self._thread.is_alive():
            self._in_loop(lambda: wasyncore.close_all(self._server._map))
            self._thread.join(max(0.1, deadline - time.monotonic()))
        else:
            self._server.close()
        return finished

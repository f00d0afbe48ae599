"""The receiver's HTTP layer: a threading HTTP/1.1 server that reads a request, asks the `Receiver`, answers.

A thread per connection, so a held answer (a `timeout` fault) blocks no one else. The server keeps
every open connection, so `cut_connections` can end held answers and idle keep-alive connections at
once when the receiver stops. No access log: the default one would show query strings, and the
receiver logs path, status and id itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from fakes.receiver.control import handle_control
from fakes.receiver.records import kind_of, normalised

if TYPE_CHECKING:
    from fakes.receiver.server import Receiver

logger = logging.getLogger("fakes.receiver")

MAX_BODY_BYTES = 10 * 1024 * 1024
IDLE_CONNECTION_SECONDS = 5.0
RETRY_AFTER_STATUSES = (429, 503)  # Slack and Workflows send Retry-After with these
NO_BODY_STATUSES = (204, 304)


def _cut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class ReceiverServer(ThreadingHTTPServer):
    """The HTTP server of one `Receiver`; `stopping` is set once `cut_connections` ran."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], receiver: Receiver) -> None:
        self.receiver = receiver
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def opened(self, connection: socket.socket) -> None:
        """Keep a new connection, or cut it at once when the server is stopping."""
        with self._connections_lock:
            self._connections.add(connection)
            if not self.stopping.is_set():
                return
        _cut(connection)

    def closed(self, connection: socket.socket) -> None:
        """Forget a connection its handler is done with."""
        with self._connections_lock:
            self._connections.discard(connection)

    def cut_connections(self) -> None:
        """Mark the server stopping and shut every open connection, so no handler waits on a client."""
        with self._connections_lock:
            self.stopping.set()
            connections = list(self._connections)
        for connection in connections:
            _cut(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line for a client that went away (normal after a held answer); the traceback for the rest."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            logger.debug("receiver: connection ended early: %s", type(error).__name__)
            return
        logger.exception("receiver failed on a request")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_SECONDS  # an idle kept-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would hold the second 40 ms
    server: ReceiverServer

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        self.server.closed(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """No access log (see the module docstring)."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path = normalised(url.path)
        body = self._read_body()
        if body is None:
            return
        if path.startswith("/_receiver/"):
            status, document = handle_control(self.server.receiver, method, path, parse_qs(url.query), body)
            self._send(status, json.dumps(document).encode("utf-8"), "application/json")
            return
        kind = kind_of(path)
        if kind is None or method != "POST":
            self._send(404 if kind is None else 405, b"", None)
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, content, hold = self.server.receiver.receive(kind, path, headers, body)
        if hold:
            self.server.stopping.wait(hold)
        self._send(status, content, "text/plain; charset=utf-8" if content else None)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(411, b"", None)
            return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, b"", None)
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, content: bytes, content_type: str | None) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        if status in RETRY_AFTER_STATUSES:
            self.send_header("Retry-After", "1")
        if status not in NO_BODY_STATUSES:
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
        if self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if content and status not in NO_BODY_STATUSES:
            self.wfile.write(content)

"""A counting HTTP proxy in front of one Azurite endpoint (queue or table): forwards, and names each operation.

Every request is forwarded unchanged (method, path, query, headers, body) to the upstream port on
127.0.0.1 over one kept-alive connection per client connection, and the answer is sent back with
its status, headers and body (a chunked answer is sent with its length instead). Each request is
classified as an Azure Storage REST operation from method + path + query (`PutMessage`,
`GetMessages`, `DeleteMessage`, `GetEntity`, `UpsertEntity` …) and by who sent it: `app` when
the User-Agent starts with the app's prefix (`shared.messaging.sender.USER_AGENT`), or when it is
a table request (the devhost has no table client), else `host`. A `GetMessages` answer is
counted with the messages it carried, so empty polls can be told from work.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from shared.messaging.sender import USER_AGENT

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}
_ENTITY = re.compile(r"^(?P<table>[^/(]+)\((?P<keys>.*)\)$")


@dataclass(frozen=True)
class Call:
    """One classified request: service, who sent it, the operation, the queue or table, messages received."""

    service: str
    actor: str
    operation: str
    resource: str
    messages: int
    at: float


def queue_operation(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str]:
    """The queue service operation and queue of a request (path-style: `/account/queue[/messages[/id]]`)."""
    parts = [p for p in path.split("/") if p][1:]  # drop the account
    comp = (query.get("comp") or [""])[0]
    if not parts:
        return ("ListQueues" if comp == "list" else f"Service{method.title()}"), ""
    queue = parts[0]
    if len(parts) == 1:
        if comp == "metadata":
            return ("SetQueueMetadata" if method == "PUT" else "GetQueueMetadata"), queue
        if comp == "acl":
            return ("SetQueueACL" if method == "PUT" else "GetQueueACL"), queue
        return {"PUT": "CreateQueue", "DELETE": "DeleteQueue"}.get(method, f"Queue{method.title()}"), queue
    if len(parts) == 2:  # /queue/messages
        if method == "POST":
            return "PutMessage", queue
        if method == "GET":
            peek = (query.get("peekonly") or [""])[0].lower() == "true"
            return ("PeekMessages" if peek else "GetMessages"), queue
        if method == "DELETE":
            return "ClearMessages", queue
    if len(parts) == 3:  # /queue/messages/<id>?popreceipt=
        if method == "DELETE":
            return "DeleteMessage", queue
        if method == "PUT":
            return "UpdateMessage", queue
    return f"Other{method.title()}", queue


def table_operation(method: str, path: str, query: dict[str, list[str]], if_match: bool) -> tuple[str, str]:
    """The table service operation and table of a request (`/account/Tables`, `/account/t(PK,RK)`, `/account/t()`)."""
    parts = [p for p in path.split("/") if p][1:]
    if not parts:
        return f"Service{method.title()}", ""
    head = parts[0]
    if head.startswith("Tables"):
        return {"POST": "CreateTable", "GET": "QueryTables", "DELETE": "DeleteTable"}.get(method, "Tables"), head
    if head == "$batch":
        return "Batch", ""
    match = _ENTITY.match(head)
    table = match.group("table") if match else head
    keyed = bool(match and match.group("keys"))
    if method == "GET":
        return ("GetEntity" if keyed else "QueryEntities"), table
    if method == "POST":
        return "InsertEntity", table
    if method == "PUT":
        return ("UpdateEntity" if if_match else "UpsertEntity"), table
    if method in ("MERGE", "PATCH"):
        return ("MergeEntity" if if_match else "UpsertMergeEntity"), table
    if method == "DELETE":
        return "DeleteEntity", table
    return f"Other{method.title()}", table


class CountingProxy:
    """Serves on a free 127.0.0.1 port and forwards to `upstream_port`; `calls` holds every request seen."""

    def __init__(self, service: str, upstream_port: int) -> None:
        self.service = service
        self.upstream_port = upstream_port
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            _upstream: http.client.HTTPConnection | None = None  # one per client connection

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = self._upstream
                if upstream is None:
                    upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                    self._upstream = upstream
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    content = answer.read()
                except (OSError, http.client.HTTPException):
                    upstream.close()
                    self._upstream = None
                    self.send_error(502, "upstream failed")
                    return
                self.send_response_only(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)
                proxy._record(self.command, self.path, self.headers, answer.status, content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_MERGE = do_PATCH = do_OPTIONS = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"proxy-{service}", daemon=True)

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, method: str, target: str, headers: object, status: int, content: bytes) -> None:
        split = urlsplit(target)
        query = parse_qs(split.query)
        agent = str(getattr(headers, "get")("User-Agent") or "")  # noqa: B009 - an email.message.Message
        if self.service == "queue":
            operation, resource = queue_operation(method, split.path, query)
            actor = "app" if agent.startswith(USER_AGENT) else "host"
        else:
            if_match = bool(getattr(headers, "get")("If-Match"))  # noqa: B009
            operation, resource = table_operation(method, split.path, query, if_match)
            actor = "app"
        received = content.count(b"<QueueMessage>") if operation == "GetMessages" else 0
        if status >= 400:
            operation = f"{operation} ({status})"
        with self._lock:
            self.calls.append(Call(self.service, actor, operation, resource, received, time.monotonic()))

    def snapshot(self) -> int:
        """A mark: the number of calls seen so far (pass it to `since`)."""
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> list[Call]:
        with self._lock:
            return list(self.calls[mark:])


def tally(calls: list[Call]) -> Counter[tuple[str, str, str]]:
    """Calls per (actor, service, operation); a `GetMessages` that received nothing is `GetMessages (empty)`."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for call in calls:
        operation = call.operation
        if operation == "GetMessages" and call.messages == 0:
            operation = "GetMessages (empty)"
        counts[(call.actor, call.service, operation)] += 1
    return counts

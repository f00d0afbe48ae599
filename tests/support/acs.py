"""A fake Azure Communication Services Email behind a real `EmailClient`: an azure-core transport.

The SDK's own pipeline runs unchanged (HMAC or bearer signing, retry policy, the `begin_send`
long-running operation); only the HTTP hop is replaced. `POST /emails:send` answers `202` with an
`Operation-Location` to poll, and `GET /emails/operations/{id}` answers the operation's status.
A send's `Operation-Id` header becomes its operation id. Repeatable requests (OASIS Repeatable
Requests 1.0, as ACS Email documents them): a send carrying `Repeatability-Request-Id` and
`Repeatability-First-Sent` is tracked for 5 minutes from its first-sent time; a repeat within that
window is answered with the original's status, headers and body (no second message) when the
original ended 2xx or 4xx, re-executed when it ended 5xx, and answered `409` while the original is
in progress; a first-sent time older than the window gets `412`; a known request id with another
body gets `400`.

Switches make it misbehave on purpose: throttle the next sends (`429` + `Retry-After`), fail them
(`503`), reject them (`400 InvalidRecipient`), fail the operation itself, keep operations
`Running`, hold status polls until released, lose the answers to the next sends after processing
them (`ServiceResponseError`), answer the next repeats as still in progress (`409`), or be
unreachable (`ServiceRequestError`). Every request is recorded with its headers and whether its
signature checked out; every accepted message body is kept for assertions.

Not emulated: a repeat's `Repeatability-Client-ID` scope, an `Operation-Id` reused without
repeatability headers, and how long ACS keeps an operation's status (here: for ever).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import HttpTransport

from tests.support.transport import request_body, transport_response

ENDPOINT = "https://test-acs.unitedstates.communication.azure.com"
ACCESS_KEY = base64.b64encode(b"fake-acs-access-key-for-tests-only").decode()
CONNECTION_STRING = f"endpoint={ENDPOINT}/;accesskey={ACCESS_KEY}"
BEARER_TOKEN = "fake-acs-token"
ACS_SCOPE = "https://communication.azure.com//.default"
SENDER_ADDRESS = "DoNotReply@0a1b2c3d.azurecomm.net"
MAX_RECIPIENTS = 50
REPEATABILITY_WINDOW = timedelta(minutes=5)

Answer = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class AcsRequest:
    """One request the service saw: its route, how it was signed, and the status it got."""

    method: str
    path: str
    auth_scheme: str | None  # "HMAC-SHA256", "Bearer" or None
    signature_valid: bool
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names, `authorization` left out


@dataclass(frozen=True)
class _Tracked:
    """A repeatable send the service has seen: its body and, once executed, the answer it got."""

    body: bytes
    answer: Answer | None


@dataclass
class FakeAcsEmail:
    """The service's state: switches for failures, every request, and every accepted message."""

    endpoint: str = ENDPOINT
    access_key: str = ACCESS_KEY
    bearer_token: str = BEARER_TOKEN
    reachable: bool = True
    throttle_next: int = 0  # answer the next N sends with 429
    throttle_retry_after: int = 17
    fail_next: int = 0  # answer the next N sends with 503
    reject_next: int = 0  # answer the next N sends with 400 InvalidRecipient
    operation_error: tuple[str, str] | None = None  # (code, message): accepted sends end "Failed"
    keep_running: bool = False  # status polls answer "Running" while set
    hold_status_polls: bool = False  # status polls wait until `release()`
    lose_next_responses: int = 0  # process the next N sends, then lose their answers
    conflict_next_repeats: int = 0  # answer the next N repeats 409, as if their original were still in progress
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # the service's time
    requests: list[AcsRequest] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0  # connection attempts made while unreachable
    _operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    _repeatable: dict[str, _Tracked] = field(default_factory=dict)
    _released: threading.Event = field(default_factory=threading.Event)

    @property
    def send_attempts(self) -> list[AcsRequest]:
        """Every `emails:send` request that reached the service, whatever it was answered."""
        return [r for r in self.requests if r.method == "POST"]

    def transport(self) -> FakeAcsTransport:
        return FakeAcsTransport(self)

    def release(self) -> None:
        """Let held status polls answer."""
        self._released.set()

    def answer(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Answer:
        """Status, headers and body for one request, as ACS Email would answer it."""
        parts = urlsplit(url)
        headers = {k.lower(): v for k, v in headers.items()}
        scheme, valid = self._authenticate(method, url, headers, body)
        extra: dict[str, str]
        if not valid:
            status, extra, payload = 401, {}, _error("Denied", "Denied by the resource provider.")
        elif method == "POST" and parts.path == "/emails:send":
            status, extra, payload = self._repeatable_send(headers, body, parts.query)
        elif method == "GET" and parts.path.startswith("/emails/operations/"):
            status, extra, payload = self._status(parts.path.rsplit("/", 1)[-1])
        else:
            status, extra, payload = 404, {}, _error("NotFound", f"{method} {parts.path} is not supported by the fake")
        seen = {name: value for name, value in headers.items() if name != "authorization"}
        self.requests.append(AcsRequest(method, parts.path, scheme, valid, status, seen))
        return status, {"Content-Type": "application/json; charset=utf-8", **extra}, payload

    def _repeatable_send(self, headers: dict[str, str], body: bytes, query: str) -> Answer:
        """A send, answered once per repeatability request id within the tracking window."""
        request_id = headers.get("repeatability-request-id")
        if request_id is None:
            return self._send(json.loads(body or b"{}"), query, headers.get("operation-id"))
        try:
            first_sent = parsedate_to_datetime(headers.get("repeatability-first-sent", ""))
        except (TypeError, ValueError):
            return 400, {}, _error("BadRequest", "Repeatability-First-Sent must be an IMF-fixdate.")
        if first_sent.tzinfo is None:  # "-0000": UTC, zone unstated
            first_sent = first_sent.replace(tzinfo=UTC)
        if self.clock() - first_sent > REPEATABILITY_WINDOW:
            return 412, {}, _error("PreconditionFailed", "Repeatability-First-Sent is outside the tracking window.")
        tracked = self._repeatable.get(request_id)
        if tracked is not None:
            if tracked.body != body:
                return 400, {}, _error("BadRequest", "Repeatability-Request-Id was used with another request body.")
            in_progress = tracked.answer is None
            if self.conflict_next_repeats > 0:
                self.conflict_next_repeats -= 1
                in_progress = True
            if in_progress:
                return 409, {}, _error("Conflict", "The original request is still being processed.")
            if tracked.answer is not None and tracked.answer[0] < 500:
                return tracked.answer
        self._repeatable[request_id] = _Tracked(body, None)  # in progress
        answer = self._send(json.loads(body or b"{}"), query, headers.get("operation-id"))
        self._repeatable[request_id] = _Tracked(body, answer)
        return answer

    def _send(self, message: dict[str, Any], query: str, operation_id: str | None) -> Answer:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            retry_after = {"Retry-After": str(self.throttle_retry_after)}
            return 429, retry_after, _error("TooManyRequests", "Too many requests; retry after the given delay.")
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503, {}, _error("ServiceUnavailable", "The service is temporarily unavailable.")
        if self.reject_next > 0:
            self.reject_next -= 1
            return 400, {}, _error("InvalidRecipient", "The recipient address is not valid.")
        problem = _shape_problem(message)
        if problem:
            return 400, {}, _error("BadRequest", problem)
        operation_id = operation_id or str(uuid.uuid4())
        final: dict[str, Any] = {"id": operation_id, "status": "Succeeded"}
        if self.operation_error is not None:
            code, text = self.operation_error
            final = {"id": operation_id, "status": "Failed", "error": {"code": code, "message": text}}
        self._operations[operation_id] = final
        self.sent.append(message)
        location = f"{self.endpoint}/emails/operations/{operation_id}?{query}"
        headers = {"Operation-Location": location, "operation-id": operation_id, "Retry-After": "0"}
        return 202, headers, json.dumps({"id": operation_id, "status": "Running"}).encode()

    def _status(self, operation_id: str) -> Answer:
        if self.hold_status_polls:
            self._released.wait(timeout=30)
        final = self._operations.get(operation_id)
        if final is None:
            return 404, {}, _error("NotFound", f"Operation {operation_id} was not found.")
        if self.keep_running:
            return 200, {}, json.dumps({"id": operation_id, "status": "Running"}).encode()
        return 200, {}, json.dumps(final).encode()

    def _authenticate(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[str | None, bool]:
        """The scheme of the `Authorization` header and whether it is a valid signature or token."""
        authorization = headers.get("authorization", "")
        scheme = authorization.split(" ", 1)[0] or None
        if scheme == "Bearer":
            return scheme, authorization == f"Bearer {self.bearer_token}"
        if scheme == "HMAC-SHA256":
            return scheme, authorization == self._hmac_authorization(method, url, headers, body)
        return scheme, False

    def _hmac_authorization(self, method: str, url: str, headers: dict[str, str], body: bytes) -> str:
        """The header ACS expects: HMAC-SHA256 over verb, path+query, date, host and body hash."""
        parts = urlsplit(url)
        content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if headers.get("x-ms-content-sha256") != content_hash:
            return "<body hash mismatch>"
        path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
        to_sign = f"{method}\n{path_and_query}\n{headers.get('x-ms-date', '')};{parts.netloc};{content_hash}"
        digest = hmac.new(base64.b64decode(self.access_key), to_sign.encode(), hashlib.sha256).digest()
        signature = base64.b64encode(digest).decode()
        return f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"


class FakeAcsTransport(HttpTransport):  # type: ignore[type-arg]
    """An azure-core transport that sends every request to a `FakeAcsEmail` instead of the network."""

    def __init__(self, service: FakeAcsEmail) -> None:
        self.service = service
        self.sleeps: list[float] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        if not self.service.reachable:
            self.service.refused += 1
            raise ServiceRequestError(f"Failed to establish a connection to {urlsplit(request.url).netloc}")
        status, headers, payload = self.service.answer(
            request.method, request.url, dict(request.headers), request_body(request)
        )
        if request.method == "POST" and self.service.lose_next_responses > 0:
            self.service.lose_next_responses -= 1
            raise ServiceResponseError("Connection aborted: the answer to the send was lost")
        return transport_response(request, status, headers, payload)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: object) -> None:
        pass

    def sleep(self, duration: float) -> None:
        """Polling and retry delays cost no wall time against the fake; the delays asked are kept."""
        self.sleeps.append(duration)


def _shape_problem(message: dict[str, Any]) -> str | None:
    """Why `message` is not a valid GA send request, or None."""
    if not message.get("senderAddress"):
        return "senderAddress is required."
    recipients = message.get("recipients") or {}
    addresses = [r.get("address") for kind in ("to", "cc", "bcc") for r in recipients.get(kind, [])]
    if not addresses or not all(addresses):
        return "At least one recipient with an address is required."
    if len(addresses) > MAX_RECIPIENTS:
        return f"At most {MAX_RECIPIENTS} recipients are allowed."
    content = message.get("content") or {}
    if not content.get("subject") or not (content.get("plainText") or content.get("html")):
        return "content.subject and a plainText or html body are required."
    return None


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()

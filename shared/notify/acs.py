"""The Azure Communication Services Email sender: one idempotent `begin_send` per email, classified once.

The client is built on first use, from the connection string when one is given (HMAC-signed
requests), else from the endpoint and a token credential (`DefaultAzureCredential` unless given).

Every send is a repeatable request. Its `Operation-Id` is a UUID derived from the email's
`idempotency_key` (the notifier's claim id), and it carries `Repeatability-Request-Id` (the same
UUID) and `Repeatability-First-Sent` (when this send began): ACS tracks such a request for 5
minutes and answers a repeat with the original's outcome instead of sending a second email. So
azure-core's repeats of a send whose answer was lost (`ServiceResponseError`) are safe; no other
retry of the send happens inside the SDK (a `429` becomes `SenderThrottled` with the service's
`Retry-After`, so the queue waits instead of a blocked worker). Once ACS may have the
email, nothing is retried blindly: a lost answer that stays lost, a repeat still in progress
(`409`) and a status poll that times out raise `SendOutcomeUnknown`, and `outcome(key)` later asks
ACS what became of that operation.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from email.utils import formatdate, parsedate_to_datetime
from time import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ServiceResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.polling.base_polling import OperationFailed
from azure.core.rest import HttpRequest, HttpResponse

from shared.errors import LeadAgentError
from shared.notify.base import OutgoingEmail, SenderThrottled, SendFailed, SendOutcomeUnknown, SendRejected

if TYPE_CHECKING:
    from azure.communication.email import EmailClient
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

ACS_SCOPE = "https://communication.azure.com//.default"
API_VERSION = "2025-09-01"
MAX_RECIPIENTS = 50
DEFAULT_RETRY_AFTER = 60.0
CONNECTION_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
RETRIES = 3  # azure-core's retries of a status poll, and of a send whose answer was lost
RETRY_BACKOFF = 0.5
RETRY_BACKOFF_MAX = 8.0
REPEATABILITY_REQUEST_ID = "Repeatability-Request-Id"
REPEATABILITY_FIRST_SENT = "Repeatability-First-Sent"
# Operation ids are uuid5(this namespace, idempotency key): any instance derives the same id from a claim.
OPERATION_NAMESPACE = uuid.UUID("6f0c3a52-8d1e-5b7a-9c4e-2a51d0e7b3f9")
_RUNNING = frozenset({"NotStarted", "Running"})
_NOT_SENT = frozenset({"Failed", "Canceled"})


def operation_id_for(idempotency_key: str) -> str:
    """The ACS operation id (and repeatability request id) of the send made under `idempotency_key`."""
    return str(uuid.uuid5(OPERATION_NAMESPACE, idempotency_key))


def longest_send_seconds(poll_timeout: float) -> float:
    """The longest one `send` can take: the send and its repeats (each up to the connect and read
    timeouts, with azure-core's backoff between them), then polling for up to `poll_timeout`."""
    attempts = RETRIES + 1
    backoff = sum(min(RETRY_BACKOFF_MAX, RETRY_BACKOFF * 2.0 ** (n - 1)) for n in range(2, attempts))
    return attempts * (CONNECTION_TIMEOUT + READ_TIMEOUT) + backoff + poll_timeout


def _is_send(request: Any) -> bool:
    return str(request.method).upper() == "POST"


class _SendRepeatedOnlyWhenItsAnswerWasLost(RetryPolicy[HttpRequest, HttpResponse]):
    """azure-core's retry policy, except for `POST emails:send`.

    The stock policy retries a `429` (and `500/503/504`) on POST, sleeping `Retry-After` each time:
    a throttled send would block the worker for minutes, so the send is never retried by status,
    nor when the connection failed (nothing went out; the queue retries with backoff). It is
    repeated only when it went out and its answer was lost, and only as a repeatable request (same
    `Operation-Id` and Repeatability headers), which ACS answers with the original's outcome.
    Status polls (GET) keep the stock retries.
    """

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if _is_send(response.http_request):
            return False
        return bool(super().is_retry(settings, response))

    def _is_method_retryable(self, settings: dict[str, Any], request: Any, response: Any = None) -> bool:
        if _is_send(request):
            return response is None and REPEATABILITY_REQUEST_ID in request.headers
        return bool(super()._is_method_retryable(settings, request, response))

    def increment(self, settings: dict[str, Any], response: Any = None, error: Exception | None = None) -> bool:
        if error is not None and not isinstance(error, ServiceResponseError) and _is_send(response.http_request):
            return False  # the connection failed: the send never left
        return bool(super().increment(settings, response=response, error=error))


class AcsSender:
    """Sends through ACS Email; returns the operation id once the service reports `Succeeded`."""

    def __init__(
        self,
        sender_address: str,
        connection_string: str = "",
        endpoint: str = "",
        credential: TokenCredential | None = None,
        poll_timeout: float = 60.0,
        transport: Any = None,
        name: str = "acs",
        poll_interval: float = 5.0,
    ) -> None:
        if not sender_address:
            raise ValueError("AcsSender needs a sender address (DoNotReply@<domain>)")
        if not (connection_string or endpoint):
            raise ValueError("AcsSender needs a connection_string or an endpoint (the connection string wins)")
        self.sender_address = sender_address
        self.connection_string = connection_string
        self.endpoint = endpoint
        self.poll_timeout = poll_timeout
        self.poll_interval = poll_interval
        self.name = name
        self._credential = credential
        self._transport = transport
        self._client: EmailClient | None = None

    def send(self, email: OutgoingEmail) -> str:
        """Hand `email` to ACS and wait up to `poll_timeout` for the outcome; return the operation id.

        Raises `SendOutcomeUnknown` once ACS may have the email but has not said how it ended.
        """
        if not 0 < email.recipient_count <= MAX_RECIPIENTS:
            raise SendRejected(f"ACS takes 1 to {MAX_RECIPIENTS} recipients, not {email.recipient_count}")
        client = self._email_client()
        operation_id = operation_id_for(email.idempotency_key or uuid.uuid4().hex)
        repeatability = {REPEATABILITY_REQUEST_ID: operation_id, REPEATABILITY_FIRST_SENT: formatdate(usegmt=True)}
        try:
            poller = client.begin_send(
                _message(self.sender_address, email),
                operation_id=operation_id,
                headers=repeatability,
                polling_interval=self.poll_interval,
            )
        except AzureError as exc:
            raise _send_error(exc) from exc
        try:
            result = poller.result(timeout=self.poll_timeout)
        except AzureError as exc:
            if isinstance(exc.__cause__, OperationFailed):
                raise _classified(exc) from exc
            unread = _error_detail(exc) if isinstance(exc, HttpResponseError) else type(exc).__name__
            raise SendOutcomeUnknown(f"ACS accepted send {operation_id}; its status is unreadable: {unread}") from exc
        if not poller.done():
            raise SendOutcomeUnknown(
                f"ACS send {operation_id} still running after {self.poll_timeout:g}s (status {poller.status()})"
            )
        status = str((result or {}).get("status", ""))
        if status != "Succeeded":
            raise SendRejected(f"ACS send ended {status or 'without a status'}: {_result_error(result)}")
        message_id = str(result["id"])
        logger.info("acs accepted email %s for %d recipient(s)", message_id, email.recipient_count)
        return message_id

    def outcome(self, idempotency_key: str) -> str | None:
        """What became of the send made under `idempotency_key`, from its operation's status.

        The operation id when it `Succeeded`; None when ACS never had it (404) or it ended `Failed` /
        `Canceled` (nothing went out). Raises `SendOutcomeUnknown` while it is `NotStarted` or
        `Running`, and the sender errors when ACS cannot be asked.
        """
        operation_id = operation_id_for(idempotency_key)
        request = HttpRequest("GET", f"/emails/operations/{operation_id}", params={"api-version": API_VERSION})
        try:
            response = self._email_client().send_request(request)
            if response.status_code == 404:
                return None
            response.raise_for_status()
            body = response.json()
        except AzureError as exc:
            raise _classified(exc) from exc
        except ValueError as exc:
            raise SendFailed(f"ACS answered the status of send {operation_id} without JSON") from exc
        status = str(body.get("status", "")) if isinstance(body, dict) else ""
        if status == "Succeeded":
            return str(body.get("id") or operation_id)
        if status in _NOT_SENT:
            return None
        if status in _RUNNING:
            raise SendOutcomeUnknown(f"ACS send {operation_id} is still {status}")
        raise SendFailed(f"ACS answered the status of send {operation_id} with {status or 'no status'!r}")

    def check(self) -> str:
        """Build the client and prove the credentials usable (a token, or a parseable key); send nothing."""
        self._email_client()
        if self._credential is not None and not self.connection_string:
            try:
                self._credential.get_token(ACS_SCOPE)
            except ClientAuthenticationError as exc:
                raise SendRejected(f"ACS credential cannot get a token: {type(exc).__name__}") from exc
            except AzureError as exc:
                raise SendFailed(f"ACS token request failed: {type(exc).__name__}") from exc
        return f"acs configured: {self._host()}"

    def _host(self) -> str:
        endpoint = _parse_connection_string(self.connection_string)[0] if self.connection_string else self.endpoint
        return urlsplit(endpoint if "//" in endpoint else f"https://{endpoint}").hostname or endpoint

    def _email_client(self) -> EmailClient:
        if self._client is None:
            from azure.communication.email import EmailClient

            options: dict[str, Any] = {
                "api_version": API_VERSION,
                "connection_timeout": CONNECTION_TIMEOUT,
                "read_timeout": READ_TIMEOUT,
                "retry_policy": _SendRepeatedOnlyWhenItsAnswerWasLost(
                    retry_total=RETRIES, retry_backoff_factor=RETRY_BACKOFF, retry_backoff_max=RETRY_BACKOFF_MAX
                ),
            }
            if self._transport is not None:
                options["transport"] = self._transport
            if self.connection_string:
                _parse_connection_string(self.connection_string)
                self._client = EmailClient.from_connection_string(self.connection_string, **options)
            else:
                if self._credential is None:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
                self._client = EmailClient(self.endpoint, self._credential, **options)
        return self._client


def _message(sender_address: str, email: OutgoingEmail) -> dict[str, Any]:
    """The GA request body; empty recipient lists and headers are left out."""
    recipients: dict[str, list[dict[str, str]]] = {}
    if email.to:
        recipients["to"] = [{"address": address} for address in email.to]
    if email.bcc:
        recipients["bcc"] = [{"address": address} for address in email.bcc]
    message: dict[str, Any] = {
        "senderAddress": sender_address,
        "recipients": recipients,
        "content": {"subject": email.subject, "plainText": email.text, "html": email.html},
    }
    if email.headers:
        message["headers"] = dict(email.headers)
    return message


def _parse_connection_string(connection_string: str) -> tuple[str, bytes]:
    """`(endpoint, key)` from `endpoint=https://…/;accesskey=<base64>`; SendRejected when it is not that."""
    fields = dict(part.partition("=")[::2] for part in connection_string.split(";") if part)
    values = {key.strip().lower(): value.strip() for key, value in fields.items()}
    endpoint, key = values.get("endpoint", ""), values.get("accesskey", "")
    try:
        decoded = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not endpoint or not decoded:
        raise SendRejected("ACS connection string is not 'endpoint=https://…;accesskey=<base64 key>'")
    return endpoint, decoded


def _send_error(exc: AzureError) -> LeadAgentError:
    """The sender error for a failed `POST emails:send`; where ACS may have the email, the outcome is unknown."""
    if isinstance(exc, ServiceResponseError):  # the send went out (and so did its repeats); no answer came back
        return SendOutcomeUnknown(f"ACS may have the email: the answer to the send was lost ({type(exc).__name__})")
    if isinstance(exc, HttpResponseError) and exc.status_code == 409:
        return SendOutcomeUnknown(f"ACS is still processing the first copy of this send (409): {_error_detail(exc)}")
    if isinstance(exc, HttpResponseError) and exc.status_code == 412:  # nothing was sent; a new send is stamped anew
        return SendFailed(f"ACS found Repeatability-First-Sent outside its window (412, clock?): {_error_detail(exc)}")
    return _classified(exc)


def _classified(exc: AzureError) -> LeadAgentError:
    """The sender error for an SDK error: 429 waits, other 4xx and failed operations are final."""
    if not isinstance(exc, HttpResponseError):  # ServiceRequestError, ServiceResponseError, timeouts
        return SendFailed(f"ACS unreachable: {type(exc).__name__}")
    status = exc.status_code
    detail = _error_detail(exc)
    if isinstance(exc.__cause__, OperationFailed) or (status is not None and status < 400):
        return SendRejected(f"ACS send failed: {detail}")
    if status is None:  # raised before any answer, e.g. the credential could not get a token
        return SendFailed(f"ACS request not sent: {type(exc).__name__}")
    if status == 429:
        return SenderThrottled(f"ACS throttled the send: {detail}", _retry_after(exc))
    if 400 <= status < 500 and status != 408:
        return SendRejected(f"ACS refused the send ({status}): {detail}")
    return SendFailed(f"ACS answered {status}: {detail}")


def _error_detail(exc: HttpResponseError) -> str:
    error = exc.error
    if error is not None and error.code:
        return f"{error.code}: {error.message}"
    return str(exc.reason or type(exc).__name__)


def _result_error(result: Any) -> str:
    error = (result or {}).get("error") or {}
    return f"{error.get('code', 'unknown')}: {error.get('message', '')}".rstrip(": ")


def _retry_after(exc: HttpResponseError) -> float:
    """Seconds from the response's `Retry-After` (seconds or an HTTP date); 60 when absent."""
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After")
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time())
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER

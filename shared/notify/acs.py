"""The Azure Communication Services Email sender: one `begin_send` per email, classified once.

The client is built on first use, from the connection string when one is given (HMAC-signed
requests), else from the endpoint and a token credential (`DefaultAzureCredential` unless given). The send itself is
never retried inside the SDK: a `429` becomes `SenderThrottled` with the service's `Retry-After`,
so the queue waits instead of a blocked worker; only status polls keep azure-core's retries.
"""

from __future__ import annotations

import base64
import binascii
import logging
from email.utils import parsedate_to_datetime
from time import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.polling.base_polling import OperationFailed
from azure.core.rest import HttpRequest, HttpResponse

from shared.errors import LeadAgentError
from shared.notify.base import OutgoingEmail, SenderThrottled, SendFailed, SendRejected

if TYPE_CHECKING:
    from azure.communication.email import EmailClient
    from azure.core.credentials import TokenCredential

logger = logging.getLogger(__name__)

ACS_SCOPE = "https://communication.azure.com//.default"
MAX_RECIPIENTS = 50
DEFAULT_RETRY_AFTER = 60.0
CONNECTION_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


class _SendNotRetried(RetryPolicy[HttpRequest, HttpResponse]):
    """azure-core's retry policy, except that `POST emails:send` is never retried by status.

    The stock policy retries a `429` (and `500/503/504`) on POST, sleeping `Retry-After` each time:
    a throttled send would block the worker for minutes. Status polls (GET) keep the retries.
    """

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_request.method.upper() == "POST":
            return False
        return bool(super().is_retry(settings, response))


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
        """Hand `email` to ACS and wait up to `poll_timeout` for the outcome; return the operation id."""
        if not 0 < email.recipient_count <= MAX_RECIPIENTS:
            raise SendRejected(f"ACS takes 1 to {MAX_RECIPIENTS} recipients, not {email.recipient_count}")
        client = self._email_client()
        try:
            poller = client.begin_send(_message(self.sender_address, email), polling_interval=self.poll_interval)
            result = poller.result(timeout=self.poll_timeout)
        except AzureError as exc:
            raise _classified(exc) from exc
        if not poller.done():
            raise SendFailed(f"ACS send still running after {self.poll_timeout:g}s (status {poller.status()})")
        status = str((result or {}).get("status", ""))
        if status != "Succeeded":
            raise SendRejected(f"ACS send ended {status or 'without a status'}: {_result_error(result)}")
        message_id = str(result["id"])
        logger.info("acs accepted email %s for %d recipient(s)", message_id, email.recipient_count)
        return message_id

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
                "connection_timeout": CONNECTION_TIMEOUT,
                "read_timeout": READ_TIMEOUT,
                "retry_policy": _SendNotRetried(retry_total=3, retry_backoff_factor=0.5, retry_backoff_max=8),
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

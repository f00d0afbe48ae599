"""Send queue messages the way the Functions host reads them: base64 text, with a visibility delay.

Every call has a connect/read timeout and a short retry, so an unreachable storage account
surfaces as `QueueUnavailable` within seconds, never as a hang. A message is at most 64 KiB as
the service counts it: the UTF-8 bytes of the text it receives, which here is the base64 of our
text's UTF-8 bytes (so at most 48 KiB of UTF-8 before encoding; 16,384 CJK characters, not 48 k).
`encoded_size` measures that; a message over the limit is refused before any call
(`MessageTooLarge`, permanent), never sent to fail as an outage.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from shared.errors import PermanentError, QueueUnavailable
from shared.storage.connection import StorageTarget, storage_target

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

MAX_VISIBILITY_SECONDS = 7 * 24 * 3600 - 60
MAX_MESSAGE_BYTES = 64 * 1024
# Put in front of azure-core's User-Agent, so storage logs (and `bench/ops_per_lead`) tell the app's
# queue calls from the Functions host's own polling, which uses the same SDK.
USER_AGENT = "lead-monitoring-agent"
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="enqueue")


class MessageTooLarge(PermanentError):
    """The message would exceed the queue service's 64 KiB once base64-encoded; no retry can send it."""


def encoded_size(text: str) -> int:
    """Bytes the queue service counts for `text`: the length of the base64 of its UTF-8 bytes."""
    return 4 * ((len(text.encode("utf-8")) + 2) // 3)


class QueueSender:
    """Sends text messages to named queues; creates a queue on first use when it is missing."""

    def __init__(self, storage: str | StorageTarget, timeout_seconds: float = 5.0) -> None:
        self._storage = storage_target(storage)
        self._timeout = timeout_seconds
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    def client(self, queue: str) -> QueueClient:
        """The cached client of `queue`, base64-encoding like the host expects."""
        with self._lock:
            existing = self._clients.get(queue)
            if existing is not None:
                return existing
            from azure.storage.queue import (
                LinearRetry,
                TextBase64DecodePolicy,
                TextBase64EncodePolicy,
            )

            created = self._storage.queue_client(
                queue,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
                connection_timeout=self._timeout,
                read_timeout=self._timeout,
                user_agent=USER_AGENT,
                # The storage SDK's default retry waits 15 s and more: too slow for a webhook.
                retry_policy=LinearRetry(backoff=0.3, random_jitter_range=0.2, retry_total=2),  # type: ignore[arg-type]
            )
            self._clients[queue] = created
            return created

    def send(self, queue: str, text: str, delay_seconds: float = 0) -> str:
        """Put `text` on `queue`, invisible for `delay_seconds`; return the message id.

        Returns only after the service acknowledged the message (it is durable then).
        Raises `QueueUnavailable` when it could not be stored, `MessageTooLarge` (before any call)
        when it never could be.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        size = encoded_size(text)
        if size > MAX_MESSAGE_BYTES:
            raise MessageTooLarge(f"message for {queue} is {size} bytes encoded; the limit is {MAX_MESSAGE_BYTES}")
        delay = max(0, min(round(delay_seconds), MAX_VISIBILITY_SECONDS))
        kwargs: dict[str, Any] = {
            "visibility_timeout": delay or None,
            "time_to_live": -1,
            "timeout": int(self._timeout),
        }
        client = self.client(queue)
        try:
            try:
                return str(client.send_message(text, **kwargs).id)
            except ResourceNotFoundError:
                self._create(client)
                return str(client.send_message(text, **kwargs).id)
        except AzureError as exc:
            raise QueueUnavailable(f"queue {queue} unavailable: {type(exc).__name__}") from exc

    def send_many(self, queue: str, texts: Sequence[str]) -> list[str]:
        """Send every text concurrently; return ids in order. Raises if any one failed."""
        if len(texts) == 1:
            return [self.send(queue, texts[0])]
        futures = [_POOL.submit(self.send, queue, text) for text in texts]
        return [future.result() for future in futures]

    def oldest_waiting(self, queue: str) -> float | None:
        """When the message at the front of `queue` was put there (epoch seconds), or None if none waits.

        Only visible messages count: one being processed or delayed for a retry is not waiting.
        Raises `QueueUnavailable` when the queue cannot be read.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            front = self.client(queue).peek_messages(max_messages=1, timeout=int(self._timeout))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise QueueUnavailable(f"queue {queue} unavailable: {type(exc).__name__}") from exc
        inserted = front[0].inserted_on if front else None
        return None if inserted is None else inserted.timestamp()

    def ping(self, queue: str) -> None:
        """Raise `QueueUnavailable` unless the queue service answers (creates the queue if missing)."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        client = self.client(queue)
        try:
            try:
                client.get_queue_properties(timeout=int(self._timeout))
            except ResourceNotFoundError:
                self._create(client)
        except AzureError as exc:
            raise QueueUnavailable(f"queue {queue} unavailable: {type(exc).__name__}") from exc

    @staticmethod
    def _create(client: QueueClient) -> None:
        from azure.core.exceptions import ResourceExistsError

        with suppress(ResourceExistsError):
            client.create_queue()

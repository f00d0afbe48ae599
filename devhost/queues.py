"""Queue triggers: poll an Azure Storage queue and invoke a function per message, as the host does.

Settings come from host.json `extensions.queues` with the host's defaults. Per function: fetch up
to `batchSize` messages under a lease (the host's fixed 10 minutes), run them in parallel with at
most `batchSize + newBatchThreshold` in flight, back off (randomized, exponential, 100 ms up to
`maxPollingInterval`) while the queue is empty. A success deletes the message; a failure makes it
visible again after `visibilityTimeout`; the attempt that reaches `maxDequeueCount` moves the
stored text unchanged to `<queue>-poison`. Stopping never loses a message: it is either finished
and deleted, or left on the queue to reappear.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage as FunctionQueueMessage
from azure.storage.queue import LinearRetry, QueueClient, QueueMessage

from devhost.defaults import azurite_connection_string
from devhost.invocation import HostedFunction, StartupError, invoke
from shared.http_clients import storage_transport

log = logging.getLogger("devhost.queues")

Invoker = Callable[[HostedFunction, Any, str], Any]

HOST_LEASE_SECONDS = 600
MIN_POLLING_INTERVAL = 0.1
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_POISON_SUFFIX = "-poison"


def parse_timespan(value: Any, what: str) -> float:
    """Seconds in a .NET TimeSpan string (`hh:mm:ss[.fff]` or `d.hh:mm:ss`); anything else raises `StartupError`."""
    match = _TIMESPAN.match(value) if isinstance(value, str) else None
    if match is None:
        raise StartupError(f"host.json: {what} must be a TimeSpan like '00:00:30', not {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _int_option(options: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise StartupError(f"host.json: extensions.queues.{key} must be an integer {low}-{high}, not {value!r}")
    return value


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults (`maxPollingInterval` as in development: 2 s)."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 2.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        """Read and validate `extensions.queues`; a bad value raises `StartupError` naming it."""
        options = host_json.get("extensions", {}).get("queues", {}) or {}
        batch_size = _int_option(options, "batchSize", 16, 1, 32)
        threshold = _int_option(options, "newBatchThreshold", batch_size // 2, 0, 10_000)
        polling = parse_timespan(options.get("maxPollingInterval", "00:00:02"), "extensions.queues.maxPollingInterval")
        if polling < MIN_POLLING_INTERVAL:
            raise StartupError("host.json: extensions.queues.maxPollingInterval must be at least 00:00:00.100")
        visibility = parse_timespan(options.get("visibilityTimeout", "00:00:00"), "extensions.queues.visibilityTimeout")
        encoding = str(options.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise StartupError(f"host.json: extensions.queues.messageEncoding must be base64 or none, not {encoding!r}")
        max_dequeue = _int_option(options, "maxDequeueCount", 5, 1, 10_000)
        return cls(batch_size, threshold, polling, visibility, max_dequeue, encoding)

    @property
    def max_in_flight(self) -> int:
        """Messages one function may process at once: `batchSize + newBatchThreshold`."""
        return self.batch_size + self.new_batch_threshold


def connection_string(setting: str | None, environ: Mapping[str, str], function_name: str) -> str:
    """The storage connection string a trigger's `connection` names (`UseDevelopmentStorage=true` = Azurite)."""
    name = setting or "AzureWebJobsStorage"
    value = environ.get(name) or environ.get(f"AzureWebJobs{name}")
    if not value:
        if any(key.startswith(f"{name}__") for key in environ):
            raise StartupError(
                f"function {function_name}: connection {name} is identity-based ({name}__...); "
                f"the devhost needs a connection string in {name}"
            )
        raise StartupError(f"function {function_name}: connection setting {name} is not set")
    if value.replace(" ", "").rstrip(";").lower() == "usedevelopmentstorage=true":
        return azurite_connection_string()
    return value


def validate_queue_name(name: str, function_name: str) -> str:
    """The queue name if Azure accepts it (3-63 chars, lowercase letters, digits, single dashes)."""
    if not 3 <= len(name) <= 63 or not _QUEUE_NAME.match(name):
        raise StartupError(
            f"function {function_name}: {name!r} is not a valid queue name "
            "(3-63 lowercase letters, digits and single dashes, starting and ending with a letter or digit)"
        )
    return name


def queue_client(conn_str: str, queue_name: str) -> QueueClient:
    """A client with connect/read timeouts and three quick retries; messages are read and written as stored."""
    return QueueClient.from_connection_string(
        conn_str,
        queue_name,
        transport=storage_transport(connection_timeout=5, read_timeout=15),
        retry_policy=LinearRetry(backoff=1, retry_total=3, random_jitter_range=1),
    )


def ensure_queue(client: QueueClient) -> None:
    """Create the queue unless it exists."""
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


class QueueListener:
    """The receive loop and worker pool of one queue-triggered function."""

    def __init__(
        self,
        function: HostedFunction,
        client: QueueClient,
        poison_client: QueueClient | None,
        options: QueueOptions,
        lease_seconds: int = HOST_LEASE_SECONDS,
        invoker: Invoker = invoke,
    ) -> None:
        self.function = function
        self.queue_name = client.queue_name
        self._client = client
        self._poison = poison_client
        self._poison_ready = False
        self._options = options
        self._lease = lease_seconds
        self._retry_delay = math.ceil(options.visibility_timeout)
        self._invoke = invoker
        self._stopping = threading.Event()
        self._in_flight = 0
        self._changed = threading.Condition()
        self._pool = ThreadPoolExecutor(options.max_in_flight, thread_name_prefix=f"devhost-{function.name}")
        self._thread = threading.Thread(target=self._receive_loop, name=f"devhost-queue-{function.name}", daemon=True)

    @property
    def in_flight(self) -> int:
        """Invocations running right now."""
        with self._changed:
            return self._in_flight

    def prepare(self) -> None:
        """Create the queue if missing; storage errors propagate (the host refuses to start)."""
        ensure_queue(self._client)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def request_stop(self) -> None:
        """Stop receiving; messages already received still finish (or are released unprocessed)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()

    def join(self, deadline: float) -> bool:
        """Wait until the loop ended and no invocation runs, or until the `time.monotonic()` deadline."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            finished = self._in_flight == 0 and not self._thread.is_alive()
        self._pool.shutdown(wait=False, cancel_futures=False)
        return finished

    # -- receiving ---------------------------------------------------------------------------

    def _wait_for_capacity(self) -> bool:
        with self._changed:
            while self._in_flight > self._options.new_batch_threshold and not self._stopping.is_set():
                self._changed.wait()
        return not self._stopping.is_set()

    def _receive_loop(self) -> None:
        delay = MIN_POLLING_INTERVAL
        failing = False
        while self._wait_for_capacity():
            try:
                batch = list(
                    self._client.receive_messages(
                        messages_per_page=self._options.batch_size,
                        max_messages=self._options.batch_size,
                        visibility_timeout=self._lease,
                    )
                )
                if failing:
                    log.info("queue %s is reachable again", self.queue_name)
                failing = False
            except AzureError as exc:
                if not failing:
                    log.warning("receiving from queue %s failed (will keep trying): %s", self.queue_name, exc)
                failing, batch = True, []
            for message in batch:
                self._submit(message)
            if batch:
                delay = MIN_POLLING_INTERVAL
            else:
                grown = max(2 * MIN_POLLING_INTERVAL, delay * 2) * random.uniform(0.8, 1.2)
                delay = min(self._options.max_polling_interval, grown)
            if self._stopping.wait(delay):
                break

    def _submit(self, message: QueueMessage) -> None:
        if self._stopping.is_set():
            self._release(message)
            return
        with self._changed:
            self._in_flight += 1
        self._pool.submit(self._run, message)

    def _run(self, message: QueueMessage) -> None:
        try:
            if self._stopping.is_set():
                self._release(message)
            else:
                self._process(message)
        except Exception:  # storage errors after the invocation; the message reappears
            log.exception("message %s on %s: bookkeeping failed", message.id, self.queue_name)
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    # -- one message -------------------------------------------------------------------------

    def _decode(self, content: Any) -> bytes:
        text = content if isinstance(content, str) else bytes(content or b"").decode("utf-8")
        if self._options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("message is not valid base64 (host.json messageEncoding is base64)") from None

    def _process(self, message: QueueMessage) -> None:
        count = int(message.dequeue_count or 1)
        if count > self._options.max_dequeue_count:
            self._move_to_poison(message)
            return
        try:
            body = self._decode(message.content)
        except ValueError as exc:
            log.error("message %s on %s failed: %s", message.id, self.queue_name, exc)
            self._failed(message, count)
            return
        trigger_value = FunctionQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            self._invoke(self.function, trigger_value, f"New queue message detected on '{self.queue_name}'.")
        except Exception as exc:
            log.error(
                "message %s on %s failed on attempt %d of %d: %s: %s",
                message.id,
                self.queue_name,
                count,
                self._options.max_dequeue_count,
                type(exc).__name__,
                exc,
            )
            self._failed(message, count)
            return
        self._delete(message)

    def _failed(self, message: QueueMessage, count: int) -> None:
        if count >= self._options.max_dequeue_count and self._poison is not None:
            self._move_to_poison(message)
            return
        self._release(message, self._retry_delay)

    def _move_to_poison(self, message: QueueMessage) -> None:
        if self._poison is None:
            self._release(message, self._retry_delay)
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message %s to queue '%s'.",
            self._options.max_dequeue_count,
            message.id,
            self._poison.queue_name,
        )
        try:
            if not self._poison_ready:
                ensure_queue(self._poison)
                self._poison_ready = True
            self._poison.send_message(message.content)
        except AzureError:
            log.exception("moving message %s to %s failed; it stays on its queue", message.id, self._poison.queue_name)
            self._release(message, self._retry_delay)
            return
        self._delete(message)

    def _delete(self, message: QueueMessage) -> None:
        try:
            self._client.delete_message(message.id, message.pop_receipt)
        except AzureError as exc:
            log.warning("deleting message %s from %s failed (it may run again): %s", message.id, self.queue_name, exc)

    def _release(self, message: QueueMessage, visibility_timeout: int = 0) -> None:
        try:
            self._client.update_message(
                message.id, pop_receipt=message.pop_receipt, visibility_timeout=visibility_timeout
            )
        except AzureError as exc:
            log.warning("releasing message %s failed (it reappears when its lease ends): %s", message.id, exc)


def poison_queue_name(queue_name: str) -> str | None:
    """`<queue>-poison`, or None when the queue is itself a poison queue or the name would be too long."""
    if queue_name.endswith(_POISON_SUFFIX) or len(queue_name) + len(_POISON_SUFFIX) > 63:
        return None
    return queue_name + _POISON_SUFFIX

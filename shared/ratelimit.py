"""Per-client-IP rate limits shared by every instance through Azure Table Storage.

DESIGN.md: 100 requests a minute per client IP, for requests that fail authentication and for ops
routes, never for correctly signed deliveries. This module owns which IP a request counts against
(`client_ip`) and the shared fixed-window count (`RateLimiter`); `functions/guard.py` maps the
decision to HTTP.

One entity per (scope, client IP, window): PartitionKey `"{scope}:{ip}"`, RowKey the window's start
in epoch seconds, `count` the requests seen, `expires` the window's end. Increments use optimistic
concurrency on the ETag (as `shared.counters` does), so instances never lose a count. Old windows
are never read again; purging rows whose `expires` is past (`expires lt <now>`) is optional
housekeeping that only saves storage, so no timer does it.
"""

from __future__ import annotations

import ipaddress
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared.errors import TransientError
from shared.queues.connection import StorageTarget, storage_target

if TYPE_CHECKING:
    from azure.data.tables import TableClient

RATE_LIMIT_TABLE = "ratelimits"
UNKNOWN_IP = "unknown"

# Characters Table Storage refuses in keys: / \ # ? and the control characters.
_UNSAFE_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_MAX_ATTEMPTS = 50


class RateLimitUnavailable(TransientError):
    """The shared count cannot be read or written right now (storage down, slow, or contended)."""


def client_ip(headers: Mapping[str, str], remote_addr: str | None = None) -> str:
    """The caller's IP for rate limiting, normalised (port stripped); `"unknown"` when it cannot be told.

    Sources, first present wins (header names case-insensitive):

    1. `client-ip`: set by the App Service / Functions front end from the TCP connection (a client's
       own value is overwritten), as `ip:port`, `[v6]:port` or a bare IP.
    2. The right-most `X-Forwarded-For` entry: the hop the last proxy appended. Entries to its left
       come from the client and are ignored: trusting them would let a caller pick its own bucket.
    3. `remote_addr` (the socket peer, when the caller knows it).

    A present but unparseable value gives `"unknown"` (one shared bucket) rather than falling
    through to a source the client may control. IPv4-mapped IPv6 counts as the IPv4 address.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    front_end = lowered.get("client-ip", "").strip()
    if front_end:
        return _parse_ip(front_end)
    forwarded = [hop.strip() for hop in lowered.get("x-forwarded-for", "").split(",") if hop.strip()]
    if forwarded:
        return _parse_ip(forwarded[-1])
    if remote_addr and remote_addr.strip():
        return _parse_ip(remote_addr.strip())
    return UNKNOWN_IP


def _parse_ip(value: str) -> str:
    """`1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]`, `[::1]:80` → the normalised address, else "unknown"."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return UNKNOWN_IP
        return _normalised(host)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return _normalised(host) if port.isdigit() else UNKNOWN_IP
    whole = _normalised(value)
    if whole == UNKNOWN_IP and ":" in value:
        # Unbracketed `v6:port` (some proxies write it): only when the whole is no valid IPv6.
        host, _, port = value.rpartition(":")
        if port.isdigit():
            return _normalised(host)
    return whole


def _normalised(host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return UNKNOWN_IP
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True)
class RateDecision:
    """One counted request: allowed when `count` ≤ `limit`; `retry_after` seconds until the window ends."""

    allowed: bool
    count: int
    limit: int
    retry_after: int


class RateLimiter:
    """Fixed-window request counts per (scope, client IP), exact across processes and instances."""

    def __init__(
        self,
        connection_string: str | StorageTarget,
        limit: int = 100,
        window_seconds: int = 60,
        table: str = RATE_LIMIT_TABLE,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limit < 1 or window_seconds < 1:
            raise ValueError("limit and window_seconds must be at least 1")
        self._storage = storage_target(connection_string)
        self.limit = limit
        self.window_seconds = window_seconds
        self._table = table
        self._timeout = timeout_seconds
        self._clock = clock
        self._client: TableClient | None = None
        self._lock = threading.Lock()

    def hit(self, scope: str, ip: str) -> RateDecision:
        """Count one request of `ip` in `scope` and say whether it is within the limit.

        Every call counts, refused ones too, so a client that keeps hammering stays refused until
        the window ends. Raises `RateLimitUnavailable` when storage fails, does not answer within
        the timeout, or stays contended.
        """
        from azure.core.exceptions import AzureError

        now = self._clock()
        start = int(now // self.window_seconds) * self.window_seconds
        end = start + self.window_seconds
        partition = _UNSAFE_KEY.sub("_", f"{scope}:{ip}")[:512]
        try:
            count = self._increment(partition, str(start), datetime.fromtimestamp(end, UTC))
        except AzureError as exc:
            raise RateLimitUnavailable(f"rate limit table {self._table} unavailable: {type(exc).__name__}") from exc
        retry_after = max(1, math.ceil(end - now))
        return RateDecision(allowed=count <= self.limit, count=count, limit=self.limit, retry_after=retry_after)

    def _increment(self, partition: str, row: str, expires: datetime) -> int:
        """Add one to the window's count and return the new value (create-if-absent, else ETag update)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        client = self._table_client()
        deadline = time.monotonic() + self._timeout
        for attempt in range(_MAX_ATTEMPTS):
            if attempt and time.monotonic() > deadline:
                break
            if attempt:
                time.sleep(random.uniform(0, min(0.05, 0.005 * attempt)))  # spread contending writers
            try:
                entity = client.get_entity(partition, row)
            except ResourceNotFoundError:
                try:
                    client.create_entity({"PartitionKey": partition, "RowKey": row, "count": 1, "expires": expires})
                    return 1
                except ResourceExistsError:
                    continue
            value = int(entity.get("count", 0)) + 1
            try:
                client.update_entity(
                    {"PartitionKey": partition, "RowKey": row, "count": value},
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return value
            except ResourceModifiedError:
                continue
        raise RateLimitUnavailable(f"rate limit entity {partition}/{row} stayed contended")

    def _table_client(self) -> TableClient:
        """The cached table client; the table is created on first use (a failure is retried next call)."""
        with self._lock:
            if self._client is None:
                try:
                    service = self._storage.table_service(
                        connection_timeout=self._timeout,
                        read_timeout=self._timeout,
                        # azure-core's default (10 retries, 0.8 s exponential backoff) would hold a
                        # request for many seconds when storage is down; one quick retry is enough.
                        retry_total=1,
                        retry_backoff_factor=0.2,
                    )
                except ValueError as exc:
                    raise RateLimitUnavailable(f"invalid storage connection string: {exc}") from exc
                self._client = service.create_table_if_not_exists(self._table)
            return self._client

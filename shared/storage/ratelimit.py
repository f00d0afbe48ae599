"""Per-client-IP rate limits shared by every instance through Azure Table Storage.

DESIGN.md: 100 requests a minute per client IP, for requests that fail authentication and for ops
routes, never for correctly signed deliveries. This module owns which IP a request counts against
(`client_ip`), which bucket that IP counts in (`rate_bucket`: an IPv6 /64 is one bucket) and the
shared fixed-window count (`RateLimiter`); `functions/guard.py` maps the decision to HTTP.

One entity per (scope, bucket, window): PartitionKey `"{scope}:{bucket}"`, RowKey the window's
start in epoch seconds, `count` the requests seen, `expires` the window's end. Increments use
optimistic concurrency on the ETag (as `counters` does), so instances never lose a count.
Old windows are never read again; `RateLimiter.purge_expired` deletes those that ended more than
a window ago (the dead-letter sweep timer calls it every 5 minutes), so a flood of distinct
addresses does not grow the table for ever.
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
from shared.logs import get_logger
from shared.storage.connection import StorageTarget, storage_target

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = get_logger(__name__)

RATE_LIMIT_TABLE = "ratelimits"
UNKNOWN_IP = "unknown"
# The only header trusted for the caller's IP. The App Service front end, which also fronts
# Azure Functions, adds `client-ip` while routing and overwrites any value a client sent, so it
# cannot be spoofed (Azure/app-service-linux-docs, Things_You_Should_Know/headers.md). Its exact
# header set on Flex Consumption is not documented: the devhost sets `client-ip` the same way,
# and a missing header is logged once (every caller then shares the `unknown` bucket, fail-closed).
# `X-Forwarded-For`, `X-Client-IP`, `X-Real-IP` and the like keep what the client wrote: never read.
FRONT_END_IP_HEADER = "client-ip"
IPV6_BUCKET_PREFIX = 64
PURGE_MAX_DELETES = 5000

# Characters Table Storage refuses in keys: / \ # ? and the control characters.
_UNSAFE_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_MAX_ATTEMPTS = 50


class RateLimitUnavailable(TransientError):
    """The shared count cannot be read or written right now (storage down, slow, or contended)."""


_warned_missing_header = False


def client_ip(headers: Mapping[str, str], remote_addr: str | None = None) -> str:
    """The caller's IP for rate limiting, normalised (port stripped); `"unknown"` when it cannot be told.

    Only `client-ip` (`FRONT_END_IP_HEADER`, header names case-insensitive) is read: the front end
    sets it from the TCP connection as `ip:port`, `[v6]:port` or a bare IP, overwriting a client's
    own value. Without it, `remote_addr` (the socket peer, when the caller knows it). Headers a
    client can write (`X-Forwarded-For` …) are never read: trusting them would let a caller pick
    its own bucket. A present but unparseable value gives `"unknown"` (one shared bucket).
    IPv4-mapped IPv6 counts as the IPv4 address.
    """
    global _warned_missing_header
    front_end = next((value for name, value in headers.items() if name.lower() == FRONT_END_IP_HEADER), "").strip()
    if front_end:
        return _parse_ip(front_end)
    if remote_addr and remote_addr.strip():
        return _parse_ip(remote_addr.strip())
    if not _warned_missing_header:
        _warned_missing_header = True
        log.warning("rate limit: no %s header on a request; callers without it share one bucket", FRONT_END_IP_HEADER)
    return UNKNOWN_IP


def rate_bucket(ip: str) -> str:
    """The bucket `ip` counts in: its /64 network for IPv6 (one subscriber's usual allocation), else itself."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_BUCKET_PREFIX), strict=False))
    return str(address)


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
        """Count one request of `ip` (in its `rate_bucket`) in `scope` and say whether it is within the limit.

        Every call counts, refused ones too, so a client that keeps hammering stays refused until
        the window ends. Raises `RateLimitUnavailable` when storage fails, does not answer within
        the timeout, or stays contended.
        """
        from azure.core.exceptions import AzureError

        now = self._clock()
        start = int(now // self.window_seconds) * self.window_seconds
        end = start + self.window_seconds
        partition = _UNSAFE_KEY.sub("_", f"{scope}:{rate_bucket(ip)}")[:512]
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
            except (ResourceModifiedError, ResourceNotFoundError):  # changed, or purged meanwhile
                continue
        raise RateLimitUnavailable(f"rate limit entity {partition}/{row} stayed contended")

    def purge_expired(self, max_deletes: int = PURGE_MAX_DELETES) -> int:
        """Delete windows that ended more than a window ago, at most `max_deletes`; return how many.

        A window that ended is never counted in again (the grace of one window covers instances
        whose clocks lag). Never raises: housekeeping must not fail its timer; a storage failure
        is logged and the next run goes on.
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        cutoff = datetime.fromtimestamp(self._clock() - self.window_seconds, UTC)
        deleted = 0
        try:
            client = self._table_client()
            ended = client.query_entities(
                "expires le @cutoff", parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey"]
            )
            for entity in ended:
                if deleted >= max_deletes:
                    break
                try:
                    client.delete_entity(entity["PartitionKey"], entity["RowKey"])
                except ResourceNotFoundError:  # another instance purged it first
                    continue
                deleted += 1
        except (AzureError, RateLimitUnavailable) as exc:
            log.warning("rate limit: purge of %s stopped after %d rows (%s)", self._table, deleted, type(exc).__name__)
        if deleted:
            log.info("rate limit: purged %d ended windows from %s", deleted, self._table)
        return deleted

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

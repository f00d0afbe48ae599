"""Azure SQL backend: pyodbc with ODBC Driver 18, managed-identity tokens, a small connection pool.

pyodbc is imported only when this backend is built, so local runs need no ODBC libraries.
Authentication is either a full `SQL_CONNECTION_STRING` or the function's managed identity:
an `azure-identity` token for `https://database.windows.net/.default`, packed as the driver
expects (UTF-16-LE with a 4-byte little-endian length) into connection attribute 1256 and
refreshed five minutes before it expires. Pooled connections are checked before reuse after an
idle spell and dropped after any error, so a serverless database that paused, a failover, or a
Flex instance that was frozen and thawed costs one reconnect, not a failure. Transient errors
(40613, 40197, 40501, 49918, 4060, 10928, 10929, 10053, 10054, 10060, 233, 64, and the
connection SQLSTATEs) are retried with backoff while connecting and otherwise surface as
`StoreUnavailable`; duplicate keys (2627, 2601) are "already stored".
"""

from __future__ import annotations

import queue
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from shared.errors import StoreUnavailable
from shared.store.base_types import StoreBackend
from shared.store.mssql_schema import MIGRATIONS, STATEMENTS

SQL_COPT_SS_ACCESS_TOKEN = 1256
TOKEN_SCOPE = "https://database.windows.net/.default"  # noqa: S105 - an OAuth scope, not a secret
TRANSIENT_NUMBERS = frozenset({40613, 40197, 40501, 49918, 4060, 10928, 10929, 10053, 10054, 10060, 233, 64})
TRANSIENT_SQLSTATES = frozenset({"08S01", "08001", "08004", "HYT00", "HYT01", "40001"})
DUPLICATE_NUMBERS = frozenset({2627, 2601})
_NUMBER = re.compile(r"\((\d{2,6})\)")
IDLE_CHECK_SECONDS = 30.0
CONNECT_ATTEMPTS = 4


def native_numbers(exc: BaseException) -> set[int]:
    """SQL Server error numbers found in a pyodbc error's message (pyodbc only has SQLSTATEs)."""
    return {int(n) for n in _NUMBER.findall(str(exc))}


def sqlstate(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    return str(args[0]) if args and isinstance(args[0], str) else ""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later can help (throttling, failover, paused serverless database, network)."""
    return bool(native_numbers(exc) & TRANSIENT_NUMBERS) or sqlstate(exc) in TRANSIENT_SQLSTATES


def pack_token(token: str) -> bytes:
    """An access token as ODBC Driver 18 wants it in attribute 1256."""
    raw = token.encode("utf-16-le")
    return struct.pack(f"<I{len(raw)}s", len(raw), raw)


def odbc_connection_string(server: str, database: str, timeout_seconds: float) -> str:
    """Driver 18 to an Azure SQL database, encrypted, with no credentials (the token carries them)."""
    host = server if server.startswith("tcp:") else f"tcp:{server},1433"
    return (
        "Driver={ODBC Driver 18 for SQL Server};"
        f"Server={host};Database={database};Encrypt=yes;TrustServerCertificate=no;"
        f"Connection Timeout={int(timeout_seconds)};"
    )


class TokenSource:
    """Access tokens for Azure SQL from an azure-identity credential, refreshed before they expire."""

    def __init__(self, credential: Any, clock: Callable[[], float] = time.time, margin_seconds: float = 300) -> None:
        self._credential = credential
        self._clock = clock
        self._margin = margin_seconds
        self._token: tuple[str, float] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._token[1] - self._margin:
                fresh = self._credential.get_token(TOKEN_SCOPE)
                self._token = (fresh.token, float(fresh.expires_on))
            return self._token[0]


class MssqlBackend(StoreBackend):
    """SQL Server / Azure SQL through a DB-API `connect` (pyodbc in production)."""

    statements = STATEMENTS
    migrations = MIGRATIONS

    def __init__(
        self,
        connection_string: str,
        token: Callable[[], str] | None = None,
        pool_size: int = 5,
        timeout_seconds: float = 15.0,
        connect: Callable[..., Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._connection_string = connection_string
        self._token = token
        self._timeout = timeout_seconds
        self._sleep = sleep
        if connect is None:
            import pyodbc

            pyodbc.pooling = False  # this class pools; the driver manager's pool would hide dead connections
            connect = pyodbc.connect
        self._connect = connect
        self._pool: queue.LifoQueue[tuple[Any, float]] = queue.LifoQueue(maxsize=pool_size)

    def _new_connection(self) -> Any:
        """Connect with retries on transient errors; `StoreUnavailable` when the database stays away."""
        last: BaseException | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                attrs = {SQL_COPT_SS_ACCESS_TOKEN: pack_token(self._token())} if self._token else {}
                connection = self._connect(
                    self._connection_string, autocommit=False, timeout=int(self._timeout), attrs_before=attrs
                )
                connection.timeout = int(self._timeout)  # query timeout
                return connection
            except Exception as exc:
                last = exc
                if not is_transient(exc) and not _is_driver_error(exc):
                    raise
                self._sleep(min(8.0, 0.5 * 2**attempt))
        raise StoreUnavailable(f"Azure SQL unreachable after {CONNECT_ATTEMPTS} attempts: {_describe(last)}")

    def _checkout(self) -> Any:
        while True:
            try:
                connection, idle_since = self._pool.get_nowait()
            except queue.Empty:
                return self._new_connection()
            if time.monotonic() - idle_since < IDLE_CHECK_SECONDS:
                return connection
            try:
                connection.cursor().execute("SELECT 1").fetchone()
                return connection
            except Exception:
                _close(connection)

    def _checkin(self, connection: Any) -> None:
        try:
            self._pool.put_nowait((connection, time.monotonic()))
        except queue.Full:
            _close(connection)

    @contextmanager
    def write(self) -> Iterator[Any]:
        connection = self._checkout()
        cursor = connection.cursor()
        cursor.fast_executemany = True  # executemany sends one parameter array, not a round trip per row
        try:
            yield cursor
            connection.commit()
        except BaseException as exc:
            try:
                connection.rollback()
            except Exception:
                _close(connection)
                connection = None
            if self._unavailable(exc):
                if connection is not None:
                    _close(connection)
                raise StoreUnavailable(f"Azure SQL write failed: {_describe(exc)}") from exc
            if connection is not None:
                self._checkin(connection)
            raise
        else:
            self._checkin(connection)

    @contextmanager
    def read(self) -> Iterator[Any]:
        connection = self._checkout()
        cursor = connection.cursor()
        try:
            yield cursor
            connection.commit()  # end the read transaction so the pooled connection holds no locks
        except BaseException as exc:
            _close(connection)
            if self._unavailable(exc):
                raise StoreUnavailable(f"Azure SQL read failed: {_describe(exc)}") from exc
            raise
        else:
            self._checkin(connection)

    def _unavailable(self, exc: BaseException) -> bool:
        return is_transient(exc) or (_is_driver_error(exc) and not self.is_duplicate_key(exc))

    def is_duplicate_key(self, exc: BaseException) -> bool:
        return bool(native_numbers(exc) & DUPLICATE_NUMBERS) or (
            sqlstate(exc) == "23000" and "duplicate" in str(exc).lower()
        )

    def to_db_time(self, value: datetime) -> Any:
        """Naive UTC with millisecond precision (DATETIME2(3))."""
        utc = value.astimezone(UTC).replace(tzinfo=None)
        return utc.replace(microsecond=utc.microsecond // 1000 * 1000)

    def from_db_time(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        text = str(value)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _is_driver_error(exc: BaseException) -> bool:
    """An OperationalError/InterfaceError-like DB-API error (connection trouble), not a programming error."""
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    numbers = sorted(native_numbers(exc))
    return f"{type(exc).__name__} sqlstate={sqlstate(exc) or '-'} numbers={numbers or '-'}"


def _close(connection: Any) -> None:
    with suppress(Exception):  # a broken connection may fail to close; it is dropped either way
        connection.close()


def backend_from_settings(
    connection_string: str,
    server: str,
    database: str,
    client_id: str,
    pool_size: int,
    timeout_seconds: float,
) -> MssqlBackend:
    """A connection string as given, or the managed identity (`AZURE_CLIENT_ID`) to server/database."""
    if connection_string:
        return MssqlBackend(connection_string, pool_size=pool_size, timeout_seconds=timeout_seconds)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=client_id or None)
    return MssqlBackend(
        odbc_connection_string(server, database, timeout_seconds),
        token=TokenSource(credential),
        pool_size=pool_size,
        timeout_seconds=timeout_seconds,
    )

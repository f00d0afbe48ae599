"""Azure SQL backend: pyodbc with ODBC Driver 18, managed-identity tokens, a bounded connection pool.

pyodbc is imported only when this backend is built, so local runs need no ODBC libraries.
Authentication is either a full `SQL_CONNECTION_STRING` or the function's managed identity:
an `azure-identity` token for `https://database.windows.net/.default`, packed as the driver
expects (UTF-16-LE with a 4-byte little-endian length) into connection attribute 1256 and
refreshed five minutes before it expires.

Every failure on the way to a result maps to the store's errors (`backend.Backend.classify`),
checkout and token fetch included:
- unreachable, paused, throttled, failing over, deadlocked, timed out, login or permission
  refused, no token, no free pooled connection → `StoreUnavailable` (retried later, never poison);
- a value too long or of the wrong type → `StoreRefused` naming table and column, never the
  value (SQL Server's 2628 message quotes the truncated value: lead data); any other driver
  error → `StoreRefused` with its SQLSTATE and error numbers only (a dead letter, not a retry);
- a duplicate key (2627, 2601) → `DuplicateKey`, "already stored".
The pool holds at most `pool_size` connections; a caller waits up to `checkout_timeout_seconds`
for one. Pooled connections are checked before reuse after an idle spell and dropped after a
connection error, so a paused serverless database or a thawed Flex instance costs one reconnect.
"""

from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from shared.errors import StoreRefused, StoreUnavailable
from shared.store.backend import Backend, DuplicateKey, Tx

SQL_COPT_SS_ACCESS_TOKEN = 1256
TOKEN_SCOPE = "https://database.windows.net/.default"  # noqa: S105 - an OAuth scope, not a secret
TRANSIENT_NUMBERS = frozenset(
    {40613, 40197, 40501, 49918, 49919, 49920, 4060, 4221, 10928, 10929, 10053, 10054, 10060, 233, 64, 1205}
)
# Fixed by an operator, not by time: login refused, permission denied, database missing. The leads wait.
OPERATOR_NUMBERS = frozenset({18456, 229, 230, 262, 297, 300, 916})
DBAPI_ERRORS = frozenset(
    {"Error", "DatabaseError", "DataError", "OperationalError", "IntegrityError", "InternalError",
     "ProgrammingError", "NotSupportedError", "InterfaceError"}
)  # fmt: skip
TRANSIENT_SQLSTATES = frozenset({"08S01", "08001", "08004", "08007", "HYT00", "HYT01", "40001", "28000"})
DUPLICATE_NUMBERS = frozenset({2627, 2601})
REFUSED_NUMBERS = frozenset({2628, 8152, 515, 8115, 245, 8114, 241, 242})
REFUSED_SQLSTATES = frozenset({"22001", "22003", "22007", "22008", "22018"})
# The native number stands in parentheses right before the ODBC function's name; a value the message
# quotes, such as a duplicate key "(1205)", must not be taken for it.
_NUMBER = re.compile(r"\((\d{1,6})\)\s*\(SQL\w+\)")
_LAST_NUMBER = re.compile(r"\((\d{1,6})\)\s*$")
_WHERE = re.compile(r"table '(?:[^'.]*\.)*([^'.]+)', column '([^']+)'")
_NULL_WHERE = re.compile(r"column '([^']+)', table '(?:[^'.]*\.)*([^'.]+)'")
IDLE_CHECK_SECONDS = 30.0
CONNECT_ATTEMPTS = 4
# Waits for the lock (no lock timeout): it is the transaction's first lock, so no deadlock can pick
# it, and the connection's query timeout bounds the wait (HYT00 → StoreUnavailable, retried).
MIGRATION_LOCK = (
    "EXEC sp_getapplock @Resource = N'lead-agent-schema', @LockMode = 'Exclusive',"
    " @LockOwner = 'Transaction', @LockTimeout = -1"
)


def native_numbers(exc: BaseException) -> set[int]:
    """SQL Server error numbers of a pyodbc error (pyodbc has only SQLSTATEs; the numbers are in the text)."""
    text = str(exc)
    found = _NUMBER.findall(text) or _LAST_NUMBER.findall(text)
    return {int(n) for n in found}


def sqlstate(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    return str(args[0]) if args and isinstance(args[0], str) else ""


def is_transient(exc: BaseException) -> bool:
    """Whether retrying later can help (throttling, failover, paused database, network, deadlock, login)."""
    numbers = native_numbers(exc)
    return bool(numbers & (TRANSIENT_NUMBERS | OPERATOR_NUMBERS)) or sqlstate(exc) in TRANSIENT_SQLSTATES


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


class MssqlBackend(Backend):
    """SQL Server / Azure SQL through a DB-API `connect` (pyodbc in production)."""

    dialect = "mssql"

    def __init__(
        self,
        connection_string: str,
        token: Callable[[], str] | None = None,
        pool_size: int = 5,
        timeout_seconds: float = 15.0,
        connect: Callable[..., Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        checkout_timeout_seconds: float = 15.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self._connection_string = connection_string
        self._token = token
        self._timeout = timeout_seconds
        self._sleep = sleep
        if connect is None:
            import pyodbc

            pyodbc.pooling = False  # this class pools; the driver manager's pool would hide dead connections
            connect = pyodbc.connect
        self._connect = connect
        self.pool_size = pool_size
        self.checkout_timeout_seconds = checkout_timeout_seconds
        self._idle: list[tuple[Any, float]] = []
        self._open = 0
        self._pool = threading.Condition()

    # --- connections ----------------------------------------------------------------------------

    def _new_connection(self) -> Any:
        """Connect, retrying transient errors briefly; `StoreUnavailable` when the database stays away."""
        last: BaseException | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                token = self._access_token()
                attrs = {SQL_COPT_SS_ACCESS_TOKEN: pack_token(token)} if token is not None else {}
                connection = self._connect(
                    self._connection_string, autocommit=False, timeout=int(self._timeout), attrs_before=attrs
                )
                connection.timeout = int(self._timeout)  # query timeout
                return connection
            except StoreUnavailable:
                raise
            except Exception as exc:
                last = exc
                if native_numbers(exc) & OPERATOR_NUMBERS or not (is_transient(exc) or _is_driver_error(exc)):
                    break  # a refused login or a programming error: no use in asking again now
                self._sleep(min(8.0, 0.5 * 2**attempt))
        raise StoreUnavailable(f"Azure SQL unreachable: {_describe(last)}")

    def _access_token(self) -> str | None:
        if self._token is None:
            return None
        try:
            return self._token()
        except Exception as exc:  # IMDS/Entra blip, credential unavailable: the leads wait, none is lost
            raise StoreUnavailable(f"no access token for Azure SQL: {type(exc).__name__}") from None

    def _checkout(self) -> Any:
        """A pooled connection, or a new one while fewer than `pool_size` are open; waits, bounded."""
        deadline = time.monotonic() + self.checkout_timeout_seconds
        while True:
            with self._pool:
                while not self._idle and self._open >= self.pool_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StoreUnavailable(
                            f"no Azure SQL connection free within {self.checkout_timeout_seconds:.0f}s "
                            f"(pool of {self.pool_size})"
                        )
                    self._pool.wait(remaining)
                if self._idle:
                    connection, idle_since = self._idle.pop()
                else:
                    self._open += 1
                    connection, idle_since = None, 0.0
            if connection is None:
                try:
                    return self._new_connection()
                except BaseException:
                    self._discard(None)
                    raise
            if time.monotonic() - idle_since < IDLE_CHECK_SECONDS:
                return connection
            try:
                connection.cursor().execute("SELECT 1").fetchone()
                return connection
            except Exception:
                self._discard(connection)

    def _checkin(self, connection: Any) -> None:
        with self._pool:
            self._idle.append((connection, time.monotonic()))
            self._pool.notify()

    def _discard(self, connection: Any) -> None:
        if connection is not None:
            _close(connection)
        with self._pool:
            self._open -= 1
            self._pool.notify()

    @property
    def open_connections(self) -> int:
        return self._open

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Any]:
        connection = self._checkout()
        try:
            cursor = connection.cursor()
            if write:
                cursor.fast_executemany = True  # executemany sends one parameter array, not a row per trip
            yield cursor
            connection.commit()  # a read commits too, so the pooled connection holds no locks
        except BaseException as exc:
            healthy = not self._connection_lost(exc)
            if healthy:
                try:
                    connection.rollback()
                except Exception:
                    healthy = False
            if healthy:
                self._checkin(connection)
            else:
                self._discard(connection)
            raise
        else:
            self._checkin(connection)

    def _connection_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, StoreUnavailable) or is_transient(exc) or _is_driver_error(exc)

    def lock_migrations(self, tx: Tx) -> None:
        """`sp_getapplock`, held by the transaction: a second instance waits, then sees the new version."""
        tx.execute(MIGRATION_LOCK)

    # --- errors and times -----------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Exception | None:
        numbers, state = native_numbers(exc), sqlstate(exc)
        if numbers & DUPLICATE_NUMBERS or (state == "23000" and "duplicate" in str(exc).lower()):
            return DuplicateKey(_describe(exc))
        if numbers & REFUSED_NUMBERS or state in REFUSED_SQLSTATES:
            return StoreRefused(f"Azure SQL refused a value{_where(exc)}: {_describe(exc)}")
        if is_transient(exc) or _is_driver_error(exc):
            return StoreUnavailable(f"Azure SQL unavailable: {_describe(exc)}")
        if type(exc).__name__ in DBAPI_ERRORS:  # anything else the driver raises: permanent, described without its text
            return StoreRefused(f"Azure SQL refused the statement: {_describe(exc)}")
        return None

    def encode_time(self, value: datetime) -> datetime:
        """Naive UTC with millisecond precision (DATETIME2(3))."""
        if value.tzinfo is None:
            raise TypeError("naive datetime given to the store; times are aware UTC")
        utc = value.astimezone(UTC).replace(tzinfo=None)
        return utc.replace(microsecond=utc.microsecond // 1000 * 1000)

    def decode_time(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise TypeError(f"not a stored time: {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_driver_error(exc: BaseException) -> bool:
    """An OperationalError/InterfaceError-like DB-API error (connection trouble), not a programming error."""
    return type(exc).__name__ in ("OperationalError", "InterfaceError")


def _where(exc: BaseException) -> str:
    """` in table.column` from SQL Server's message, when it names them (never the value it quotes)."""
    text = str(exc)
    if match := _WHERE.search(text):
        return f" in {match.group(1)}.{match.group(2)}"
    if match := _NULL_WHERE.search(text):
        return f" in {match.group(2)}.{match.group(1)}"
    return ""


def _describe(exc: BaseException | None) -> str:
    """Type, SQLSTATE and error numbers only: SQL Server's text may quote the values (lead data)."""
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
    connect: Callable[..., Any] | None = None,
) -> MssqlBackend:
    """A connection string as given, or the managed identity (`AZURE_CLIENT_ID`) to server/database.

    `timeout_seconds` (STORE_TIMEOUT_SECONDS) is the connect and query timeout and how long a caller
    waits for a pooled connection, either way.
    """
    limits: dict[str, Any] = {
        "pool_size": pool_size,
        "timeout_seconds": timeout_seconds,
        "checkout_timeout_seconds": timeout_seconds,
        "connect": connect,
    }
    if connection_string:
        return MssqlBackend(connection_string, **limits)
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(managed_identity_client_id=client_id or None)
    return MssqlBackend(
        odbc_connection_string(server, database, timeout_seconds), token=TokenSource(credential), **limits
    )

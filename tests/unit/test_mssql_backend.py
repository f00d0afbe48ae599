"""The Azure SQL backend at the DB-API boundary: tokens, retries, error mapping, pooling.

SQL Server cannot run here, so `connect` is a recording stand-in with pyodbc's shape (its errors
carry the SQLSTATE first and the native number in the message, as pyodbc's do).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import StoreRefused, StoreUnavailable
from shared.store.backend import DuplicateKey
from shared.store.mssql import (
    SQL_COPT_SS_ACCESS_TOKEN,
    MssqlBackend,
    TokenSource,
    is_transient,
    odbc_connection_string,
    pack_token,
)


class OperationalError(Exception):
    pass


class IntegrityError(Exception):
    pass


class ProgrammingError(Exception):
    pass


def sql_error(kind: type[Exception], state: str, number: int, text: str = "error") -> Exception:
    return kind(
        state, f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]{text} ({number}) (SQLExecDirectW)"
    )


@dataclass
class FakeCursor:
    connection: FakeConnection
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def execute(self, sql: str, params: Any = ()) -> FakeCursor:
        self.connection.executed.append(sql)
        if self.connection.fail_next:
            raise self.connection.fail_next.pop(0)
        self.rows = [(1,)]
        return self

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


@dataclass
class FakeConnection:
    executed: list[str] = field(default_factory=list)
    fail_next: list[Exception] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0
    closed: bool = False
    timeout: int = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeConnect:
    """pyodbc.connect's shape: records each call; fails the first calls on demand."""

    failures: list[Exception] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    made: list[FakeConnection] = field(default_factory=list)

    def __call__(self, connection_string: str, **kwargs: Any) -> FakeConnection:
        self.calls.append({"connection_string": connection_string, **kwargs})
        if self.failures:
            raise self.failures.pop(0)
        connection = FakeConnection()
        self.made.append(connection)
        return connection


def backend(connect: FakeConnect, token: Any = None) -> MssqlBackend:
    return MssqlBackend("Driver=x;Server=y;", token=token, connect=connect, sleep=lambda s: None)


def test_access_token_goes_in_attribute_1256_as_utf16_with_its_length():
    connect = FakeConnect()
    with backend(connect, token=lambda: "eyJ0b2tlbg").read() as cur:
        cur.execute("SELECT 1")
    packed = connect.calls[0]["attrs_before"][SQL_COPT_SS_ACCESS_TOKEN]
    raw = "eyJ0b2tlbg".encode("utf-16-le")
    assert packed == struct.pack("<I", len(raw)) + raw == pack_token("eyJ0b2tlbg")
    assert "UID" not in connect.calls[0]["connection_string"] and connect.calls[0]["autocommit"] is False


def test_token_is_refreshed_five_minutes_before_it_expires():
    now = [1_000_000.0]

    @dataclass
    class Credential:
        issued: int = 0

        def get_token(self, *scopes: str) -> Any:
            assert scopes == ("https://database.windows.net/.default",)
            self.issued += 1
            return type("T", (), {"token": f"t{self.issued}", "expires_on": now[0] + 3600})()

    credential = Credential()
    source = TokenSource(credential, clock=lambda: now[0])
    assert source() == source() == "t1"
    now[0] += 3600 - 299
    assert source() == "t2"


@pytest.mark.parametrize("number", [40613, 40197, 40501, 49918, 4060, 10928, 10929, 10053, 10054, 10060, 233, 64])
def test_transient_errors_while_connecting_are_retried(number):
    connect = FakeConnect(failures=[sql_error(OperationalError, "08001", number)] * 2)
    with backend(connect).write() as cur:
        cur.execute("UPDATE x SET y = 1")
    assert len(connect.calls) == 3


def test_a_database_that_stays_away_is_store_unavailable():
    connect = FakeConnect(
        failures=[sql_error(OperationalError, "08001", 40613, "Database is not currently available")] * 9
    )
    with pytest.raises(StoreUnavailable, match="40613"), backend(connect).write():
        pass
    assert len(connect.calls) == 4


def test_a_refused_login_is_unavailable_not_retried_at_once_and_never_a_programming_error():
    connect = FakeConnect(failures=[sql_error(ProgrammingError, "28000", 18456, "Login failed")])
    with pytest.raises(StoreUnavailable, match="18456"), backend(connect).write():
        pass
    assert len(connect.calls) == 1  # the message waits with a delay; the operator creates the database user


@pytest.mark.parametrize("number", [2627, 2601])
def test_duplicate_keys_are_already_stored_not_failures(number):
    store = backend(FakeConnect())
    assert isinstance(
        store.classify(sql_error(IntegrityError, "23000", number, "Violation of UNIQUE KEY")), DuplicateKey
    )
    assert isinstance(store.classify(sql_error(IntegrityError, "23000", 547, "FOREIGN KEY constraint")), StoreRefused)


def test_transient_error_inside_a_transaction_rolls_back_drops_the_connection_and_says_unavailable():
    connect = FakeConnect()
    store = backend(connect)
    with store.read() as cur:  # warm the pool
        cur.execute("SELECT 1")
    connection = connect.made[0]
    connection.fail_next.append(sql_error(OperationalError, "08S01", 10054, "connection reset"))
    with pytest.raises(StoreUnavailable), store.write() as cur:
        cur.execute("INSERT INTO leads VALUES (?)", ("1",))
    assert connection.closed  # a lost connection is dropped (the server rolls its transaction back)
    with store.read() as cur:
        cur.execute("SELECT 1")
    assert len(connect.made) == 2  # the broken connection was not reused


def test_duplicate_key_inside_a_transaction_leaves_the_connection_in_the_pool():
    connect = FakeConnect()
    store = backend(connect)
    with store.read() as cur:
        cur.execute("SELECT 1")
    connect.made[0].fail_next.append(sql_error(IntegrityError, "23000", 2627))
    with pytest.raises(DuplicateKey), store.write() as cur:
        cur.execute("INSERT INTO leads VALUES (?)", ("1",))
    with store.read() as cur:
        cur.execute("SELECT 1")
    assert len(connect.made) == 1


def test_pooled_connections_are_reused_and_checked_after_an_idle_spell(monkeypatch):
    import shared.store.mssql as mssql

    clock = [100.0]
    monkeypatch.setattr(mssql.time, "monotonic", lambda: clock[0])
    connect = FakeConnect()
    store = backend(connect)
    for _ in range(3):
        with store.write() as cur:
            cur.execute("UPDATE x SET y = 1")
    assert len(connect.made) == 1
    clock[0] += 31  # a Flex instance frozen and thawed, or a paused serverless database
    connect.made[0].fail_next.append(sql_error(OperationalError, "08S01", 10054))
    with store.write() as cur:
        cur.execute("UPDATE x SET y = 1")
    assert len(connect.made) == 2 and connect.made[0].closed


def test_times_are_naive_utc_with_milliseconds_and_come_back_aware():
    store = backend(FakeConnect())
    stored = store.encode_time(datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC))
    assert stored == datetime(2026, 11, 27, 12, 0, 0, 123000) and stored.tzinfo is None
    assert store.decode_time(stored) == datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)


def test_managed_identity_connection_string_is_encrypted_and_carries_no_credentials():
    text = odbc_connection_string("sql-leads.database.windows.net", "leads", 15)
    assert "Driver={ODBC Driver 18 for SQL Server}" in text and "Encrypt=yes" in text
    assert "Server=tcp:sql-leads.database.windows.net,1433" in text and "Database=leads" in text
    assert "UID=" not in text.upper() and "PWD=" not in text.upper()


def test_network_sqlstates_count_as_transient():
    assert is_transient(OperationalError("08S01", "[08S01] Communication link failure"))
    assert not is_transient(ProgrammingError("42S02", "[42S02] Invalid object name 'x'. (208)"))


def test_pyodbc_is_not_imported_by_the_sqlite_path():
    import subprocess
    import sys

    code = (
        "import sys; from wiring import Services; from shared.settings import load_settings;"
        "from devhost.defaults import LOCAL_DEFAULTS; s = Services(load_settings(LOCAL_DEFAULTS));"
        "s._backend(); print('pyodbc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

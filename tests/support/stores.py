"""Stores for the contract suite: SQLite and Azure SQL over the pyodbc double always; SQL Server when configured."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.store import Store
from shared.store.sqlite import SqliteBackend

MSSQL_ENV = "TEST_MSSQL_CONNECTION_STRING"


def mssql_available() -> bool:
    return bool(os.environ.get(MSSQL_ENV))


@contextmanager
def sqlite_store(directory: Path) -> Iterator[Store]:
    store = Store(SqliteBackend(str(directory / f"contract-{uuid.uuid4().hex[:6]}.db")))
    store.migrate()
    yield store


@contextmanager
def mssql_double_store(directory: Path, pool_size: int = 4) -> Iterator[Store]:
    """The Azure SQL backend, unchanged, over the pyodbc double (real T-SQL, SQL Server's types and limits)."""
    from shared.store.mssql import MssqlBackend
    from tests.support.pyodbc_double import Server

    server = Server(directory / f"double-{uuid.uuid4().hex[:6]}")
    backend = MssqlBackend(
        "Driver={ODBC Driver 18 for SQL Server};Server=double;", connect=server.connect, pool_size=pool_size
    )
    store = Store(backend)
    store.migrate()
    yield store


@contextmanager
def mssql_store() -> Iterator[Store]:
    """A fresh database on the test SQL Server, dropped afterwards."""
    import pyodbc

    from shared.store.mssql import MssqlBackend

    admin_string = os.environ[MSSQL_ENV]
    name = f"leadtest_{uuid.uuid4().hex[:10]}"
    admin = pyodbc.connect(admin_string, autocommit=True, timeout=30)
    admin.cursor().execute(f"CREATE DATABASE [{name}]")
    try:
        database_string = re.sub(r"(?i)(Database|Initial Catalog)=[^;]*;?", "", admin_string).rstrip(";")
        store = Store(MssqlBackend(f"{database_string};Database={name};", pool_size=4))
        store.migrate()
        yield store
    finally:
        admin.cursor().execute(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
        admin.cursor().execute(f"DROP DATABASE [{name}]")
        admin.close()


def count_rows(store: Store, table: str, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
    """Rows of `table` matching `where` (test-owned SQL, parameterised values)."""
    with store.backend.read() as tx:
        return tx.value(int, f"SELECT COUNT(*) FROM {table} WHERE {where}", params) or 0  # noqa: S608 - test-owned


def migrate_in_process(path: str, start_at: float) -> int:
    """Worker for the concurrent-start test: wait for the start line, then migrate the SQLite file."""
    import time

    from shared.store.sqlite import SqliteBackend

    store = Store(SqliteBackend(path))
    while time.time() < start_at:
        time.sleep(0.001)
    return store.migrate()


def claim(store: Store, key: str, claim_id: str, channel: str = "smtp") -> str:
    """`claim_email` for a lead outside the email caps (its slot is dated long ago, the caps are high)."""
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    return store.outbox.claim_email(key, "lead", channel, claim_id, f"slot-{claim_id}", long_ago, 1000, 1000)


class CountingSqlite(SqliteBackend):
    """Real SQLite that counts its transactions, to show that a caller left the database alone."""

    def __init__(self, path: str, timeout_seconds: float = 15.0) -> None:
        super().__init__(path, timeout_seconds)
        self.transactions = 0

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Any]:
        self.transactions += 1
        with super().transaction(write) as cursor:
            yield cursor

"""SQLite backend: a WAL file, one connection per thread, `BEGIN IMMEDIATE` write transactions.

It behaves like Azure SQL where that matters: the schema (`schema.py`) checks every length,
type and time format Azure SQL would, counting text in UTF-16 code units as `NVARCHAR` does, and
a refused value maps to the same `StoreRefused`. Safe with several processes writing at once:
writers queue on SQLite's lock for up to the store timeout; a database that cannot be opened,
is locked past the timeout or cannot be written raises `StoreUnavailable`.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.errors import StoreRefused, StoreUnavailable
from shared.store.backend import Backend, DuplicateKey
from shared.store.schema import utf16_length

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_CONSTRAINT = re.compile(r"CHECK constraint failed: (\w+)")
_NOT_NULL = re.compile(r"NOT NULL constraint failed: ([\w.]+)")
# Operational errors that say the database is out of reach, not that the statement is wrong.
_UNAVAILABLE_TEXT = ("locked", "busy", "disk i/o", "unable to open", "disk is full", "readonly", "not a database")


class SqliteBackend(Backend):
    """A SQLite file in WAL mode; creates its folder; one connection per thread."""

    dialect = "sqlite"

    def __init__(self, path: str, timeout_seconds: float = 15.0) -> None:
        self.path = path
        self._timeout = timeout_seconds
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
            conn.create_function("utf16_length", 1, utf16_length, deterministic=True)
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"SQLite {self.path} cannot be opened: {type(exc).__name__}") from exc
        self._local.conn = conn
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch a new file to WAL, waiting while other processes hold it (the switch gets no busy handler)."""
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    @contextmanager
    def transaction(self, write: bool) -> Iterator[sqlite3.Cursor]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error:
            self._drop_connection()
            raise
        cur = conn.cursor()
        try:
            yield cur
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop_connection()
            raise
        finally:
            cur.close()

    def classify(self, exc: BaseException) -> Exception | None:
        if isinstance(exc, sqlite3.IntegrityError):
            text = str(exc)
            if "UNIQUE constraint failed" in text or "PRIMARY KEY" in text:
                return DuplicateKey(text)
            if match := _CONSTRAINT.search(text):
                return StoreRefused(f"the database refused a value: constraint {match.group(1)}")
            if match := _NOT_NULL.search(text):
                return StoreRefused(f"the database refused a value: {match.group(1)} cannot be NULL")
            return StoreRefused("the database refused a value: integrity constraint")
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc).lower()
            if any(word in text for word in _UNAVAILABLE_TEXT):
                return StoreUnavailable(f"SQLite {self.path} unavailable: {text[:120]}")
            return StoreRefused(f"SQLite refused the statement: {text[:120]}")  # a bug, not an outage
        if type(exc) is sqlite3.DatabaseError:  # "file is not a database", "disk image is malformed"
            return StoreUnavailable(f"SQLite {self.path} is unusable: {str(exc)[:120]}")
        if isinstance(exc, sqlite3.Error):  # SQLite's messages name statements, never bound values
            return StoreRefused(f"SQLite refused the statement: {type(exc).__name__}: {str(exc)[:120]}")
        if isinstance(exc, OSError):
            return StoreUnavailable(f"SQLite {self.path} unavailable: {type(exc).__name__}")
        return None

    def encode_time(self, value: datetime) -> str:
        """Fixed-width ISO 8601 with milliseconds and a `Z`, so text order is time order."""
        if value.tzinfo is None:
            raise TypeError("naive datetime given to the store; times are aware UTC")
        return value.astimezone(UTC).strftime(TIME_FORMAT)[:23] + "Z"

    def decode_time(self, value: Any) -> datetime:
        if not isinstance(value, str) or not _TIME_TEXT.fullmatch(value):
            raise TypeError(f"not a stored time: {type(value).__name__}")
        return datetime.strptime(value[:-1], TIME_FORMAT).replace(tzinfo=UTC)

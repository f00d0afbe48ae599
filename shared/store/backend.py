"""What a database supplies to the stores: transactions over a typed cursor, time conversion, errors.

A backend (`sqlite.SqliteBackend`, `mssql.MssqlBackend`) opens transactions and classifies its
driver's errors; everything else is here, written once for both engines:

- `Tx.execute` binds parameters (aware `datetime` values become the engine's time value) and
  turns driver errors into the store's vocabulary: `DuplicateKey` (a normal outcome, caught by
  the store that asked), `StoreRefused` (a value the database will never take; a dead letter,
  its reason naming table and column only) and `StoreUnavailable` (retry later).
- `Tx.one` / `Tx.all` / `Tx.value` decode rows into frozen dataclasses by their annotations, so
  both engines return the same Python types: aware UTC `datetime`, `int`, `bool`, `str`, `None`,
  and decoded JSON for `dict`/`list` fields.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal, Protocol, TypeVar

from shared.errors import StoreRefused, StoreUnavailable

Dialect = Literal["sqlite", "mssql"]
R = TypeVar("R")
ID_CHUNK = 500  # ids per `IN (...)` list: well under SQL Server's 2,100 parameters, twice over


class DuplicateKey(Exception):
    """A unique constraint refused the write: "already there", a normal outcome the store catches."""


@dataclasses.dataclass(frozen=True)
class Sql:
    """A statement, with the SQL Server text where T-SQL differs (`?` placeholders in both)."""

    text: str
    mssql: str | None = None

    def for_dialect(self, dialect: Dialect) -> str:
        return self.mssql if dialect == "mssql" and self.mssql is not None else self.text


class Cursor(Protocol):
    """The part of a DB-API cursor the stores use (sqlite3 and pyodbc both qualify; qmark params)."""

    rowcount: int

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Backend(ABC):
    """A database engine: transactions, time values and error classification."""

    dialect: Dialect

    @abstractmethod
    def transaction(self, write: bool) -> typing.ContextManager[Any]:
        """A cursor in one transaction: committed when the block ends normally, rolled back otherwise.

        Raises `StoreUnavailable` (through `classify`) when the database cannot be reached.
        """

    @abstractmethod
    def classify(self, exc: BaseException) -> Exception | None:
        """The store's error for a driver error (`DuplicateKey`, `StoreRefused`, `StoreUnavailable`), or None."""

    @abstractmethod
    def encode_time(self, value: datetime) -> Any:
        """An aware datetime as this engine stores it (millisecond precision, UTC)."""

    @abstractmethod
    def decode_time(self, value: Any) -> datetime:
        """A stored time back as an aware UTC datetime; `TypeError` for a value that is not one."""

    def lock_migrations(self, tx: Tx) -> None:  # noqa: B027 - engines whose write transaction already excludes others
        """Hold an exclusive lock on schema changes until `tx` ends."""

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction over a `Tx`."""
        with self._mapped(), self.transaction(write=True) as cursor:
            yield Tx(cursor, self)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only use of a `Tx` (its own transaction, ended at the end of the block)."""
        with self._mapped(), self.transaction(write=False) as cursor:
            yield Tx(cursor, self)

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        """Driver errors raised on connect, commit or rollback become the store's errors too."""
        try:
            yield
        except (DuplicateKey, StoreRefused, StoreUnavailable):
            raise
        except Exception as exc:
            mapped = self.classify(exc)
            if mapped is None:
                raise
            raise mapped from None


class Tx:
    """One transaction's cursor: binds parameters, maps errors and decodes rows into typed dataclasses."""

    def __init__(self, cursor: Cursor, backend: Backend) -> None:
        self._cursor = cursor
        self._backend = backend

    @property
    def dialect(self) -> Dialect:
        return self._backend.dialect

    def execute(self, sql: str | Sql, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the rows it changed (0 when the driver does not say)."""
        text = sql.for_dialect(self.dialect) if isinstance(sql, Sql) else sql
        try:
            self._cursor.execute(text, self._bind(params))
        except Exception as exc:
            mapped = self._backend.classify(exc)
            if mapped is None:
                raise
            raise mapped from None
        return max(int(getattr(self._cursor, "rowcount", 0) or 0), 0)

    def executemany(self, sql: str | Sql, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row (one round trip on pyodbc with `fast_executemany`)."""
        if not rows:
            return
        text = sql.for_dialect(self.dialect) if isinstance(sql, Sql) else sql
        try:
            self._cursor.executemany(text, [self._bind(row) for row in rows])
        except Exception as exc:
            mapped = self._backend.classify(exc)
            if mapped is None:
                raise
            raise mapped from None

    def one(self, row_type: type[R], sql: str | Sql, params: Sequence[Any] = ()) -> R | None:
        """The first row as a `row_type`, or None."""
        self.execute(sql, params)
        row = self._cursor.fetchone()
        return None if row is None else decode(row_type, row, self._backend.decode_time)

    def all(self, row_type: type[R], sql: str | Sql, params: Sequence[Any] = ()) -> list[R]:
        """Every row as a `row_type`."""
        self.execute(sql, params)
        convert = self._backend.decode_time
        return [decode(row_type, row, convert) for row in self._cursor.fetchall()]

    def value(self, kind: type[R], sql: str | Sql, params: Sequence[Any] = ()) -> R | None:
        """The first column of the first row, as `kind` (int, str, bool, datetime), or None."""
        self.execute(sql, params)
        row = self._cursor.fetchone()
        if row is None or row[0] is None:
            return None
        return typing.cast(R, _converter(kind, self._backend.decode_time)(row[0]))

    def _bind(self, params: Sequence[Any]) -> tuple[Any, ...]:
        encode = self._backend.encode_time
        return tuple(encode(p) if isinstance(p, datetime) else int(p) if isinstance(p, bool) else p for p in params)


# --- typed rows -------------------------------------------------------------------------------


def columns(row_type: type[Any], prefix: str = "") -> str:
    """The SELECT list for `row_type`: its fields' columns (`metadata={"column": ...}` or the name), in order."""
    return ", ".join(prefix + f.metadata.get("column", f.name) for f in dataclasses.fields(row_type))


def decode(row_type: type[R], row: Sequence[Any], decode_time: Callable[[Any], datetime]) -> R:
    """A DB row as a `row_type` dataclass; each value converted by its field's annotation."""
    converters = _converters(typing.cast(Any, row_type), decode_time)
    if len(row) != len(converters):
        raise TypeError(f"{row_type.__name__} has {len(converters)} fields; the row has {len(row)} columns")
    return row_type(*(None if v is None else c(v) for c, v in zip(converters, row, strict=True)))


@cache
def _converters(row_type: Any, decode_time: Callable[[Any], datetime]) -> tuple[Callable[[Any], Any], ...]:
    hints = typing.get_type_hints(row_type)
    return tuple(_converter(_strip_optional(hints[f.name]), decode_time) for f in dataclasses.fields(row_type))


def _strip_optional(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) == 1:
            return kinds[0]
    return annotation


def _converter(kind: Any, decode_time: Callable[[Any], datetime]) -> Callable[[Any], Any]:
    origin = typing.get_origin(kind) or kind
    if kind is datetime:
        return decode_time
    if kind is bool:
        return _to_bool
    if kind is int:
        return _to_int
    if kind is float:
        return float
    if kind is str:
        return _to_str
    if origin in (dict, list):
        return lambda value: json.loads(value) if isinstance(value, str) else value
    raise TypeError(f"no conversion from a database value to {kind!r}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise TypeError(f"not a BIT value: {type(value).__name__}")


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():  # SUM() over an empty set on some drivers
        return int(value)
    raise TypeError(f"not an integer value: {type(value).__name__}")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"not a text value: {type(value).__name__}")


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`: `2026-11-27T12:00:00Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> datetime:
    return datetime.now(UTC)


def fit_text(value: str | None, units: int | None) -> str | None:
    """`value` cut to `units` UTF-16 code units (an `NVARCHAR(units)`), never splitting a surrogate pair."""
    if value is None or units is None or len(value) <= units // 2:
        return value
    used = 0
    for index, char in enumerate(value):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > units:
            return value[:index]
    return value

"""A test double for pyodbc + ODBC Driver 18 + Azure SQL: real T-SQL, run on a SQLite file.

`Server(directory)` is one database, kept in a SQLite file so that connections from several
threads or processes share it as they would a server. `server.connect` has `pyodbc.connect`'s call
shape; connections, cursors and rows behave like pyodbc's. Each statement is translated from T-SQL
with sqlglot (once per text) and executed; nothing is scripted. What it does:

- fails where Azure SQL fails, with pyodbc's exception classes and ODBC Driver 18's messages
  (`args == (sqlstate, message)`, the native number in the message): NVARCHAR lengths in UTF-16
  code units (2628, quoting the truncated value as SQL Server does), NOT NULL (515), PRIMARY KEY and
  UNIQUE constraints (2627), unique and filtered unique indexes (2601), one NULL per unfiltered
  unique key, INT/BIGINT range (8115), BIT, DATETIME2 text, identity inserts (544). The rules come
  from a catalog of the DDL it ran, kept in the file (`__double_catalog`) and enforced by generated
  CHECK constraints and triggers, so INSERT … VALUES, INSERT … SELECT and UPDATE … SET all obey them;
- returns pyodbc's types: naive `datetime` rounded to the column's DATETIME2 scale, `bool` for BIT,
  `int`, `str`, `None`, the source column's type through MAX/MIN/COALESCE and scalar subqueries;
- compares text case-insensitively, ignoring trailing spaces (the default collation, approximated);
- reads outside a write see committed data only (Azure SQL's read committed snapshot); writers queue
  on SQLite's write lock, standing in for row locks, so `UPDLOCK, HOLDLOCK` hints are dropped;
- `sp_getapplock` (exclusive, owned by the transaction) holds until commit, rollback or close,
  across threads and processes (flock), and answers 0, 1 or -1 as SQL Server does;
- fails on purpose: `fail_connect`, `fail_on` (a deadlock rolls back, a dropped connection stays
  dropped) and `failover`, with ready-made errors (`deadlock()`, `database_paused()`, …); counts
  `connections_open` and `max_concurrent_connections`.

Not emulated: MERGE (refused with `NotSupportedError`), isolation levels and row locks (the whole
database is the write lock; deadlocks are never detected, only injected; a lock wait ends at the
query timeout), other statements (DROP, SET, other procedures, batches but the sp_getapplock one),
FOREIGN KEY and CHECK constraints, types other than (N)(VAR)CHAR, TINYINT to BIGINT, BIT and
DATETIME2, CHAR padding, the collation's sort order, CONVERT styles other than a prefix of ISO 8601
(126), string parameters compared with DATETIME2 columns (compared as text), and the driver's own
parameter checks under `fast_executemany`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

DRIVER = "[Microsoft][ODBC Driver 18 for SQL Server]"
WAIT_CAP_SECONDS = 60.0  # pyodbc's default query timeout (0) waits forever; a test gives up here instead


# --- pyodbc's exceptions, and the errors ODBC Driver 18 raises through them -------------------------


class Error(Exception):
    """pyodbc.Error. Driver errors carry `args == (sqlstate, message)`; pyodbc's own, the reverse."""


class DatabaseError(Error): ...


class DataError(DatabaseError): ...


class OperationalError(DatabaseError): ...


class IntegrityError(DatabaseError): ...


class InternalError(DatabaseError): ...


class ProgrammingError(DatabaseError): ...


class NotSupportedError(DatabaseError): ...


class InterfaceError(Error): ...


# pyodbc's errors.cpp: the first SQLSTATE prefix that matches picks the class; any other state is `Error`.
_CLASSES: tuple[tuple[str, type[Error]], ...] = (
    ("01002", OperationalError), ("08001", OperationalError), ("08003", OperationalError),
    ("08004", OperationalError), ("08007", OperationalError), ("08S01", OperationalError),
    ("0A000", NotSupportedError), ("28000", InterfaceError), ("40002", IntegrityError), ("22", DataError),
    ("23", IntegrityError), ("24", ProgrammingError), ("25", ProgrammingError), ("42", ProgrammingError),
    ("HY001", OperationalError), ("HY014", OperationalError), ("HYT00", OperationalError),
    ("HYT01", OperationalError), ("IM001", InterfaceError), ("IM002", InterfaceError), ("IM003", InterfaceError),
)  # fmt: skip


def driver_error(state: str, number: int, text: str, function: str = "SQLExecDirectW", server: bool = True) -> Error:
    """An error as pyodbc raises it on Linux, from the first ODBC diagnostic record."""
    cls = next((c for prefix, c in _CLASSES if state.startswith(prefix)), Error)
    return cls(state, f"[{state}] {DRIVER}{'[SQL Server]' if server else ''}{text} ({number}) ({function})")


def truncation(table: str, column: str, truncated_value: str, database: str = "leadagent") -> Error:
    """2628. The message quotes the value cut to the column's length: lead data, never to be logged."""
    text = f"String or binary data would be truncated in table '{database}.dbo.{table}', column '{column}'."
    return driver_error("22001", 2628, f"{text} Truncated value: '{truncated_value}'.")


def null_refused(table: str, column: str, verb: str = "INSERT", database: str = "leadagent") -> Error:
    text = f"Cannot insert the value NULL into column '{column}', table '{database}.dbo.{table}';"
    return driver_error("23000", 515, f"{text} column does not allow nulls. {verb} fails.")


def duplicate_key(table: str, name: str, value: str, kind: str = "UNIQUE KEY") -> Error:
    """2627 for a PRIMARY KEY or UNIQUE KEY constraint; 2601 for a unique index (`kind="INDEX"`)."""
    if kind == "INDEX":
        text = f"Cannot insert duplicate key row in object 'dbo.{table}' with unique index '{name}'."
        return driver_error("23000", 2601, f"{text} The duplicate key value is ({value}).")
    text = f"Violation of {kind} constraint '{name}'. Cannot insert duplicate key in object 'dbo.{table}'."
    return driver_error("23000", 2627, f"{text} The duplicate key value is ({value}).")


def overflow(type_name: str = "int") -> Error:
    return driver_error("22003", 8115, f"Arithmetic overflow error converting expression to data type {type_name}.")


def conversion_failed(value: object, type_name: str) -> Error:
    text = f"Conversion failed when converting the nvarchar value '{value}' to data type {type_name}."
    return driver_error("22018", 245, text)


def bad_datetime() -> Error:
    return driver_error("22007", 241, "Conversion failed when converting date and/or time from character string.")


def deadlock() -> Error:
    """1205, SQLSTATE 40001: a plain `pyodbc.Error` (no DB-API subclass maps 40001)."""
    text = "Transaction (Process ID 57) was deadlocked on lock resources with another process and has been"
    return driver_error("40001", 1205, f"{text} chosen as the deadlock victim. Rerun the transaction.")


def login_failed(user: str = "<token-identified principal>") -> Error:
    return driver_error("28000", 18456, f"Login failed for user '{user}'.", "SQLDriverConnect")


def connection_broken(function: str = "SQLExecDirectW") -> Error:
    """The TCP connection was reset (08S01, 10054); the connection stays unusable."""
    return driver_error("08S01", 10054, "TCP Provider: Error code 0x2746", function, server=False)


def link_failure(function: str = "SQLExecDirectW") -> Error:
    """What every call on a dropped connection raises afterwards."""
    return driver_error("08S01", 0, "Communication link failure", function, server=False)


def connect_failed() -> Error:
    return driver_error("08001", 10060, "TCP Provider: Error code 0x274C", "SQLDriverConnect", server=False)


def login_timeout() -> Error:
    return driver_error("HYT00", 0, "Login timeout expired", "SQLDriverConnect", server=False)


def query_timeout(function: str = "SQLExecDirectW") -> Error:
    return driver_error("HYT00", 0, "Query timeout expired", function, server=False)


def database_paused(
    database: str = "leadagent", host: str = "leadagent-sql", function: str = "SQLDriverConnect"
) -> Error:
    """40613, while a serverless database resumes or fails over (HY000: a plain `pyodbc.Error`)."""
    trace = str(uuid.uuid4()).upper()
    text = f"Database '{database}' on server '{host}' is not currently available.  Please retry the connection later."
    more = "If the problem persists, contact customer support, and provide them the session tracing ID of"
    return driver_error("HY000", 40613, f"{text}  {more} '{{{trace}}}'.", function)


def throttled(function: str = "SQLExecDirectW") -> Error:
    text = f"The service is currently busy. Retry the request after 10 seconds. Incident ID: {uuid.uuid4()}."
    return driver_error("HY000", 40501, f"{text} Code: 4325376.", function)


def service_error(function: str = "SQLExecDirectW") -> Error:
    text = "The service has encountered an error processing your request. Please try again. Error code 4815."
    return driver_error("HY000", 40197, text, function)


def _drops_connection(error: BaseException) -> bool:
    state, message = (*error.args, "", "")[:2]
    return state in ("08S01", "08001") or any(f"({n})" in str(message) for n in (10053, 10054, 40613, 40197))


# --- the catalog: what the T-SQL DDL declared, kept in the SQLite file --------------------------------

_INTS = {"UTINYINT": (0, 255), "SMALLINT": (-(2**15), 2**15 - 1), "INT": (-(2**31), 2**31 - 1)}
_INTS["BIGINT"] = (-(2**63), 2**63 - 1)
_TEXT = frozenset({"NVARCHAR", "VARCHAR", "NCHAR", "CHAR"})


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str  # NVARCHAR, VARCHAR, NCHAR, CHAR, UTINYINT (TINYINT), SMALLINT, INT, BIGINT, BIT, DATETIME2
    size: int | None = None  # characters (None: MAX), or DATETIME2's fractional digits
    nullable: bool = True
    identity: bool = False
    default: str | None = None  # a literal, as SQLite text

    def sql_name(self) -> str:
        return "tinyint" if self.type == "UTINYINT" else self.type.lower()


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    kind: str  # "PRIMARY KEY", "UNIQUE KEY", "INDEX" (a unique index) or "" (an index)
    columns: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    keys: tuple[Key, ...] = ()

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name.lower() == name.lower()), None)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> Table:
        raw = json.loads(text)
        keys = tuple(Key(k["name"], k["kind"], tuple(k["columns"])) for k in raw["keys"])
        return Table(raw["name"], tuple(Column(**c) for c in raw["columns"]), keys)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unsupported(what: str) -> NotSupportedError:
    return NotSupportedError(f"the pyodbc double does not emulate {what[:160]}")


def _column_from_ast(node: exp.ColumnDef, table: str, keys: list[Key]) -> Column:
    kind = node.args["kind"]
    type_ = kind.this.value
    if type_ not in _INTS and type_ not in _TEXT and type_ not in ("BIT", "DATETIME2"):
        raise _unsupported(f"column type {type_} ({node.name})")
    size: int | None = 7 if type_ == "DATETIME2" else 1 if type_ in _TEXT else None  # NVARCHAR alone means (1)
    if kind.expressions:
        size = None if isinstance(kind.expressions[0].this, exp.Var) else int(kind.expressions[0].this.name)
    nullable, identity, default = True, False, None
    for constraint in node.constraints:
        part, name = constraint.args.get("kind"), constraint.name
        if isinstance(part, exp.NotNullColumnConstraint):
            nullable = bool(part.args.get("allow_null"))
        elif isinstance(part, exp.GeneratedAsIdentityColumnConstraint):
            identity = True
        elif isinstance(part, exp.PrimaryKeyColumnConstraint | exp.UniqueColumnConstraint):
            primary = isinstance(part, exp.PrimaryKeyColumnConstraint)
            keys.append(_key(name, primary, table, (node.name,)))
        elif isinstance(part, exp.DefaultColumnConstraint) and isinstance(part.this, exp.Literal | exp.Null):
            default = part.this.sql(dialect="sqlite")
        else:
            raise _unsupported(constraint.sql(dialect="tsql"))
    return Column(node.name, type_, size, nullable, identity, default)


def _key(name: str, primary: bool, table: str, columns: tuple[str, ...]) -> Key:
    """SQL Server names an unnamed constraint PK__table__hex / UQ__table__hex."""
    name = name or f"{'PK' if primary else 'UQ'}__{table[:8]}__{uuid.uuid4().hex[:16].upper()}"
    return Key(name, "PRIMARY KEY" if primary else "UNIQUE KEY", columns)


def _table_from_ast(create: exp.Create) -> Table:
    schema = create.this
    name, columns, keys = schema.this.name, [], []  # type: ignore[var-annotated]
    for item in schema.expressions:
        if isinstance(item, exp.ColumnDef):
            columns.append(_column_from_ast(item, name, keys))
            continue
        for part in item.expressions if isinstance(item, exp.Constraint) else [item]:
            constraint_name = item.name if item is not part else ""
            if isinstance(part, exp.PrimaryKey):
                cols = tuple(c.this.name if isinstance(c, exp.Ordered) else c.name for c in part.expressions)
                keys.append(_key(constraint_name, True, name, cols))
            elif isinstance(part, exp.UniqueColumnConstraint) and isinstance(part.this, exp.Schema):
                keys.append(_key(constraint_name, False, name, tuple(c.name for c in part.this.expressions)))
            else:
                raise _unsupported(item.sql(dialect="tsql"))
    in_pk = {c.lower() for k in keys if k.kind == "PRIMARY KEY" for c in k.columns}
    columns = [dataclasses.replace(c, nullable=False) if c.name.lower() in in_pk else c for c in columns]
    return Table(name, tuple(columns), tuple(keys))


def _size_sql(c: Column) -> str:
    return "NULL" if c.size is None else str(c.size)


def _column_sql(table: Table, c: Column) -> str:
    if c.identity:
        return f"{_q(c.name)} INTEGER PRIMARY KEY AUTOINCREMENT"
    affinity = "TEXT COLLATE CI_AS" if c.type in _TEXT else "TEXT" if c.type == "DATETIME2" else "INTEGER"
    default = f" DEFAULT {c.default}" if c.default is not None else ""
    check = f"__fits('{table.name}', '{c.name}', '{c.type}', {_size_sql(c)}, {_q(c.name)})"
    return f"{_q(c.name)} {affinity}{'' if c.nullable else ' NOT NULL'}{default} CHECK ({check})"


def _index_sql(table: Table, key: Key, order: Sequence[bool] = (), where: str | None = None) -> str:
    """A unique key takes one NULL, as SQL Server counts NULLs equal (a filtered index decides itself)."""
    columns = [table.column(name) or Column(name, "INT") for name in key.columns]
    nulls = bool(key.kind) and where is None and any(c.nullable for c in columns)
    terms = [
        (f"ifnull({_q(c.name)}, x'00')" + (" COLLATE CI_AS" if c.type in _TEXT else "") if nulls else _q(c.name))
        + (" DESC" if i < len(order) and order[i] else "")
        for i, c in enumerate(columns)
    ]
    index = f"{'UNIQUE ' if key.kind else ''}INDEX {_q(f'{table.name}.{key.name}')} ON {_q(table.name)}"
    return f"CREATE {index} ({', '.join(terms)})" + (f" WHERE {where}" if where else "")


def _create_table_sql(table: Table) -> list[str]:
    identity = next((c for c in table.columns if c.identity), None)
    pk = next((k for k in table.keys if k.kind == "PRIMARY KEY"), None)
    if identity and (pk is None or [c.lower() for c in pk.columns] != [identity.name.lower()]):
        raise _unsupported(f"IDENTITY except as the one-column PRIMARY KEY ({table.name})")
    parts = [_column_sql(table, c) for c in table.columns]
    parts += [f"PRIMARY KEY ({', '.join(_q(c) for c in pk.columns)})"] if pk and not identity else []
    uniques = [_index_sql(table, k) for k in table.keys if k.kind == "UNIQUE KEY"]
    return [f"CREATE TABLE {_q(table.name)} ({', '.join(parts)})", *uniques]


def _normalising_triggers(table: Table) -> list[str]:
    """After each write SQL Server's storage rules apply: DATETIME2 rounds, BIT is 0/1, spaces past a
    length are trimmed."""
    columns = [c for c in table.columns if not c.identity]
    sets = ", ".join(f"{_q(c.name)} = __norm('{c.type}', {_size_sql(c)}, {_q(c.name)})" for c in columns)
    body = f"BEGIN UPDATE {_q(table.name)} SET {sets} WHERE rowid = NEW.rowid; END"  # noqa: S608 - catalog names
    insert, update = _q(table.name + ".norm_insert"), _q(table.name + ".norm_update")
    names = ", ".join(_q(c.name) for c in columns)
    return [
        f"DROP TRIGGER IF EXISTS {insert}",
        f"DROP TRIGGER IF EXISTS {update}",
        f"CREATE TRIGGER {insert} AFTER INSERT ON {_q(table.name)} {body}",
        f"CREATE TRIGGER {update} AFTER UPDATE OF {names} ON {_q(table.name)} {body}",
    ]


# --- values: what a column accepts and how it stores it ------------------------------------------------

_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?")


def _round_datetime(text: str, scale: int) -> str | None:
    """ISO text at DATETIME2(scale), rounded as SQL Server rounds, always with 7 digits so text sorts."""
    match = _DATETIME.fullmatch(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g or 0) for g in match.groups()[:6])
    try:
        whole = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    step = 10 ** (7 - scale)
    units = (int((match.group(7) or "").ljust(7, "0")) + step // 2) // step * step
    if units >= 10**7:
        whole, units = whole + timedelta(seconds=1), units - 10**7
    return f"{whole.isoformat()}.{units:07d}"


def _length(text: str, type_: str) -> int:
    return len(text.encode("utf-16-le")) // 2 if type_.startswith("N") else len(text)


def _cut(text: str, size: int, type_: str) -> str:
    return text.encode("utf-16-le")[: size * 2].decode("utf-16-le", "ignore") if type_.startswith("N") else text[:size]


def _to_int(value: Any) -> int | None:
    if isinstance(value, int | float):
        return int(value)
    return int(value) if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value) else None


def _to_bit(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return int(value.strip().lower() == "true")
    number = _to_int(value)
    return None if number is None else int(number != 0)


def _refusal(database: str, table: str, column: str, type_: str, size: int | None, value: Any) -> Error | None:
    """SQL Server's error for `value` going into the column, or None when it is taken."""
    sql_name = Column(column, type_).sql_name()
    if value is None:
        return None
    if type_ in _TEXT:
        text = value if isinstance(value, str) else str(value)
        fits = size is None or _length(text.rstrip(" "), type_) <= size
        return None if fits else truncation(table, column, _cut(text, size or 0, type_), database)
    if type_ in _INTS:
        number = _to_int(value)
        if number is None:
            return conversion_failed(value, sql_name)
        return None if _INTS[type_][0] <= number <= _INTS[type_][1] else overflow(sql_name)
    if type_ == "BIT":
        return None if _to_bit(value) is not None else conversion_failed(value, sql_name)
    return None if isinstance(value, str) and _round_datetime(value, 7) else bad_datetime()


def _normalise(type_: str, size: int | None, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "DATETIME2":
        return _round_datetime(value, 7 if size is None else size) or value
    if type_ == "BIT":
        return _to_bit(value)
    if type_ in _INTS:
        return _to_int(value)
    if size is not None and isinstance(value, str) and _length(value, type_) > size:
        return _cut(value, size, type_)  # only spaces are past the length: the CHECK let it through
    return value


def _ci_as(left: str, right: str) -> int:
    a, b = left.rstrip(" ").casefold(), right.rstrip(" ").casefold()
    return (a > b) - (a < b)


def _bind(index: int, value: Any) -> Any:
    """A parameter as pyodbc binds it, in SQLite's terms; HY105 for a type pyodbc refuses."""
    if value is None or isinstance(value, str | bytes | float):
        return value
    if isinstance(value, bool):
        return int(value)  # SQL_BIT
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)  # a NUMERIC: it overflows on arrival
    if isinstance(value, datetime):  # the wall-clock fields; pyodbc ignores tzinfo
        return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "0"
    if isinstance(value, date | clock_time | Decimal):
        return str(value)
    if isinstance(value, bytearray | uuid.UUID):
        return bytes(value) if isinstance(value, bytearray) else str(value).upper()
    # pyodbc raises this itself, message first; pyodbc 5 would try a list as a table-valued parameter.
    raise ProgrammingError(f"Invalid parameter type.  param-index={index} param-type={type(value).__name__}", "HY105")


def _from_sqlite(value: Any, kind: Column | str | None) -> Any:
    if value is None or kind is None:
        return value
    if kind == "int":
        return int(value)
    if isinstance(kind, Column) and kind.type == "DATETIME2":
        return datetime.fromisoformat(value[:26])  # pyodbc keeps microseconds: the 7th digit goes
    return bool(value) if isinstance(kind, Column) and kind.type == "BIT" else value


def _sql_text(value: Any) -> str:
    """A value as SQL Server writes it in a duplicate-key message."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")
    return "<NULL>" if value is None else str(int(value) if isinstance(value, bool) else value)


# --- translation: T-SQL text to a plan SQLite can run ------------------------------------------------

_GUARD = re.compile(r"\s*IF\s+OBJECT_ID\s*\(\s*N?'([^']+)'\s*(?:,\s*N?'U'\s*)?\)\s+IS\s+NULL\s+(.*)", re.I | re.S)
_APPLOCK = re.compile(
    r"\s*(?:DECLARE\s+@\w+\s+INT\s*;\s*)?EXEC(?:UTE)?\s+(?:@\w+\s*=\s*)?(?:dbo\.)?sp_getapplock\s+(?P<args>[^;]*?)\s*;?"
    r"\s*(?:IF\s+@\w+\s*<\s*0\s+THROW\s+(?P<number>\d+)\s*,\s*N?'(?P<message>[^']*)'\s*,\s*\d+\s*;?)?"
    r"\s*(?P<select>SELECT\s+@\w+\s*;?)?\s*",
    re.I | re.S,
)
_APPLOCK_ARG = re.compile(r"@(\w+)\s*=\s*(?:N?'([^']*)'|(-?\d+))", re.I)
_LOCKING_HINT = re.compile(r"WITH\s*\([^)]*\b(UPDLOCK|HOLDLOCK|XLOCK|TABLOCKX|SERIALIZABLE)\b", re.I)


@dataclasses.dataclass(frozen=True)
class Param:
    index: int


@dataclasses.dataclass
class Plan:
    """One T-SQL statement, translated for SQLite."""

    tsql: str
    kind: str  # query, write, ddl or applock
    params: int = 0
    statements: list[str] = dataclasses.field(default_factory=list)  # SQLite, `:pN` for the N-th `?`
    writes: bool = True
    guard: str = ""  # `IF OBJECT_ID(...) IS NULL`: run only while this table is missing
    verb: str = "INSERT"
    results: list[tuple[str, Column | str | None]] = dataclasses.field(default_factory=list)
    assignments: dict[str, Any] = dataclasses.field(default_factory=dict)  # column -> Param or literal
    saves: Table | None = None  # the catalog entry DDL leaves behind
    applock: dict[str, str] = dataclasses.field(default_factory=dict)
    raw: tuple[Any, ...] = ()  # this execution's parameters, as given


def _number_placeholders(sql: str) -> tuple[str, int]:
    """`?` outside literals, identifiers and comments becomes `:p0`, `:p1`, … in text order."""
    out, count, i = [], 0, 0
    closers = {"'": "'", '"': '"', "[": "]", "--": "\n", "/*": "*/"}
    while i < len(sql):
        opener = next((o for o in closers if sql.startswith(o, i)), None)
        if opener:
            end = sql.find(closers[opener], i + len(opener))
            end = len(sql) if end < 0 else end + len(closers[opener])
            out.append(sql[i:end])
        else:
            end = i + 1
            out.append(f":p{count}" if sql[i] == "?" else sql[i])
            count += sql[i] == "?"
        i = end
    return "".join(out), count


def _sqlite_tree(node: exp.Expr) -> exp.Expr:
    def rewrite(n: exp.Expr) -> exp.Expr:
        if isinstance(n, exp.Table):
            n.set("db", None)
            n.set("catalog", None)
        if isinstance(n, exp.National):
            return exp.Literal.string(n.name)
        if isinstance(n, exp.Convert | exp.Cast):  # to (N)(VAR)CHAR(n): a prefix of the ISO text, style 126
            target, value = (n.this, n.expression) if isinstance(n, exp.Convert) else (n.args["to"], n.this)
            size = target.expressions[0].this if target.this.value in _TEXT and target.expressions else None
            if size is not None and not isinstance(size, exp.Var):
                return exp.func("SUBSTR", exp.cast(value, "TEXT"), exp.Literal.number(1), size)
        return n

    return node.copy().transform(rewrite)


def _scope(select: exp.Select, catalog: dict[str, Table]) -> dict[str, Table | None]:
    tables = [t for t in select.find_all(exp.Table) if t.find_ancestor(exp.Select) is select]
    return {(t.alias or t.name).lower(): catalog.get(t.name.lower()) for t in tables}


def _declared_type(node: exp.Expr, scope: dict[str, Table | None], catalog: dict[str, Table]) -> Any:
    """The column a projection reads (through MAX, MIN, COALESCE, scalar subqueries); "int" for AVG of ints."""
    node = node.unalias()
    if isinstance(node, exp.Column):
        tables = [scope.get(node.table.lower())] if node.table else list(scope.values())
        return next((c for t in tables if t and (c := t.column(node.name))), None)
    if isinstance(node, exp.Max | exp.Min | exp.Coalesce | exp.Paren):
        return _declared_type(node.this, scope, catalog)
    if isinstance(node, exp.Avg):
        column = _declared_type(node.this, scope, catalog)
        return "int" if isinstance(column, Column) and column.type in _INTS else None
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select):
        return _declared_type(node.this.expressions[0], _scope(node.this, catalog), catalog)
    return None


def _results(tree: exp.Expr, catalog: dict[str, Table]) -> list[tuple[str, Column | str | None]]:
    select: Any = tree
    while isinstance(select, exp.SetOperation):
        select = select.left
    scope, out = _scope(select, catalog), list[tuple[str, Column | str | None]]()
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column) and projection.is_star):
            table = projection.table if isinstance(projection, exp.Column) else ""
            tables = [scope.get(table.lower())] if table else list(scope.values())
            out += [(c.name, c) for t in tables if t for c in t.columns]
        else:
            name = projection.alias_or_name if isinstance(projection, exp.Alias | exp.Column) else ""
            out.append((name, _declared_type(projection, scope, catalog)))
    return out


def _assignments(tree: exp.Insert | exp.Update | exp.Delete) -> dict[str, Any]:
    """Which parameter or literal each written column gets (the first row's), for duplicate-key messages."""

    def value(node: exp.Expr) -> Any:
        if isinstance(node, exp.Placeholder):
            return Param(int(node.name[1:]))
        return node.to_py() if isinstance(node, exp.Literal | exp.Null) else "…"

    if isinstance(tree, exp.Update):
        return {eq.this.name.lower(): value(eq.expression) for eq in tree.expressions}
    source = tree.expression
    row = source.expressions[0].expressions if isinstance(source, exp.Values) else getattr(source, "expressions", [])
    names = [c.name.lower() for c in tree.this.expressions] if isinstance(tree.this, exp.Schema) else []
    return dict(zip(names, map(value, row), strict=False))


def _ddl(tree: exp.Expr, catalog: dict[str, Table], tsql: str) -> tuple[list[str], Table | None]:
    """SQLite statements for CREATE TABLE, CREATE [UNIQUE] INDEX or ALTER TABLE … ADD, and the new entry."""
    if isinstance(tree, exp.Create) and tree.kind == "TABLE":
        table = _table_from_ast(tree)
        return _create_table_sql(table) + _normalising_triggers(table), table
    if isinstance(tree, exp.Create) and tree.kind == "INDEX":
        index, params = tree.this, tree.this.args["params"]
        name = index.args["table"].name
        table = catalog.get(name.lower()) or Table(name, ())
        key = Key(index.name, "INDEX" if tree.args.get("unique") else "", ())
        key = dataclasses.replace(key, columns=tuple(o.this.name for o in params.args["columns"]))
        where = params.args.get("where")
        where_sql = _sqlite_tree(where.this).sql(dialect="sqlite") if where else None
        order = [bool(o.args.get("desc")) for o in params.args["columns"]]
        return [_index_sql(table, key, order, where_sql)], dataclasses.replace(table, keys=(*table.keys, key))
    if isinstance(tree, exp.Alter) and all(isinstance(a, exp.ColumnDef) for a in tree.args.get("actions") or []):
        found = catalog.get(tree.this.name.lower())
        if found is None:
            raise driver_error("42S02", 4902, f'Cannot find the object "{tree.this.name}" because it does not exist.')
        table = found
        keys: list[Key] = []
        added = tuple(_column_from_ast(a, table.name, keys) for a in tree.args["actions"])
        if keys or any(not c.nullable and c.default is None for c in added):
            raise _unsupported(f"ALTER TABLE ADD of a key or a NOT NULL column without a default: {tsql}")
        table = dataclasses.replace(table, columns=table.columns + added)
        alters = [f"ALTER TABLE {_q(table.name)} ADD COLUMN {_column_sql(table, c)}" for c in added]
        return alters + _normalising_triggers(table), table
    raise _unsupported(f"{type(tree).__name__}: {tsql}")


def _plan(tsql: str, catalog: dict[str, Table]) -> Plan:
    guard = ""
    if match := _GUARD.fullmatch(tsql):
        guard, tsql = match.group(1).split(".")[-1].strip("[]"), match.group(2)
    if match := _APPLOCK.fullmatch(tsql):
        args = {k.lower(): n or s for k, s, n in _APPLOCK_ARG.findall(match.group("args"))}
        throw = {"number": match.group("number") or "", "throw": match.group("message") or ""}
        return Plan(tsql, "applock", writes=False, applock=args | throw | {"select": match.group("select") or ""})
    sql, count = _number_placeholders(tsql)
    try:
        trees = [t for t in sqlglot.parse(sql, read="tsql") if t is not None]
    except sqlglot.ParseError as exc:
        near = (exc.errors[0].get("highlight") if exc.errors else None) or tsql[:20]
        raise driver_error("42000", 102, f"Incorrect syntax near '{near}'.") from None
    if len(trees) != 1 or isinstance(trees[0], exp.Merge):
        raise _unsupported("MERGE" if "MERGE" in tsql.upper() else f"a batch of statements: {tsql}")
    tree, plan = trees[0], Plan(tsql, "write", count, guard=guard)
    if isinstance(tree, exp.Select | exp.SetOperation):
        plan.kind, plan.writes, plan.results = "query", bool(_LOCKING_HINT.search(tsql)), _results(tree, catalog)
    elif isinstance(tree, exp.Insert | exp.Update | exp.Delete):
        plan.verb, plan.assignments = type(tree).__name__.upper(), _assignments(tree)
        target = catalog.get(
            tree.this.this.name.lower() if isinstance(tree.this, exp.Schema) else tree.this.name.lower()
        )
        identity = next((c for c in target.columns if c.identity), None) if target else None
        if isinstance(tree, exp.Insert) and identity and identity.name.lower() in plan.assignments:
            text = f"Cannot insert explicit value for identity column in table '{tree.this.this.name}'"
            raise driver_error("23000", 544, f"{text} when IDENTITY_INSERT is set to OFF.")
    else:
        plan.kind = "ddl"
        plan.statements, plan.saves = _ddl(tree, catalog, tsql)
        return plan
    plan.statements = [_sqlite_tree(tree).sql(dialect="sqlite")]
    return plan


_PLANS: dict[tuple[str, str], Plan] = {}  # (catalog fingerprint, T-SQL) -> plan, shared by every server


# --- the server, its connections and cursors ---------------------------------------------------------

Match = str | re.Pattern[str] | Callable[[str], bool]


@dataclasses.dataclass
class _Fault:
    match: Match | None  # None: every connect
    error: BaseException
    times: int | None

    def hits(self, sql: str) -> bool:
        if isinstance(self.match, str):
            return self.match.lower() in sql.lower()
        if isinstance(self.match, re.Pattern):
            return bool(self.match.search(sql))
        return self.match is None or bool(self.match(sql))


def _take(faults: list[_Fault], sql: str) -> BaseException | None:
    """The first matching fault, spent once; a fresh copy of its error so tracebacks do not pile up."""
    fault = next((f for f in faults if f.hits(sql)), None)
    if fault is None:
        return None
    if fault.times is not None:
        fault.times -= 1
        if fault.times <= 0:
            faults.remove(fault)
    return type(fault.error)(*fault.error.args)


class Server:
    """One Azure SQL database: a SQLite file in `directory`, shared by every connection to it."""

    def __init__(self, directory: str | Path, database: str = "leadagent", host: str = "leadagent-sql") -> None:
        self.directory, self.database, self.host = Path(directory), database, host
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{database}.sqlite3"
        self.tokens: list[str] = []  # access tokens received in connection attribute 1256, in order
        self.executed: list[str] = []  # every statement text sent, in order
        self.connections_open = self.max_concurrent_connections = self.applock_waiters = 0
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._connect_faults: list[_Fault] = []
        self._live: set[Connection] = set()
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS __double_catalog (name TEXT PRIMARY KEY COLLATE NOCASE, spec TEXT)")
        db.close()

    def connect(
        self,
        connection_string: str,
        autocommit: bool = False,
        timeout: int = 0,
        attrs_before: dict[int, Any] | None = None,
        **kwargs: Any,
    ) -> Connection:
        """`pyodbc.connect` to this database; checks the driver, the options and the token as ODBC does."""
        with self._lock:
            fault = _take(self._connect_faults, connection_string)
        if fault is not None:
            raise fault
        options = {k.strip().lower() for k, _, _ in (p.partition("=") for p in connection_string.split(";")) if k}
        if not options & {"driver", "dsn"}:
            text = "[unixODBC][Driver Manager]Data source name not found and no default driver specified"
            raise InterfaceError("IM002", f"[IM002] {text} (0) (SQLDriverConnect)")
        token = bytes((attrs_before or {}).get(1256) or b"")
        if token and options & {"uid", "pwd", "authentication", "trusted_connection"}:
            text = "Cannot use Access Token with any of the following options: Authentication, Integrated Security,"
            raise driver_error("FA005", 0, f"{text} User, Password.", "SQLDriverConnect", server=False)
        if token and (len(token) % 2 or struct.unpack("<I", token[:4])[0] != len(token) - 4):
            raise login_failed()  # the driver sent what it was given; Entra ID could not read it
        connection = Connection(self, autocommit)
        with self._lock:
            self.tokens += [token[4:].decode("utf-16-le")] if token else []
            self._live.add(connection)
            self.connections_open += 1
            self.max_concurrent_connections = max(self.max_concurrent_connections, self.connections_open)
        return connection

    def fail_connect(self, error: BaseException, times: int | None = 1) -> None:
        """The next `times` connects (None: all of them until `clear_faults`) raise `error`."""
        with self._lock:
            self._connect_faults.append(_Fault(None, error, times))

    def fail_on(self, match: Match, error: BaseException, times: int | None = 1) -> None:
        """The next `times` statements matching `match` raise `error` instead of running.

        `match` is a case-insensitive substring, a compiled regex or a predicate on the T-SQL text;
        "COMMIT" also matches `connection.commit()`. A deadlock rolls the transaction back; a
        connection error (08S01, 08001, 10053, 10054, 40613, 40197) drops the connection for good.
        """
        with self._lock:
            self._faults.append(_Fault(match, error, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._connect_faults.clear()

    def failover(self) -> None:
        """Drop every open connection, as a failover does: the next call on each raises 08S01 (10054)."""
        with self._lock:
            for connection in self._live:
                connection._dropped = True

    def _fault_for(self, sql: str) -> BaseException | None:
        with self._lock:
            self.executed.append(sql)
            return _take(self._faults, sql)

    def _count_waiter(self, change: int) -> None:
        with self._lock:
            self.applock_waiters += change

    def _closed(self, connection: Connection) -> None:
        with self._lock:
            self._live.discard(connection)
            self.connections_open -= 1


class Connection:
    """A pyodbc connection: `autocommit`, a query `timeout` in seconds (0: none), commit and rollback."""

    def __init__(self, server: Server, autocommit: bool) -> None:
        self._server, self._autocommit = server, autocommit
        self._db = sqlite3.connect(server.path, isolation_level=None, check_same_thread=False)
        self._db.create_function("__fits", 5, self._fits, deterministic=True)
        self._db.create_function("__norm", 3, _normalise, deterministic=True)
        self._db.create_function("CONCAT", -1, lambda *v: "".join("" if x is None else str(x) for x in v))
        self._db.create_collation("CI_AS", _ci_as)
        self._in_transaction = self.closed = self._broken = self._dropped = False
        self._refusal: Error | None = None
        self._applocks: dict[str, int] = {}
        self._catalog: dict[str, Table] = {}
        self._schema_version, self._fingerprint = -1, ""
        self.timeout = 0

    @property
    def timeout(self) -> int:
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: int) -> None:
        self._timeout = int(seconds)
        self._db.execute(f"PRAGMA busy_timeout = {int((seconds or WAIT_CAP_SECONDS) * 1000)}")

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if value and not self._autocommit:
            self.commit()  # ODBC commits the open transaction when autocommit is switched on
        self._autocommit = bool(value)

    def cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    def execute(self, sql: str, *params: Any) -> Cursor:
        return self.cursor().execute(sql, *params)

    def commit(self) -> None:
        self._check_open()
        self._check_alive("SQLEndTran")
        if (error := self._server._fault_for("COMMIT")) is not None:
            self._fail(error)
        self._end("COMMIT")

    def rollback(self) -> None:
        self._check_open()
        self._check_alive("SQLEndTran")
        self._end("ROLLBACK")

    def close(self) -> None:
        """Rolls back what is open and frees the session (closing twice raises, as pyodbc does)."""
        self._check_open()
        self._end("ROLLBACK")
        self._db.close()
        self.closed = True
        self._server._closed(self)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        """pyodbc's: commit (or roll back) the transaction; the connection stays open."""
        if not self._autocommit:
            self.commit() if exc_type is None else self.rollback()

    def _check_open(self) -> None:
        if self.closed:
            raise ProgrammingError("Attempt to use a closed connection.")

    def _check_alive(self, function: str = "SQLExecDirectW") -> None:
        if self._dropped and not self._broken:
            self._broken = True
            self._end("ROLLBACK")
            raise connection_broken(function)
        if self._broken:
            raise link_failure(function)

    def _end(self, verb: str) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self._db.execute(verb)
        for handle in self._applocks.values():
            os.close(handle)  # closing the descriptor releases its flock
        self._applocks.clear()

    def _fail(self, error: BaseException) -> None:
        """Raise an injected fault with what it does to the session."""
        if _drops_connection(error):
            self._broken = True
            self._end("ROLLBACK")
        elif error.args[0] == "40001":
            self._end("ROLLBACK")  # the deadlock victim's transaction is rolled back
        raise error

    def _begin_write(self) -> None:
        """Writes, DDL and locking reads open the transaction; plain reads before them read committed data."""
        if not self._autocommit and not self._in_transaction:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                raise query_timeout() from None
            self._in_transaction = True

    def _plan(self, tsql: str) -> Plan:
        version = self._db.execute("PRAGMA schema_version").fetchone()[0]
        if version != self._schema_version:
            rows = self._db.execute("SELECT name, spec FROM __double_catalog ORDER BY name").fetchall()
            self._catalog = {name.lower(): Table.from_json(spec) for name, spec in rows}
            self._fingerprint = hashlib.sha256("".join(spec for _, spec in rows).encode()).hexdigest()
            self._schema_version = version
        key = (self._fingerprint, tsql)
        if key not in _PLANS:
            _PLANS[key] = _plan(tsql, self._catalog)
        return _PLANS[key]

    def _fits(self, table: str, column: str, type_: str, size: int | None, value: Any) -> int:
        """The CHECK on every column: records SQL Server's error, for the statement to raise."""
        refusal = _refusal(self._server.database, table, column, type_, size, value)
        self._refusal = refusal or self._refusal
        return int(refusal is None)

    def _run(self, plan: Plan, bound: dict[str, Any]) -> sqlite3.Cursor | None:
        if plan.writes:
            self._begin_write()
        self._refusal, result = None, None
        try:
            for statement in plan.statements:
                result = self._db.execute(statement, bound)
            if plan.saves is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO __double_catalog VALUES (?, ?)", (plan.saves.name, plan.saves.to_json())
                )
        except sqlite3.Error as exc:
            raise self._translate(str(exc), plan) from None
        return result

    def _translate(self, text: str, plan: Plan) -> Error:
        """A SQLite failure as SQL Server reports it."""
        if self._refusal is not None:
            return self._refusal
        if match := re.match(r"NOT NULL constraint failed: ([^.]+)\.(.+)", text):
            table = self._catalog.get(match.group(1).lower()) or Table(match.group(1), ())
            column = table.column(match.group(2)) or Column(match.group(2), "")
            return null_refused(table.name, column.name, plan.verb, self._server.database)
        if match := re.match(r"UNIQUE constraint failed: (?:index '([^']+)'|(.+))", text):
            return self._duplicate(match.group(1), match.group(2), plan)
        if "locked" in text:
            return query_timeout()
        if match := re.match(r"no such table: (?:main\.)?(\S+)", text):
            return driver_error("42S02", 208, f"Invalid object name '{match.group(1)}'.")
        if match := re.match(r"no such column: (\S+)", text):
            return driver_error("42S22", 207, f"Invalid column name '{match.group(1).split('.')[-1]}'.")
        if match := re.match(r"no such function: (\w+)", text):
            return driver_error("42000", 195, f"'{match.group(1)}' is not a recognized built-in function name.")
        if match := re.search(r"(?:table|index) \"?([^\"\s]+)\"? already exists", text):
            return driver_error("42S01", 2714, f"There is already an object named '{match.group(1)}' in the database.")
        return _unsupported(f"this on SQLite ({text}): {plan.tsql}")

    def _duplicate(self, index: str | None, columns: str | None, plan: Plan) -> Error:
        if index:
            table_name, _, key_name = index.partition(".")
            table = self._catalog[table_name.lower()]
            key = next(k for k in table.keys if k.name == key_name)
        else:
            pairs = [part.strip().split(".", 1) for part in (columns or "").split(",")]
            table = self._catalog[pairs[0][0].lower()]
            wanted = {c.lower() for _, c in pairs}
            key = next(k for k in table.keys if k.kind and {c.lower() for c in k.columns} == wanted)
        values = [plan.assignments.get(c.lower(), "…") for c in key.columns]
        shown = ", ".join(_sql_text(plan.raw[v.index] if isinstance(v, Param) else v) for v in values)
        return duplicate_key(table.name, key.name, shown, key.kind)

    def _applock(self, args: dict[str, str]) -> int:
        """sp_getapplock, exclusive and owned by the transaction: 0 granted, 1 granted after waiting,
        -1 timed out (a wait without its own timeout ends at the query timeout: HYT00)."""
        mode, owner = args.get("lockmode", "").lower(), args.get("lockowner", "Transaction").lower()
        if (mode, owner) != ("exclusive", "transaction"):
            raise _unsupported("sp_getapplock other than @LockMode = 'Exclusive', @LockOwner = 'Transaction'")
        if self._autocommit:
            raise _unsupported("a transaction-owned sp_getapplock with autocommit on")
        resource = args["resource"]  # compared byte for byte, as SQL Server compares lock resources
        if resource in self._applocks:
            return 0
        digest = hashlib.sha256(resource.encode()).hexdigest()[:32]
        handle = os.open(self._server.directory / f".applock-{digest}", os.O_RDWR | os.O_CREAT, 0o600)
        wait_ms, query_limit = int(args.get("locktimeout", "-1")), self._timeout or WAIT_CAP_SECONDS
        own_limit = wait_ms >= 0 and wait_ms / 1000 <= query_limit
        deadline = time.monotonic() + (wait_ms / 1000 if own_limit else query_limit)
        waited = False
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._applocks[resource] = handle
                    return int(waited)
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        os.close(handle)
                        if own_limit:
                            return -1
                        raise query_timeout() from None
                    if not waited:
                        waited = True
                        self._server._count_waiter(+1)
                    time.sleep(0.005)
        finally:
            if waited:
                self._server._count_waiter(-1)


class Row(tuple):  # type: ignore[type-arg]
    """pyodbc.Row: a tuple that also answers its column names as attributes."""

    cursor_description: tuple[tuple[Any, ...], ...] = ()

    def __getattr__(self, name: str) -> Any:
        names = [column[0] for column in self.cursor_description]
        if name in names:
            return self[names.index(name)]
        raise AttributeError(name)


class Cursor:
    """A pyodbc cursor: `execute` returns the cursor; rows come back typed as pyodbc types them."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: tuple[tuple[Any, ...], ...] | None = None
        self.rowcount, self.fast_executemany = -1, False
        self._rows: list[Row] = []
        self._closed = False

    def execute(self, sql: str, *params: Any) -> Cursor:
        """Runs one statement; parameters as a sequence or one by one, as pyodbc takes them."""
        if len(params) == 1 and isinstance(params[0], list | tuple | Row):
            params = tuple(params[0])
        self._check()
        connection = self.connection
        self.description, self.rowcount, self._rows = None, -1, []
        if (error := connection._server._fault_for(sql)) is not None:
            connection._fail(error)
        plan = connection._plan(sql)
        if len(params) != plan.params and plan.kind != "applock":
            text = f"The SQL contains {plan.params} parameter markers, but {len(params)} parameters were supplied"
            raise ProgrammingError(text, "HY000")
        if plan.guard and plan.guard.lower() in connection._catalog:
            return self
        if plan.kind == "applock":
            return self._applock(plan)
        plan = dataclasses.replace(plan, raw=params)
        result = connection._run(plan, {f"p{i}": _bind(i, value) for i, value in enumerate(params)})
        if plan.kind == "query" and result is not None:
            names = [column[0] for column in result.description]
            unknown: list[tuple[str, Column | str | None]] = [(name, None) for name in names]
            results = plan.results if len(plan.results) == len(names) else unknown
            self._set_rows(results, result.fetchall())
        elif plan.kind == "write" and result is not None:
            self.rowcount = result.rowcount
        return self

    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[Any]]) -> None:
        if not seq_of_params:
            raise ProgrammingError("The second parameter to executemany must not be empty.")
        for params in seq_of_params:
            self.execute(sql, tuple(params))
        self.rowcount = -1

    def fetchone(self) -> Row | None:
        self._check(results=True)
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Row]:
        self._check(results=True)
        rows, self._rows = self._rows, []
        return rows

    def fetchval(self) -> Any:
        row = self.fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._check()
        self._closed = True

    def __iter__(self) -> Iterator[Row]:
        while (row := self.fetchone()) is not None:
            yield row

    def _check(self, results: bool = False) -> None:
        if self._closed or self.connection.closed:
            raise ProgrammingError(f"Attempt to use a closed {'cursor' if self._closed else 'connection'}.")
        self.connection._check_alive()
        if results and self.description is None:
            raise ProgrammingError("No results.  Previous SQL was not a query.")

    def _applock(self, plan: Plan) -> Cursor:
        granted = self.connection._applock(plan.applock)
        if granted < 0 and plan.applock["throw"]:
            raise driver_error("42000", int(plan.applock["number"]), plan.applock["throw"])
        if plan.applock["select"]:
            self._set_rows([("", "int")], [(granted,)])
        return self

    def _set_rows(self, results: list[tuple[str, Column | str | None]], raw: list[tuple[Any, ...]]) -> None:
        kinds = [kind for _, kind in results]
        values = [tuple(_from_sqlite(v, kinds[i]) for i, v in enumerate(row)) for row in raw]
        types = {"int": int, "DATETIME2": datetime, "BIT": bool} | {t: int for t in _INTS} | {t: str for t in _TEXT}
        description = []
        for i, (name, kind) in enumerate(results):
            column = kind if isinstance(kind, Column) else None
            sample = next((type(row[i]) for row in values if row[i] is not None), str)
            python = types.get(column.type if column else str(kind), sample)
            size = column.size if column else None
            description.append((name, python, None, size, size, 0, column.nullable if column else True))
        self.description = tuple(description)
        self._rows = [Row(row) for row in values]
        for row in self._rows:
            row.cursor_description = self.description

"""The database schema, declared once; the SQLite and Azure SQL (T-SQL) migrations are generated from it.

Each table, column and index says the schema version (`since`) it appeared in, so `migrations(dialect)`
replays the same history on both engines: a table as `CREATE TABLE`, a column added to an existing
table as `ALTER TABLE … ADD`, then the version's indexes and data steps. Azure SQL enforces the declared
types itself; SQLite gets a named column CHECK for each (`ck_<table>_<column>_type`) and for each
bounded text width (`ck_<table>_<column>_len`), so a value one engine refuses the other refuses too.
Text widths are NVARCHAR lengths, counted in UTF-16 code units by `utf16_length`, a deterministic SQL
function every SQLite connection must register before it writes. Times are `DATETIME2(3)` in UTC on
Azure SQL and fixed-width text `YYYY-MM-DDTHH:MM:SS.mmmZ` on SQLite, so text order is time order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Literal

Dialect = Literal["sqlite", "mssql"]


@dataclass(frozen=True)
class Migration:
    """One schema version: statements applied together, in order, in one transaction."""

    version: int
    statements: tuple[str, ...]


class Kind(enum.Enum):
    """What a column holds; each kind is one T-SQL type and one SQLite type plus CHECK."""

    SERIAL = "serial"  # BIGINT IDENTITY(1,1) primary key / INTEGER PRIMARY KEY AUTOINCREMENT
    ID = "id"  # NVARCHAR(64): a Meta id (lead, page, form, ad, …) or a dead-letter id
    TEXT = "text"  # NVARCHAR(length), NVARCHAR(MAX) when length is None
    TIME = "time"  # DATETIME2(3), UTC
    INT = "int"
    BIGINT = "bigint"
    BOOL = "bool"  # BIT: 0 or 1


ID_WIDTH = 64


@dataclass(frozen=True)
class Column:
    """A column; `default` is SQL text (`'open'`, `0`) in a constraint named `default_name` or `df_<table>_<col>`."""

    name: str
    kind: Kind
    length: int | None = None
    nullable: bool = True
    default: str | None = None
    since: int = 1
    default_name: str | None = None


@dataclass(frozen=True)
class Table:
    """A table; its primary key constraint is `pk_<name>`, each unique is (constraint name, columns)."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    uniques: tuple[tuple[str, tuple[str, ...]], ...] = ()
    since: int = 1


@dataclass(frozen=True)
class Index:
    """An index; a column may end with " DESC"; `where` makes it a filtered (partial) index."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None
    since: int = 1


@dataclass(frozen=True)
class DataStep:
    """Statements that move data in a version, after its DDL; written per dialect because the SQL differs."""

    version: int
    sqlite: tuple[str, ...]
    mssql: tuple[str, ...]


def required(
    name: str, kind: Kind, length: int | None = None, *, default: str | None = None, default_name: str | None = None
) -> Column:
    """A NOT NULL column."""
    return Column(name, kind, length, nullable=False, default=default, default_name=default_name)


def optional(name: str, kind: Kind, length: int | None = None, *, since: int = 1) -> Column:
    """A NULL-able column (the only kind a later version may add without a default)."""
    return Column(name, kind, length, nullable=True, since=since)


SERIAL_ID = required("id", Kind.SERIAL)
ID, TEXT, TIME, INT, BIGINT, BOOL = Kind.ID, Kind.TEXT, Kind.TIME, Kind.INT, Kind.BIGINT, Kind.BOOL

# fmt: off
TABLES: dict[str, Table] = {t.name: t for t in (
    Table("leads", (
        SERIAL_ID, required("facebook_lead_id", ID),
        optional("page_id", ID), optional("form_id", ID), optional("ad_id", ID), optional("ad_name", TEXT, 400),
        optional("adset_id", ID), optional("adset_name", TEXT, 400),
        optional("campaign_id", ID), optional("campaign_name", TEXT, 400),
        required("created_time", TIME), optional("is_organic", BOOL), optional("platform", TEXT, 32),
        required("source", TEXT, 16), optional("email", TEXT, 320), optional("full_name", TEXT, 400),
        optional("phone_number", TEXT, 64), required("fields_json", TEXT), required("disclaimers_json", TEXT),
        required("stored_at", TIME),
        optional("webhook_received_at", TIME, since=7),  # when the webhook took the change; NULL when polled
    ), ("id",), (("uq_leads_facebook_lead_id", ("facebook_lead_id",)),)),
    Table("raw_leads", (
        SERIAL_ID, required("facebook_lead_id", ID), required("source", TEXT, 16),
        optional("raw_event", TEXT), required("raw_graph", TEXT), required("received_at", TIME),
    ), ("id",), (("uq_raw_leads_facebook_lead_id", ("facebook_lead_id",)),)),
    Table("audit_log", (
        SERIAL_ID, required("at", TIME), required("action", TEXT, 64),
        optional("facebook_lead_id", ID), optional("source", TEXT, 16), optional("detail", TEXT),
    ), ("id",)),
    Table("failed_events", (
        SERIAL_ID, required("queue", TEXT, 64), required("stage", TEXT, 16), optional("facebook_lead_id", ID),
        required("error", TEXT, 1000), required("attempts", INT), optional("payload", TEXT),
        required("first_failed_at", TIME), required("last_failed_at", TIME),
        required("status", TEXT, 16, default="'open'"),
        optional("dead_letter_id", ID, since=2),
    ), ("id",)),
    Table("state", (
        required("key", TEXT, 200), required("value", TEXT), required("updated_at", TIME),
    ), ("key",)),
    Table("leases", (
        required("name", TEXT, 100), required("owner", TEXT, 64), required("expires_at", TIME),
    ), ("name",), since=2),
    Table("poll_runs", (
        SERIAL_ID, required("trigger", TEXT, 16), required("started_at", TIME), required("finished_at", TIME),
        optional("window_start", TIME), optional("window_end", TIME),
        required("forms_checked", INT), required("leads_seen", INT), required("missing_found", INT),
        required("enqueued", INT), required("graph_calls", INT), required("duration_ms", INT),
        optional("error", TEXT, 1000),
    ), ("id",), since=2),
    Table("incidents", (
        required("kind", TEXT, 64), required("is_open", BOOL), required("opened_at", TIME),
        optional("resolved_at", TIME), optional("detail", TEXT),
    ), ("kind",), since=3),
    Table("notification_outbox", (
        SERIAL_ID, required("kind", TEXT, 16), required("notification_key", TEXT, 200), optional("payload", TEXT),
        required("status", TEXT, 16, default="'pending'", default_name="df_outbox_status"),
        required("created_at", TIME), optional("queued_at", TIME),
    ), ("id",), (("uq_outbox_kind_key", ("kind", "notification_key")),), since=4),
    Table("notification_log", (
        SERIAL_ID, required("notification_key", TEXT, 200), required("kind", TEXT, 16), required("channel", TEXT, 16),
        required("status", TEXT, 16), required("claim_id", TEXT, 64), required("claimed_at", TIME),
        optional("sent_at", TIME), optional("provider_id", TEXT, 400), optional("group_size", INT),
        required("attempts", INT, default="0", default_name="df_notification_attempts"),
        optional("error", TEXT, 1000),
    ), ("id",), (("uq_notification_log", ("notification_key", "kind", "channel")),), since=4),
    Table("email_slots", (
        SERIAL_ID, required("token", TEXT, 64), required("kind", TEXT, 16), required("reserved_at", TIME),
    ), ("id",), since=4),
    Table("lead_counters", (required("name", TEXT, 100), required("value", BIGINT)), ("name",), since=5),
    Table("erased_leads", (
        required("facebook_lead_id", ID), required("erased_at", TIME),
    ), ("facebook_lead_id",), since=5),
    Table("poll_queued", (
        required("facebook_lead_id", ID), required("queued_at", TIME),
    ), ("facebook_lead_id",), since=6),
    Table("deliveries", (
        SERIAL_ID, required("delivery_key", TEXT, 300), required("destination", TEXT, 64),
        required("kind", TEXT, 16), required("subject", TEXT, 200), required("webhook_id", TEXT, 64),
        optional("payload", TEXT),
        required("status", TEXT, 16, default="'pending'", default_name="df_deliveries_status"),
        required("attempts", INT, default="0", default_name="df_deliveries_attempts"),
        required("created_at", TIME), required("due_at", TIME), optional("queued_at", TIME),
        optional("claim_id", TEXT, 64), optional("claimed_at", TIME), optional("delivered_at", TIME),
        optional("last_status", INT), optional("last_error", TEXT, 500),
    ), ("id",), (("uq_deliveries_key", ("delivery_key",)),), since=8),
    Table("lead_stages", (
        SERIAL_ID, required("facebook_lead_id", ID), required("stage", TEXT, 100), required("recorded_at", TIME),
    ), ("id",), (("uq_lead_stages", ("facebook_lead_id", "stage")),), since=8),
)}

INDEXES: tuple[Index, ...] = (
    Index("ix_leads_created_time", "leads", ("created_time DESC", "id DESC")),
    Index("ix_leads_source_stored", "leads", ("source", "stored_at")),
    Index("ix_leads_form_created", "leads", ("form_id", "created_time")),
    Index("ix_audit_log_action_at", "audit_log", ("action", "at")),
    Index("ix_audit_log_lead", "audit_log", ("facebook_lead_id",)),
    Index("ix_failed_events_status", "failed_events", ("status", "first_failed_at")),
    Index("ux_failed_events_dead_letter", "failed_events", ("dead_letter_id",), unique=True,
          where="dead_letter_id IS NOT NULL", since=2),
    Index("ix_failed_events_first_failed", "failed_events", ("first_failed_at",), since=2),
    Index("ix_poll_runs_started", "poll_runs", ("started_at",), since=2),
    Index("ix_outbox_status_created", "notification_outbox", ("status", "created_at"), since=4),
    Index("ix_notification_log_claim", "notification_log", ("claim_id",), since=4),
    Index("ix_notification_log_status_sent", "notification_log", ("status", "sent_at"), since=4),
    Index("ix_email_slots_reserved", "email_slots", ("reserved_at",), since=4),
    Index("ix_leads_stored_at", "leads", ("stored_at",), since=4),
    Index("ix_failed_events_lead", "failed_events", ("facebook_lead_id",), since=5),
    Index("ix_poll_queued_at", "poll_queued", ("queued_at",), since=6),
    # covers the webhook → stored figure of /api/stats/notifications; webhook leads only
    Index("ix_leads_webhook_stored", "leads", ("stored_at", "webhook_received_at"),
          where="webhook_received_at IS NOT NULL", since=7),
    Index("ix_deliveries_status_due", "deliveries", ("status", "due_at"), since=8),
    Index("ix_deliveries_subject", "deliveries", ("subject",), since=8),
)

COUNT_DUPLICATES = (
    "INSERT INTO lead_counters (name, value) SELECT 'duplicates', COUNT(*) FROM audit_log WHERE action = 'duplicate'"
)
DATA_STEPS: tuple[DataStep, ...] = (
    DataStep(5,  # the counters start from the leads and duplicates already stored
        sqlite=("INSERT INTO lead_counters (name, value)"
                " SELECT 'source:' || source, COUNT(*) FROM leads GROUP BY source", COUNT_DUPLICATES),
        mssql=("INSERT INTO lead_counters (name, value)"
               " SELECT CONCAT('source:', source), COUNT(*) FROM leads GROUP BY source", COUNT_DUPLICATES)),
)
# fmt: on


VERSION: int = max(
    [t.since for t in TABLES.values()]
    + [c.since for t in TABLES.values() for c in t.columns]
    + [i.since for i in INDEXES]
    + [s.version for s in DATA_STEPS]
)

RESERVED = frozenset({"key", "trigger"})  # quoted as "key": valid in SQLite and in T-SQL (QUOTED_IDENTIFIER ON)
TIME_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z"
TSQL_TYPES = {
    Kind.SERIAL: "BIGINT IDENTITY(1,1)",
    Kind.TIME: "DATETIME2(3)",
    Kind.INT: "INT",
    Kind.BIGINT: "BIGINT",
    Kind.BOOL: "BIT",
}
SQLITE_INTEGERS = frozenset({Kind.SERIAL, Kind.INT, Kind.BIGINT, Kind.BOOL})


def utf16_length(value: object) -> int | None:
    """How many UTF-16 code units `value` takes as NVARCHAR (a character above U+FFFF counts 2); None for NULL.

    Registered on every SQLite connection as the deterministic SQL function `utf16_length`.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def column(table: str, name: str) -> Column:
    """The declared column `table.name`; `KeyError` when either is not declared."""
    return _find(table, name)


def width(table: str, column: str) -> int | None:
    """The column's NVARCHAR length in UTF-16 code units; None for NVARCHAR(MAX) and non-text columns."""
    return _width(_find(table, column))


def checked_column(constraint: str) -> tuple[str, str] | None:
    """The (table, column) a SQLite `ck_…_type` / `ck_…_len` constraint guards, or None for another name."""
    return _check_owners().get(constraint)


@cache
def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """Versions 1 to `VERSION` in `dialect`: each version's new tables, added columns, indexes, then data steps."""
    return tuple(Migration(v, tuple(_statements(v, dialect))) for v in range(1, VERSION + 1))


def _statements(version: int, dialect: Dialect) -> Iterator[str]:
    for table in TABLES.values():
        if table.since == version:
            yield _create_table(table, version, dialect)
        elif table.since < version:
            for col in table.columns:
                if col.since == version:
                    add = "ADD COLUMN" if dialect == "sqlite" else "ADD"
                    yield f"ALTER TABLE {table.name} {add} {_column_sql(table, col, dialect)}"
    for index in INDEXES:
        if index.since == version:
            keys = ", ".join(_quoted_key(key) for key in index.columns)
            sql = f"CREATE {'UNIQUE ' if index.unique else ''}INDEX {index.name} ON {index.table} ({keys})"
            yield sql + (f" WHERE {index.where}" if index.where else "")
    for step in DATA_STEPS:
        if step.version == version:
            yield from step.sqlite if dialect == "sqlite" else step.mssql


def _create_table(table: Table, version: int, dialect: Dialect) -> str:
    lines = [_column_sql(table, col, dialect) for col in table.columns if col.since <= version]
    if len(table.primary_key) > 1:
        lines.append(f"CONSTRAINT pk_{table.name} PRIMARY KEY ({', '.join(map(quoted, table.primary_key))})")
    lines += [
        f"CONSTRAINT {name} UNIQUE ({', '.join(map(quoted, cols))})" for name, cols in table.uniques if len(cols) > 1
    ]
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {table.name} (\n    {body}\n)"


def _column_sql(table: Table, col: Column, dialect: Dialect) -> str:
    """One column definition with its constraints inline, so `ALTER TABLE … ADD` carries them too."""
    sqlite = dialect == "sqlite"
    parts = [quoted(col.name), _sqlite_type(col) if sqlite else _tsql_type(col)]
    parts.append("NOT NULL" if not col.nullable else "" if sqlite else "NULL")
    if table.primary_key == (col.name,):
        autoincrement = " AUTOINCREMENT" if sqlite and col.kind is Kind.SERIAL else ""
        parts.append(f"CONSTRAINT pk_{table.name} PRIMARY KEY{autoincrement}")
    parts += [f"CONSTRAINT {name} UNIQUE" for name, cols in table.uniques if cols == (col.name,)]
    if col.default is not None:
        parts.append(f"CONSTRAINT {col.default_name or f'df_{table.name}_{col.name}'} DEFAULT {col.default}")
    if sqlite:
        parts += [f"CONSTRAINT {name} CHECK ({rule})" for name, rule in _sqlite_checks(table, col)]
    return " ".join(part for part in parts if part)


def _sqlite_checks(table: Table, col: Column) -> list[tuple[str, str]]:
    """The CHECKs that make SQLite refuse what the column's T-SQL type refuses; NULL passes them."""
    c = quoted(col.name)
    rule = {
        Kind.ID: f"typeof({c}) = 'text'",
        Kind.TEXT: f"typeof({c}) = 'text'",
        Kind.INT: f"typeof({c}) = 'integer' AND {c} BETWEEN -2147483648 AND 2147483647",
        Kind.BIGINT: f"typeof({c}) = 'integer'",
        Kind.BOOL: f"{c} IN (0, 1)",
        # the pattern fixes the format; the round trip through SQLite's calendar refuses 2025-02-30 and 24:00
        Kind.TIME: f"{c} GLOB '{TIME_GLOB}' AND strftime('%Y-%m-%dT%H:%M:%fZ', {c}, '+0 days') IS {c}",
    }.get(col.kind)
    checks = []
    if rule is not None:
        checks.append((f"ck_{table.name}_{col.name}_type", f"{c} IS NULL OR ({rule})" if col.nullable else rule))
    limit = _width(col)
    if limit is not None:
        # A text of n characters has at most 2n UTF-16 code units: only a long one needs the exact count.
        checks.append(
            (f"ck_{table.name}_{col.name}_len", f"length({c}) * 2 <= {limit} OR utf16_length({c}) <= {limit}")
        )
    return checks


@cache
def _check_owners() -> dict[str, tuple[str, str]]:
    return {
        name: (table.name, col.name)
        for table in TABLES.values()
        for col in table.columns
        for name, _ in _sqlite_checks(table, col)
    }


def _find(table: str, name: str) -> Column:
    for col in TABLES[table].columns:
        if col.name == name:
            return col
    raise KeyError(f"{table}.{name}")


def _width(col: Column) -> int | None:
    return ID_WIDTH if col.kind is Kind.ID else col.length if col.kind is Kind.TEXT else None


def _tsql_type(col: Column) -> str:
    if col.kind in (Kind.ID, Kind.TEXT):
        return f"NVARCHAR({_width(col) or 'MAX'})"
    return TSQL_TYPES[col.kind]


def _sqlite_type(col: Column) -> str:
    return "INTEGER" if col.kind in SQLITE_INTEGERS else "TEXT"


def quoted(name: str) -> str:
    """A column name as SQL: reserved words in double quotes."""
    return f'"{name}"' if name in RESERVED else name


def _quoted_key(key: str) -> str:
    name, _, order = key.partition(" ")
    return f"{quoted(name)} {order}".rstrip()

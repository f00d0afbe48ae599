"""The one schema declaration: its T-SQL is what created the deployed Azure SQL databases, and the
SQLite file it creates has exactly the declared shape and refuses what Azure SQL refuses."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlglot

from shared.store.schema import (
    INDEXES,
    TABLES,
    VERSION,
    Kind,
    Migration,
    checked_column,
    column,
    migrations,
    quoted,
    utf16_length,
    width,
)

TSQL_CASES = [(f"v{m.version}-{i}", sql) for m in migrations("mssql") for i, sql in enumerate(m.statements)]
SQLITE_TYPES = {Kind.SERIAL: "INTEGER", Kind.INT: "INTEGER", Kind.BIGINT: "INTEGER", Kind.BOOL: "INTEGER"}
VALID = {Kind.ID: "1", Kind.TEXT: "x", Kind.TIME: "2025-01-01T00:00:00.000Z", Kind.INT: 0, Kind.BIGINT: 0, Kind.BOOL: 0}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A fresh SQLite file migrated to the latest version, as the SQLite backend opens it."""
    conn = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    conn.create_function("utf16_length", 1, utf16_length, deterministic=True)
    for migration in migrations("sqlite"):
        for statement in migration.statements:
            conn.execute(statement)
    yield conn
    conn.close()


def insert(db: sqlite3.Connection, table: str, **values: Any) -> None:
    """One row into `table`: valid values for its required columns without a default, overridden by `values`."""
    columns = TABLES[table].columns
    row = {c.name: VALID[c.kind] for c in columns if not c.nullable and c.default is None and c.kind is not Kind.SERIAL}
    row.update(values)
    names, marks = ", ".join(map(quoted, row)), ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))  # noqa: S608


def refusal(db: sqlite3.Connection, table: str, **values: Any) -> str:
    with pytest.raises(sqlite3.IntegrityError) as refused:
        insert(db, table, **values)
    return str(refused.value)


def canonical(sql: str) -> str:
    return sqlglot.parse_one(sql, read="tsql").sql(dialect="tsql")


# --- T-SQL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "sql"), TSQL_CASES, ids=[c[0] for c in TSQL_CASES])
def test_every_generated_tsql_statement_parses_as_tsql(name, sql):
    assert sqlglot.parse(sql, read="tsql", error_level=sqlglot.ErrorLevel.RAISE)


def test_generated_tsql_is_the_ddl_that_created_the_deployed_azure_sql_databases():
    generated = migrations("mssql")
    assert [m.version for m in generated] == [m.version for m in LEGACY_TSQL]
    for ours, legacy in zip(generated, LEGACY_TSQL, strict=True):
        assert sorted(map(canonical, ours.statements)) == sorted(map(canonical, legacy.statements)), ours.version


def test_no_sqlite_only_syntax_is_in_the_tsql():
    for name, sql in TSQL_CASES:
        for sqlite_only in ("AUTOINCREMENT", "ADD COLUMN", "typeof(", "utf16_length", "GLOB", "strftime", " || "):
            assert sqlite_only not in sql, f"{name} uses {sqlite_only}"


def test_both_dialects_yield_versions_one_to_the_latest():
    assert VERSION == 8
    versions = [1, 2, 3, 4, 5, 6, 7, 8]
    assert [m.version for m in migrations("sqlite")] == [m.version for m in migrations("mssql")] == versions


def test_a_column_added_later_is_an_alter_table_in_its_own_version():
    for dialect, add in (("sqlite", "ADD COLUMN"), ("mssql", "ADD")):
        first, second = migrations(dialect)[0], migrations(dialect)[1]
        create = next(s for s in first.statements if s.startswith("CREATE TABLE failed_events "))
        assert "dead_letter_id" not in create
        assert any(s.startswith(f"ALTER TABLE failed_events {add} dead_letter_id ") for s in second.statements)


# --- the declaration --------------------------------------------------------------------------


def test_the_declaration_is_consistent():
    for table in TABLES.values():
        names = [c.name for c in table.columns]
        assert len(names) == len(set(names)), table.name
        keyed = set(table.primary_key).union(*(cols for _, cols in table.uniques))
        assert keyed <= set(names), table.name
        for col in table.columns:
            if col.since > table.since:  # ALTER TABLE ADD: no key, and NOT NULL only with a default
                assert col.name not in keyed and (col.nullable or col.default is not None), col.name
    for index in INDEXES:
        assert index.since >= TABLES[index.table].since, index.name
        for key in index.columns:
            assert column(index.table, key.removesuffix(" DESC")).since <= index.since, index.name


def test_a_lead_keeps_an_optional_webhook_receive_time_that_must_be_a_utc_time(db):
    insert(db, "leads", facebook_lead_id="1")  # a polled lead has none
    insert(db, "leads", facebook_lead_id="2", webhook_received_at="2026-11-27T10:00:00.125Z")
    assert db.execute("SELECT webhook_received_at FROM leads ORDER BY id").fetchall() == [
        (None,),
        ("2026-11-27T10:00:00.125Z",),
    ]
    for bad in ("2026-11-27 10:00:00", "2026-02-30T10:00:00.000Z", 1790000000):
        assert "ck_leads_webhook_received_at_type" in refusal(
            db, "leads", facebook_lead_id="3", webhook_received_at=bad
        ), bad


def test_width_is_the_nvarchar_length_and_none_for_max_or_non_text():
    assert width("leads", "email") == 320
    assert width("leads", "facebook_lead_id") == 64
    assert width("failed_events", "error") == 1000
    assert width("leads", "fields_json") is None
    assert width("leads", "created_time") is None
    assert width("failed_events", "attempts") is None


def test_width_of_an_undeclared_table_or_column_is_a_key_error():
    with pytest.raises(KeyError):
        width("leads", "no_such_column")
    with pytest.raises(KeyError):
        width("no_such_table", "id")


def test_utf16_length_counts_a_character_above_u_ffff_as_two():
    assert utf16_length("abc") == 3
    assert utf16_length("é") == 1
    assert utf16_length("😀") == 2
    assert utf16_length(None) is None


# --- SQLite: exactly the declared shape ---------------------------------------------------------


def test_a_fresh_sqlite_file_has_exactly_the_declared_tables_and_columns(db):
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    actual = {t: [r[1:] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables if not t.startswith("sqlite_")}
    expected = {
        t.name: [
            (
                c.name,
                SQLITE_TYPES.get(c.kind, "TEXT"),
                int(not c.nullable),
                c.default,
                t.primary_key.index(c.name) + 1 if c.name in t.primary_key else 0,
            )
            for c in t.columns
        ]
        for t in TABLES.values()
    }
    assert actual == expected


def test_a_fresh_sqlite_file_has_exactly_the_declared_keys_and_indexes(db):
    for table in TABLES.values():
        actual: set[tuple[Any, ...]] = set()
        for _, name, unique, origin, partial in db.execute(f"PRAGMA index_list({table.name})"):
            keys = tuple((r[2], r[3]) for r in db.execute(f"PRAGMA index_xinfo({name})") if r[5])
            actual.add((name, bool(unique), bool(partial), keys) if origin == "c" else (origin, keys))
        expected: set[tuple[Any, ...]] = {("u", tuple((c, 0) for c in cols)) for _, cols in table.uniques}
        if table.primary_key != ("id",):  # the rowid alias has no index
            expected.add(("pk", tuple((c, 0) for c in table.primary_key)))
        for index in (i for i in INDEXES if i.table == table.name):
            keys = tuple((k.removesuffix(" DESC"), int(k.endswith(" DESC"))) for k in index.columns)
            expected.add((index.name, index.unique, index.where is not None, keys))
        assert actual == expected, table.name


def test_a_fresh_sqlite_file_has_a_named_check_for_each_type_and_width(db):
    ddl = " ".join(r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"))
    actual = set(re.findall(r"CONSTRAINT (ck_\w+) CHECK", ddl))
    expected = {f"ck_{t.name}_{c.name}_type" for t in TABLES.values() for c in t.columns if c.kind is not Kind.SERIAL}
    expected |= {f"ck_{t.name}_{c.name}_len" for t in TABLES.values() for c in t.columns if width(t.name, c.name)}
    assert actual == expected
    assert {checked_column(name) for name in actual} == {
        (t.name, c.name) for t in TABLES.values() for c in t.columns if c.kind is not Kind.SERIAL
    }
    assert checked_column("uq_leads_facebook_lead_id") is None


# --- SQLite: refuses what Azure SQL refuses -----------------------------------------------------


def test_text_as_long_as_its_width_is_accepted(db):
    insert(db, "leads", email="a" * 320)


def test_text_longer_than_its_width_is_refused_by_the_named_length_check(db):
    assert "ck_leads_email_len" in refusal(db, "leads", email="a" * 321)


def test_an_emoji_counts_two_units_towards_the_width(db):
    insert(db, "leads", facebook_lead_id="1", source="😀" * 8)
    assert "ck_leads_source_len" in refusal(db, "leads", facebook_lead_id="2", source="a" + "😀" * 8)


def test_bytes_are_refused_by_a_text_column(db):
    assert "ck_leads_email_type" in refusal(db, "leads", email=b"a@example.com")


def test_a_float_is_refused_by_an_int_column(db):
    assert "ck_failed_events_attempts_type" in refusal(db, "failed_events", attempts=1.5)


def test_an_int_column_takes_the_int_range_and_refuses_2_to_the_31(db):
    insert(db, "failed_events", attempts=2**31 - 1)
    insert(db, "failed_events", attempts=-(2**31))
    assert "ck_failed_events_attempts_type" in refusal(db, "failed_events", attempts=2**31)


def test_a_bigint_column_takes_2_to_the_31(db):
    insert(db, "lead_counters", value=2**31)


def test_2_is_refused_by_a_bool_column(db):
    assert "ck_incidents_is_open_type" in refusal(db, "incidents", is_open=2)


def test_a_time_not_in_the_fixed_width_format_is_refused(db):
    for bad in ("2025-01-01 00:00:00", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00.000+00:00", 1735689600):
        assert "ck_poll_queued_queued_at_type" in refusal(db, "poll_queued", queued_at=bad), bad


def test_a_time_that_is_not_on_the_calendar_is_refused(db):
    for bad in ("2025-02-29T00:00:00.000Z", "2025-13-01T00:00:00.000Z", "2025-01-01T24:00:00.000Z"):
        assert "ck_poll_queued_queued_at_type" in refusal(db, "poll_queued", queued_at=bad), bad


def test_every_millisecond_as_the_sqlite_backend_writes_it_is_accepted(db):
    start = datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    times = [start + timedelta(milliseconds=ms) for ms in range(1000)]
    for i, at in enumerate(times):
        insert(db, "poll_queued", facebook_lead_id=str(i), queued_at=at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z")


def test_null_passes_the_checks_of_a_nullable_column(db):
    nullable = {c.name: None for c in TABLES["leads"].columns if c.nullable}
    insert(db, "leads", **nullable)


def test_null_in_a_required_column_is_refused_as_not_null(db):
    assert "NOT NULL constraint failed: leads.source" in refusal(db, "leads", source=None)


def test_a_declared_default_fills_an_omitted_column(db):
    insert(db, "failed_events")
    assert db.execute("SELECT status FROM failed_events").fetchone() == ("open",)


# --- the DDL that created the deployed databases (frozen from shared/store/mssql_schema.py, version 6; 7 added) ---

ID = "NVARCHAR(64)"
TIME = "DATETIME2(3)"

LEGACY_TSQL = (
    Migration(
        1,
        (
            f"""CREATE TABLE leads (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_leads PRIMARY KEY,
                facebook_lead_id {ID} NOT NULL CONSTRAINT uq_leads_facebook_lead_id UNIQUE,
                page_id {ID} NULL, form_id {ID} NULL, ad_id {ID} NULL, ad_name NVARCHAR(400) NULL,
                adset_id {ID} NULL, adset_name NVARCHAR(400) NULL, campaign_id {ID} NULL,
                campaign_name NVARCHAR(400) NULL,
                created_time {TIME} NOT NULL,
                is_organic BIT NULL, platform NVARCHAR(32) NULL,
                source NVARCHAR(16) NOT NULL,
                email NVARCHAR(320) NULL, full_name NVARCHAR(400) NULL, phone_number NVARCHAR(64) NULL,
                fields_json NVARCHAR(MAX) NOT NULL,
                disclaimers_json NVARCHAR(MAX) NOT NULL,
                stored_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_leads_created_time ON leads (created_time DESC, id DESC)",
            "CREATE INDEX ix_leads_source_stored ON leads (source, stored_at)",
            "CREATE INDEX ix_leads_form_created ON leads (form_id, created_time)",
            f"""CREATE TABLE raw_leads (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_raw_leads PRIMARY KEY,
                facebook_lead_id {ID} NOT NULL CONSTRAINT uq_raw_leads_facebook_lead_id UNIQUE,
                source NVARCHAR(16) NOT NULL,
                raw_event NVARCHAR(MAX) NULL,
                raw_graph NVARCHAR(MAX) NOT NULL,
                received_at {TIME} NOT NULL
            )""",
            f"""CREATE TABLE audit_log (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_audit_log PRIMARY KEY,
                at {TIME} NOT NULL,
                action NVARCHAR(64) NOT NULL,
                facebook_lead_id {ID} NULL,
                source NVARCHAR(16) NULL,
                detail NVARCHAR(MAX) NULL
            )""",
            "CREATE INDEX ix_audit_log_action_at ON audit_log (action, at)",
            "CREATE INDEX ix_audit_log_lead ON audit_log (facebook_lead_id)",
            f"""CREATE TABLE failed_events (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_failed_events PRIMARY KEY,
                queue NVARCHAR(64) NOT NULL,
                stage NVARCHAR(16) NOT NULL,
                facebook_lead_id {ID} NULL,
                error NVARCHAR(1000) NOT NULL,
                attempts INT NOT NULL,
                payload NVARCHAR(MAX) NULL,
                first_failed_at {TIME} NOT NULL,
                last_failed_at {TIME} NOT NULL,
                status NVARCHAR(16) NOT NULL CONSTRAINT df_failed_events_status DEFAULT 'open'
            )""",
            "CREATE INDEX ix_failed_events_status ON failed_events (status, first_failed_at)",
            f"""CREATE TABLE state (
                [key] NVARCHAR(200) NOT NULL CONSTRAINT pk_state PRIMARY KEY,
                value NVARCHAR(MAX) NOT NULL,
                updated_at {TIME} NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        (
            "ALTER TABLE failed_events ADD dead_letter_id NVARCHAR(64) NULL",
            "CREATE UNIQUE INDEX ux_failed_events_dead_letter ON failed_events (dead_letter_id)"
            " WHERE dead_letter_id IS NOT NULL",
            "CREATE INDEX ix_failed_events_first_failed ON failed_events (first_failed_at)",
            f"""CREATE TABLE leases (
                name NVARCHAR(100) NOT NULL CONSTRAINT pk_leases PRIMARY KEY,
                owner NVARCHAR(64) NOT NULL,
                expires_at {TIME} NOT NULL
            )""",
            f"""CREATE TABLE poll_runs (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_poll_runs PRIMARY KEY,
                [trigger] NVARCHAR(16) NOT NULL,
                started_at {TIME} NOT NULL,
                finished_at {TIME} NOT NULL,
                window_start {TIME} NULL,
                window_end {TIME} NULL,
                forms_checked INT NOT NULL,
                leads_seen INT NOT NULL,
                missing_found INT NOT NULL,
                enqueued INT NOT NULL,
                graph_calls INT NOT NULL,
                duration_ms INT NOT NULL,
                error NVARCHAR(1000) NULL
            )""",
            "CREATE INDEX ix_poll_runs_started ON poll_runs (started_at)",
        ),
    ),
    Migration(
        3,
        (
            f"""CREATE TABLE incidents (
                kind NVARCHAR(64) NOT NULL CONSTRAINT pk_incidents PRIMARY KEY,
                is_open BIT NOT NULL,
                opened_at {TIME} NOT NULL,
                resolved_at {TIME} NULL,
                detail NVARCHAR(MAX) NULL
            )""",
        ),
    ),
    Migration(
        4,
        (
            f"""CREATE TABLE notification_outbox (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_notification_outbox PRIMARY KEY,
                kind NVARCHAR(16) NOT NULL,
                notification_key NVARCHAR(200) NOT NULL,
                payload NVARCHAR(MAX) NULL,
                status NVARCHAR(16) NOT NULL CONSTRAINT df_outbox_status DEFAULT 'pending',
                created_at {TIME} NOT NULL,
                queued_at {TIME} NULL,
                CONSTRAINT uq_outbox_kind_key UNIQUE (kind, notification_key)
            )""",
            "CREATE INDEX ix_outbox_status_created ON notification_outbox (status, created_at)",
            f"""CREATE TABLE notification_log (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_notification_log PRIMARY KEY,
                notification_key NVARCHAR(200) NOT NULL,
                kind NVARCHAR(16) NOT NULL,
                channel NVARCHAR(16) NOT NULL,
                status NVARCHAR(16) NOT NULL,
                claim_id NVARCHAR(64) NOT NULL,
                claimed_at {TIME} NOT NULL,
                sent_at {TIME} NULL,
                provider_id NVARCHAR(400) NULL,
                group_size INT NULL,
                attempts INT NOT NULL CONSTRAINT df_notification_attempts DEFAULT 0,
                error NVARCHAR(1000) NULL,
                CONSTRAINT uq_notification_log UNIQUE (notification_key, kind, channel)
            )""",
            "CREATE INDEX ix_notification_log_claim ON notification_log (claim_id)",
            "CREATE INDEX ix_notification_log_status_sent ON notification_log (status, sent_at)",
            f"""CREATE TABLE email_slots (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_email_slots PRIMARY KEY,
                token NVARCHAR(64) NOT NULL,
                kind NVARCHAR(16) NOT NULL,
                reserved_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_email_slots_reserved ON email_slots (reserved_at)",
            "CREATE INDEX ix_leads_stored_at ON leads (stored_at)",
        ),
    ),
    Migration(
        5,
        (
            "CREATE TABLE lead_counters (name NVARCHAR(100) NOT NULL CONSTRAINT pk_lead_counters PRIMARY KEY,"
            " value BIGINT NOT NULL)",
            "INSERT INTO lead_counters (name, value)"
            " SELECT CONCAT('source:', source), COUNT(*) FROM leads GROUP BY source",
            "INSERT INTO lead_counters (name, value)"
            " SELECT 'duplicates', COUNT(*) FROM audit_log WHERE action = 'duplicate'",
            f"""CREATE TABLE erased_leads (
                facebook_lead_id {ID} NOT NULL CONSTRAINT pk_erased_leads PRIMARY KEY,
                erased_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_failed_events_lead ON failed_events (facebook_lead_id)",
        ),
    ),
    Migration(
        6,
        (
            f"""CREATE TABLE poll_queued (
                facebook_lead_id {ID} NOT NULL CONSTRAINT pk_poll_queued PRIMARY KEY,
                queued_at {TIME} NOT NULL
            )""",
            "CREATE INDEX ix_poll_queued_at ON poll_queued (queued_at)",
        ),
    ),
    Migration(  # the webhook's receive time, for the webhook → row committed figure
        7,
        (
            f"ALTER TABLE leads ADD webhook_received_at {TIME} NULL",
            "CREATE INDEX ix_leads_webhook_stored ON leads (stored_at, webhook_received_at)"
            " WHERE webhook_received_at IS NOT NULL",
        ),
    ),
    Migration(  # deliveries beyond email (signed webhooks, Slack, Teams, Conversions API) and lead stages
        8,
        (
            f"""CREATE TABLE deliveries (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_deliveries PRIMARY KEY,
                delivery_key NVARCHAR(300) NOT NULL CONSTRAINT uq_deliveries_key UNIQUE,
                destination NVARCHAR(64) NOT NULL,
                kind NVARCHAR(16) NOT NULL,
                subject NVARCHAR(200) NOT NULL,
                webhook_id NVARCHAR(64) NOT NULL,
                payload NVARCHAR(MAX) NULL,
                status NVARCHAR(16) NOT NULL CONSTRAINT df_deliveries_status DEFAULT 'pending',
                attempts INT NOT NULL CONSTRAINT df_deliveries_attempts DEFAULT 0,
                created_at {TIME} NOT NULL,
                due_at {TIME} NOT NULL,
                queued_at {TIME} NULL,
                claim_id NVARCHAR(64) NULL,
                claimed_at {TIME} NULL,
                delivered_at {TIME} NULL,
                last_status INT NULL,
                last_error NVARCHAR(500) NULL
            )""",
            f"""CREATE TABLE lead_stages (
                id BIGINT IDENTITY(1,1) NOT NULL CONSTRAINT pk_lead_stages PRIMARY KEY,
                facebook_lead_id {ID} NOT NULL,
                stage NVARCHAR(100) NOT NULL,
                recorded_at {TIME} NOT NULL,
                CONSTRAINT uq_lead_stages UNIQUE (facebook_lead_id, stage)
            )""",
            "CREATE INDEX ix_deliveries_status_due ON deliveries (status, due_at)",
            "CREATE INDEX ix_deliveries_subject ON deliveries (subject)",
        ),
    ),
)

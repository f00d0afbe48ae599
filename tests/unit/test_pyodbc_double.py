"""The pyodbc double behaves like pyodbc + ODBC Driver 18 + Azure SQL on our real schema.

The DDL is what production runs (`schema.migrations("mssql")`), the lock is the backend's own
`MIGRATION_LOCK`, and the Azure SQL backend migrates and stores leads through the double (every store
statement runs on it in `tests/integration/test_store_contract.py`). The behaviour tests write their
T-SQL in the forms the stores use (TOP, OFFSET … FETCH, CONVERT,
UPDLOCK hints, INSERT … SELECT … WHERE).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.store import Store
from shared.store.database import CURRENT_VERSION, ENSURE_VERSIONS, RECORD_VERSION
from shared.store.leads import AlreadyStored, Stored
from shared.store.mssql import MIGRATION_LOCK, MssqlBackend, pack_token
from shared.store.schema import migrations
from tests.support import pyodbc_double as odbc
from tests.support.leads import graph_lead_payload, normalised
from tests.support.waiting import wait_until

CONNECTION_STRING = "Driver={ODBC Driver 18 for SQL Server};Server=tcp:leadagent-sql.database.windows.net,1433;"
NOW = datetime(2024, 5, 1, 12, 30, 15, 123456)
DAY = timedelta(days=1)
LEAD_COLUMNS = (
    "facebook_lead_id, page_id, form_id, ad_id, ad_name, adset_id, adset_name, campaign_id, campaign_name,"
    " created_time, is_organic, platform, source, email, full_name, phone_number, fields_json, disclaimers_json,"
    " stored_at"
)
INSERT_LEAD = f"INSERT INTO leads ({LEAD_COLUMNS}) VALUES ({', '.join(['?'] * 19)})"  # noqa: S608 - constants
INSERT_FAILED = (
    "INSERT INTO failed_events (queue, stage, facebook_lead_id, error, attempts, payload, first_failed_at,"
    " last_failed_at, dead_letter_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
RESERVE_SLOT = (
    "INSERT INTO email_slots (token, kind, reserved_at) SELECT ?, ?, ?"
    " WHERE (SELECT COUNT(*) FROM email_slots WITH (UPDLOCK, HOLDLOCK) WHERE reserved_at > ?) < ?"
)
COUNT_BETWEEN = "SELECT COUNT(*) FROM leads WHERE created_time >= ? AND created_time < ?"
APPLOCK = (
    "DECLARE @granted INT; EXEC @granted = sp_getapplock @Resource = N'lead-agent-schema', @LockMode = 'Exclusive',"
    " @LockOwner = 'Transaction', @LockTimeout = {timeout}; SELECT @granted"
)
MERGE_STATE = (
    "MERGE state WITH (HOLDLOCK) AS t USING (SELECT ? AS k, ? AS v, ? AS u) AS s ON t.[key] = s.k"
    " WHEN MATCHED THEN UPDATE SET value = s.v, updated_at = s.u"
    " WHEN NOT MATCHED THEN INSERT ([key], value, updated_at) VALUES (s.k, s.v, s.u);"
)


def connect(server: odbc.Server, attrs_before: dict[int, bytes] | None = None) -> odbc.Connection:
    """As `MssqlBackend` connects."""
    return server.connect(CONNECTION_STRING, autocommit=False, timeout=15, attrs_before=attrs_before or {})


def lead(lead_id: str = "1234567890123456", phone: str | None = "+1 555 0100", **changes: object) -> list[object]:
    values = {
        "facebook_lead_id": lead_id, "page_id": "p1", "form_id": "f1", "ad_id": "a1", "ad_name": None,
        "adset_id": None, "adset_name": None, "campaign_id": None, "campaign_name": None, "created_time": NOW,
        "is_organic": True, "platform": "fb", "source": "webhook", "email": "ann@example.com", "full_name": "Ann",
        "phone_number": phone, "fields_json": "{}", "disclaimers_json": "[]", "stored_at": NOW,
    }  # fmt: skip
    return list((values | changes).values())


def failed_event(lead_id: str = "1", attempts: int = 1, dead_letter: str | None = None) -> tuple[object, ...]:
    return ("leads", "fetch", lead_id, "boom", attempts, None, NOW, NOW, dead_letter)


def migrate(database: odbc.Server) -> None:
    """Every migration, as `Database.migrate` applies them on Azure SQL."""
    connection = connect(database)
    connection.execute(MIGRATION_LOCK)
    connection.execute(ENSURE_VERSIONS.for_dialect("mssql"))
    for migration in migrations("mssql"):
        for statement in migration.statements:
            connection.execute(statement)
        connection.execute(RECORD_VERSION, (migration.version, NOW))
    connection.commit()
    connection.close()


@pytest.fixture(scope="module")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = odbc.Server(tmp_path_factory.mktemp("template"))
    migrate(database)
    return database.path


@pytest.fixture
def server(migrated_file: Path, tmp_path: Path) -> odbc.Server:
    """A migrated database: a copy of one migrated file, so each test starts from the same schema."""
    (tmp_path / "azure-sql").mkdir()
    shutil.copyfile(migrated_file, tmp_path / "azure-sql" / migrated_file.name)
    return odbc.Server(tmp_path / "azure-sql")


@pytest.fixture
def cursor(server: odbc.Server):
    connection = connect(server)
    yield connection.cursor()
    if not connection.closed:
        connection.close()


# --- the real schema, statements and backend -------------------------------------------------------------


def test_every_generated_migration_runs_and_the_guarded_create_is_idempotent(tmp_path):
    database = odbc.Server(tmp_path)
    migrate(database)
    connection = connect(database)
    connection.execute(ENSURE_VERSIONS.for_dialect("mssql"))
    assert connection.execute(CURRENT_VERSION).fetchval() == migrations("mssql")[-1].version


def test_merge_is_refused_by_name(cursor):
    with pytest.raises(odbc.NotSupportedError, match="MERGE"):
        cursor.execute(MERGE_STATE, "k", "v", NOW)


def test_the_azure_sql_backend_migrates_from_three_instances_and_stores_a_lead_once(tmp_path):
    database = odbc.Server(tmp_path)

    def store() -> Store:
        backend = MssqlBackend(CONNECTION_STRING, pool_size=2, connect=database.connect, sleep=lambda _: None)
        return Store(backend)

    versions: list[int] = []
    instances = [threading.Thread(target=lambda: versions.append(store().migrate())) for _ in range(3)]
    for instance in instances:
        instance.start()
    for instance in instances:
        instance.join(timeout=60)
    assert versions == [migrations("mssql")[-1].version] * 3
    first, again = (
        store().leads.store_lead(normalised("9000000000000001"), None, graph_lead_payload("9000000000000001"))
        for _ in range(2)
    )
    assert (type(first), type(again)) == (Stored, AlreadyStored)


def test_state_survives_in_the_file_for_a_new_server_on_the_same_directory(server, tmp_path):
    with connect(server) as connection:
        connection.execute(INSERT_LEAD, lead())
    again = odbc.Server(tmp_path / "azure-sql")
    assert connect(again).execute("SELECT COUNT(*) FROM leads").fetchval() == 1
    with pytest.raises(odbc.DataError, match=r"\(2628\)"):
        connect(again).execute(INSERT_LEAD, lead("2", phone="9" * 65))


# --- limits and constraints, as SQL Server enforces them ----------------------------------------------


def test_an_over_long_phone_number_is_refused_with_2628_quoting_the_truncated_value(cursor):
    phone = "+1 555 " + "0123456789" * 7
    with pytest.raises(odbc.DataError) as refused:
        cursor.execute(INSERT_LEAD, lead(phone=phone))
    assert refused.value.args == (
        "22001",
        "[22001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]String or binary data would be truncated"
        f" in table 'leadagent.dbo.leads', column 'phone_number'. Truncated value: '{phone[:64]}'."
        " (2628) (SQLExecDirectW)",
    )
    assert refused.value.args == odbc.truncation("leads", "phone_number", phone[:64]).args


def test_nvarchar_lengths_count_utf16_code_units(cursor):
    cursor.execute(INSERT_LEAD, lead("1", phone="😀" * 32))  # 64 code units: fits
    with pytest.raises(odbc.DataError, match=r"\(2628\)"):
        cursor.execute(INSERT_LEAD, lead("2", phone="😀" * 32 + "1"))


def test_spaces_beyond_the_length_are_trimmed_silently(cursor):
    cursor.execute(INSERT_LEAD, lead(phone="+1 555 0100" + " " * 80))
    assert cursor.execute("SELECT phone_number FROM leads").fetchval() == "+1 555 0100" + " " * 53


def test_insert_select_with_parameters_is_checked(cursor):
    with pytest.raises(odbc.DataError, match=r"table 'leadagent.dbo.email_slots', column 'token'"):
        cursor.execute(RESERVE_SLOT, "t" * 65, "lead", NOW, NOW, 5)


def test_update_set_parameters_are_checked(cursor):
    cursor.execute(INSERT_FAILED, failed_event())
    with pytest.raises(odbc.DataError, match=r"column 'status'"):
        cursor.execute("UPDATE failed_events SET status = ?, last_failed_at = ? WHERE id = ?", "x" * 17, NOW, 1)
    with pytest.raises(odbc.DataError, match=r"converting expression to data type int\. \(8115\)"):
        cursor.execute("UPDATE failed_events SET attempts = ? WHERE id = ?", 2**31, 1)


def test_int_is_32_bit_and_bigint_64_bit(cursor):
    cursor.execute(INSERT_FAILED, failed_event(attempts=2**31 - 1))
    with pytest.raises(odbc.DataError) as refused:
        cursor.execute(INSERT_FAILED, failed_event(attempts=2**31))
    assert refused.value.args[0] == "22003"
    with pytest.raises(odbc.DataError, match="data type bigint"):
        cursor.execute("INSERT INTO lead_counters (name, value) VALUES (?, ?)", "big", 2**63)


def test_null_into_a_not_null_column_is_515(cursor):
    with pytest.raises(odbc.IntegrityError) as refused:
        cursor.execute(INSERT_LEAD, lead(source=None))
    assert refused.value.args == odbc.null_refused("leads", "source").args
    assert refused.value.args[1].endswith(
        "Cannot insert the value NULL into column 'source', table 'leadagent.dbo.leads'; column does not allow nulls."
        " INSERT fails. (515) (SQLExecDirectW)"
    )


def test_a_duplicate_lead_is_a_2627_unique_key_violation_naming_constraint_and_value(cursor):
    cursor.execute(INSERT_LEAD, lead("1234567890123456"))
    with pytest.raises(odbc.IntegrityError) as duplicate:
        cursor.execute(INSERT_LEAD, lead("1234567890123456"))
    assert duplicate.value.args == (
        "23000",
        "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of UNIQUE KEY constraint"
        " 'uq_leads_facebook_lead_id'. Cannot insert duplicate key in object 'dbo.leads'. The duplicate key value"
        " is (1234567890123456). (2627) (SQLExecDirectW)",
    )


def test_a_duplicate_primary_key_is_2627_and_keys_compare_case_insensitively(cursor):
    insert = "INSERT INTO state ([key], value, updated_at) VALUES (?, ?, ?)"
    cursor.execute(insert, "Cursor", "1", NOW)
    with pytest.raises(odbc.IntegrityError) as duplicate:
        cursor.execute(insert, "cursor ", "2", NOW)
    assert duplicate.value.args == odbc.duplicate_key("state", "pk_state", "cursor ", "PRIMARY KEY").args
    assert cursor.execute("SELECT value FROM state WHERE [key] = ?", "CURSOR").fetchval() == "1"


def test_the_filtered_unique_index_is_2601_and_allows_many_nulls(cursor):
    for dead_letter in (None, None, "dl-1"):
        cursor.execute(INSERT_FAILED, failed_event(dead_letter=dead_letter))
    with pytest.raises(odbc.IntegrityError, match=r"unique index 'ux_failed_events_dead_letter'.*\(dl-1\)\. \(2601\)"):
        cursor.execute(INSERT_FAILED, failed_event(dead_letter="dl-1"))


def test_an_unfiltered_unique_key_takes_one_null_as_sql_server_does(cursor):
    cursor.execute("CREATE TABLE dbo.t (id INT NOT NULL PRIMARY KEY, code NVARCHAR(8) NULL CONSTRAINT uq_code UNIQUE)")
    cursor.execute("INSERT INTO t (id, code) VALUES (?, ?)", 1, None)
    with pytest.raises(odbc.IntegrityError, match=r"'uq_code'.*\(<NULL>\)"):
        cursor.execute("INSERT INTO t (id, code) VALUES (?, ?)", 2, None)


def test_an_explicit_identity_value_is_refused(cursor):
    with pytest.raises(odbc.IntegrityError, match=r"IDENTITY_INSERT is set to OFF\. \(544\)"):
        cursor.execute("INSERT INTO email_slots (id, token, kind, reserved_at) VALUES (?, ?, ?, ?)", 1, "t", "k", NOW)


# --- types, as pyodbc returns them --------------------------------------------------------------------


def test_datetime2_3_round_trips_as_a_naive_datetime_rounded_to_the_millisecond(cursor):
    aware = datetime(2024, 5, 1, 14, 30, 15, 123500, tzinfo=timezone(timedelta(hours=2)))
    cursor.execute(INSERT_LEAD, lead(created_time=aware, stored_at=datetime(2024, 12, 31, 23, 59, 59, 999900)))
    created, stored = cursor.execute("SELECT created_time, stored_at FROM leads").fetchone()
    assert created == datetime(2024, 5, 1, 14, 30, 15, 124000)  # the wall clock: pyodbc ignores tzinfo
    assert created.tzinfo is None
    assert stored == datetime(2025, 1, 1)


def test_datetime_parameters_compare_exactly_with_stored_times(cursor):
    cursor.execute(INSERT_LEAD, lead())
    stored = cursor.execute("SELECT created_time FROM leads").fetchval()
    assert cursor.execute(COUNT_BETWEEN, stored, stored + timedelta(microseconds=1)).fetchval() == 1
    assert cursor.execute(COUNT_BETWEEN, stored + timedelta(microseconds=1), datetime.max).fetchval() == 0


def test_bit_is_bool_and_aggregates_keep_their_columns_types(cursor):
    cursor.execute("INSERT INTO incidents (kind, is_open, opened_at, detail) VALUES (?, 1, ?, ?)", "graph", NOW, "x")
    assert cursor.execute("SELECT is_open FROM incidents").fetchval() is True
    cursor.execute(INSERT_LEAD, lead())
    assert cursor.execute(COUNT_BETWEEN, NOW - DAY, NOW + DAY).fetchval() == 1
    last_times = "SELECT (SELECT MAX(created_time) FROM leads), (SELECT MIN(stored_at) FROM leads)"
    assert cursor.execute(last_times).fetchone() == (NOW.replace(microsecond=123000),) * 2
    poll_run = (
        "INSERT INTO poll_runs ([trigger], started_at, finished_at, forms_checked, leads_seen, missing_found,"
        " enqueued, graph_calls, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    cursor.execute(poll_run, ("timer", NOW, NOW, 1, 2, 3, 4, 5, 6))
    sums = (
        "SELECT COUNT(*), COALESCE(SUM(missing_found), 0), COALESCE(SUM(CASE WHEN error IS NULL THEN 0 ELSE 1 END), 0)"
        " FROM poll_runs WHERE started_at >= ? AND started_at < ?"
    )
    assert cursor.execute(sums, NOW - DAY, NOW + DAY).fetchone() == (1, 3, 0)


def test_rows_are_tuples_with_named_columns_and_a_description(cursor):
    cursor.execute(INSERT_LEAD, lead())
    row = cursor.execute("SELECT facebook_lead_id, COUNT(*) FROM leads GROUP BY facebook_lead_id").fetchone()
    lead_id, count = row
    assert (len(row), row[0], row.facebook_lead_id, count) == (2, lead_id, lead_id, 1)
    assert [(d[0], d[1]) for d in cursor.description] == [("facebook_lead_id", str), ("", int)]


def test_top_and_offset_fetch_limit_the_rows(cursor):
    for n in range(3):
        cursor.execute(INSERT_LEAD, lead(str(n), created_time=NOW + timedelta(minutes=n)))
        cursor.execute(INSERT_FAILED, failed_event(str(n)))
    newest = "SELECT TOP (?) facebook_lead_id FROM leads ORDER BY created_time DESC, id DESC"
    assert [r[0] for r in cursor.execute(newest, 2).fetchall()] == ["2", "1"]
    page = "SELECT id FROM failed_events WHERE status = ? ORDER BY id DESC OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
    assert [r[0] for r in cursor.execute(page, "open", 2).fetchall()] == [3, 2]


def test_convert_char_13_style_126_groups_by_hour(cursor):
    cursor.execute(INSERT_LEAD, lead("1"))
    cursor.execute(INSERT_LEAD, lead("2", source="poll"))
    by_hour = (
        "SELECT CONVERT(CHAR(13), created_time, 126), source, COUNT(*) FROM leads WHERE created_time >= ?"
        " AND created_time < ? GROUP BY CONVERT(CHAR(13), created_time, 126), source"
    )
    rows = cursor.execute(by_hour, NOW - DAY, NOW + DAY).fetchall()
    assert sorted(rows) == [("2024-05-01T12", "poll", 1), ("2024-05-01T12", "webhook", 1)]


def test_rowcount_is_minus_one_after_select_and_the_affected_rows_after_writes(cursor):
    assert cursor.execute(RESERVE_SLOT, "a", "lead", NOW, NOW - DAY, 1).rowcount == 1
    assert cursor.execute(RESERVE_SLOT, "b", "lead", NOW, NOW - DAY, 1).rowcount == 0
    assert cursor.execute("SELECT reserved_at FROM email_slots").rowcount == -1
    cursor.fast_executemany = True
    insert = "INSERT INTO poll_queued (facebook_lead_id, queued_at) VALUES (?, ?)"
    assert cursor.executemany(insert, [("1", NOW), ("2", NOW)]) is None
    assert cursor.rowcount == -1
    assert cursor.execute("DELETE FROM poll_queued").rowcount == 2
    with pytest.raises(odbc.ProgrammingError, match="No results"):
        cursor.fetchone()


@pytest.mark.parametrize(("value", "name"), [({"not": "bindable"}, "dict"), (["a"], "list")])
def test_a_parameter_pyodbc_cannot_bind_is_hy105(cursor, value, name):
    with pytest.raises(odbc.ProgrammingError) as refused:
        cursor.execute("SELECT value FROM state WHERE [key] = ?", [value])
    assert refused.value.args == (f"Invalid parameter type.  param-index=0 param-type={name}", "HY105")


def test_the_exceptions_are_shaped_like_pyodbcs():
    for data_error in (odbc.DataError, odbc.OperationalError, odbc.IntegrityError, odbc.InternalError):
        assert issubclass(data_error, odbc.DatabaseError)
    assert issubclass(odbc.ProgrammingError, odbc.DatabaseError) and issubclass(odbc.NotSupportedError, odbc.Error)
    assert issubclass(odbc.DatabaseError, odbc.Error) and not issubclass(odbc.InterfaceError, odbc.DatabaseError)


# --- transactions and locks -----------------------------------------------------------------------------


def test_reads_see_committed_writes_only(server):
    writer, reader = connect(server), connect(server)
    writer.execute(INSERT_LEAD, lead())
    assert reader.execute("SELECT COUNT(*) FROM leads").fetchval() == 0
    writer.commit()
    assert reader.execute("SELECT COUNT(*) FROM leads").fetchval() == 1


def test_a_writer_blocked_past_the_query_timeout_gets_hyt00(server):
    holder, waiter = connect(server), connect(server)
    holder.execute("INSERT INTO poll_queued (facebook_lead_id, queued_at) VALUES (?, ?)", "1", NOW)
    waiter.timeout = 1
    with pytest.raises(odbc.OperationalError, match=r"\[HYT00\].*Query timeout expired"):
        waiter.execute("INSERT INTO poll_queued (facebook_lead_id, queued_at) VALUES (?, ?)", "2", NOW)


def test_the_migration_lock_is_held_until_commit_and_a_waiter_times_out_at_the_query_timeout(server):
    first, second = connect(server), connect(server)
    first.execute(MIGRATION_LOCK)
    second.timeout = 1
    with pytest.raises(odbc.OperationalError, match=r"\[HYT00\]"):
        second.execute(MIGRATION_LOCK)
    first.commit()
    assert second.execute(APPLOCK.format(timeout=0)).fetchval() == 0


def test_sp_getapplock_returns_minus_one_or_throws_while_another_transaction_holds_it(server):
    first, second = connect(server), connect(server)
    assert first.execute(APPLOCK.format(timeout=0)).fetchval() == 0
    assert second.execute(APPLOCK.format(timeout=0)).fetchval() == -1
    throw = APPLOCK.format(timeout=0).replace("SELECT @granted", "IF @granted < 0 THROW 51000, 'lock not granted', 1;")
    with pytest.raises(odbc.ProgrammingError, match=r"lock not granted \(51000\)"):
        second.execute(throw)
    first.rollback()
    assert second.execute(APPLOCK.format(timeout=0)).fetchval() == 0
    second.close()
    assert first.execute(APPLOCK.format(timeout=0)).fetchval() == 0


def test_sp_getapplock_serialises_two_threads(server):
    holder, order, granted = connect(server), [], []
    assert holder.execute(APPLOCK.format(timeout=-1)).fetchval() == 0

    def second_instance() -> None:
        connection = connect(server)
        granted.append(connection.execute(APPLOCK.format(timeout=-1)).fetchval())
        order.append("second holds the lock")
        connection.close()

    thread = threading.Thread(target=second_instance)
    thread.start()
    wait_until(lambda: server.applock_waiters == 1, what="the second instance to wait for the lock")
    order.append("first releases")
    holder.commit()
    thread.join(timeout=30)
    assert order == ["first releases", "second holds the lock"]
    assert granted == [1]  # granted after waiting


def test_sp_getapplock_excludes_another_process(server, tmp_path):
    script = (
        "import sys; from tests.support.pyodbc_double import Server\n"
        f"c = Server({str(tmp_path / 'azure-sql')!r}).connect({CONNECTION_STRING!r})\n"
        f"print(c.execute({APPLOCK.format(timeout=0)!r}).fetchval(), flush=True)\n"
        "sys.stdin.readline(); c.commit()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "0"
        assert connect(server).execute(APPLOCK.format(timeout=0)).fetchval() == -1
        child.stdin.write("release\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
        assert connect(server).execute(APPLOCK.format(timeout=0)).fetchval() == 0
    finally:
        child.kill()


# --- faults, on purpose -----------------------------------------------------------------------------------


def test_an_injected_deadlock_is_a_plain_error_40001_and_rolls_the_transaction_back(server):
    server.fail_on("INSERT INTO audit_log", odbc.deadlock())
    connection = connect(server)
    connection.execute(INSERT_LEAD, lead())
    with pytest.raises(odbc.Error) as victim:
        connection.execute("INSERT INTO audit_log (at, action) VALUES (?, ?)", NOW, "stored")
    assert type(victim.value) is odbc.Error
    assert victim.value.args[0] == "40001" and "(1205)" in victim.value.args[1]
    connection.commit()
    assert connection.execute("SELECT COUNT(*) FROM leads").fetchval() == 0


def test_a_dropped_connection_stays_broken_and_loses_its_transaction(server):
    server.fail_on(lambda text: text.startswith("INSERT INTO raw_leads"), odbc.connection_broken())
    connection = connect(server)
    connection.execute(INSERT_LEAD, lead())
    raw = "INSERT INTO raw_leads (facebook_lead_id, source, raw_graph, received_at) VALUES (?, ?, ?, ?)"
    with pytest.raises(odbc.OperationalError, match=r"\[08S01\].*\(10054\) \(SQLExecDirectW\)"):
        connection.execute(raw, "1", "webhook", "{}", NOW)
    with pytest.raises(odbc.OperationalError, match=r"Communication link failure \(0\) \(SQLExecDirectW\)"):
        connection.execute("SELECT 1")
    with pytest.raises(odbc.OperationalError, match=r"\(SQLEndTran\)"):
        connection.commit()
    connection.close()
    assert connect(server).execute("SELECT COUNT(*) FROM leads").fetchval() == 0


def test_a_failover_drops_every_open_connection(server):
    connections = [connect(server) for _ in range(2)]
    server.failover()
    for connection in connections:
        with pytest.raises(odbc.OperationalError, match="10054"):
            connection.execute("SELECT 1")
    assert connect(server).execute("SELECT 1").fetchval() == 1


@pytest.mark.parametrize(
    ("error", "kind", "state", "text"),
    [
        (odbc.login_failed(), odbc.InterfaceError, "28000", "(18456)"),
        (odbc.database_paused(), odbc.Error, "HY000", "(40613)"),
        (odbc.connect_failed(), odbc.OperationalError, "08001", "(10060)"),
        (odbc.login_timeout(), odbc.OperationalError, "HYT00", "Login timeout expired"),
    ],
)
def test_an_injected_connect_failure_raises_once_with_pyodbcs_class(server, error, kind, state, text):
    server.fail_connect(error)
    with pytest.raises(odbc.Error) as failed:
        connect(server)
    assert type(failed.value) is kind and failed.value.args[0] == state and text in failed.value.args[1]
    assert connect(server).execute("SELECT 1").fetchval() == 1


def test_injected_statement_faults_keep_pyodbcs_classes(server):
    server.fail_on("SELECT 1", odbc.query_timeout(), times=2)
    server.fail_on("SELECT 2", odbc.throttled())
    connection = connect(server)
    for _ in range(2):
        with pytest.raises(odbc.OperationalError, match=r"\[HYT00\]"):
            connection.execute("SELECT 1")
    with pytest.raises(odbc.Error, match=r"\(40501\)"):
        connection.execute("SELECT 2")
    assert connection.execute("SELECT 1").fetchval() == 1


def test_the_access_token_is_checked_as_the_driver_packs_it(server):
    connect(server, attrs_before={1256: pack_token("token-1")})
    assert server.tokens == ["token-1"]
    with pytest.raises(odbc.InterfaceError, match="<token-identified principal>"):
        connect(server, attrs_before={1256: b"token-without-its-length"})
    with pytest.raises(odbc.Error, match=r"\[FA005\]"):
        server.connect(CONNECTION_STRING + "UID=sa;", attrs_before={1256: pack_token("token-1")})


def test_connection_counts_show_the_high_water_mark(server):
    gate = threading.Semaphore(2)  # a pool of two
    together = threading.Barrier(3)  # the first two hold their connections at once, then all go in turn

    def worker() -> None:
        with gate:
            connection = connect(server)
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(timeout=30)
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    together.wait(timeout=30)
    together.abort()
    for thread in threads:
        thread.join(timeout=30)
    assert (server.connections_open, server.max_concurrent_connections) == (0, 2)


def test_closed_cursors_and_connections_refuse_use(server):
    connection = connect(server)
    cursor = connection.cursor()
    cursor.close()
    with pytest.raises(odbc.ProgrammingError, match="closed cursor"):
        cursor.execute("SELECT 1")
    connection.close()
    with pytest.raises(odbc.ProgrammingError, match="closed connection"):
        connection.cursor()

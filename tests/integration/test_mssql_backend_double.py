"""The Azure SQL backend's own promises, over the pyodbc double: a bounded pool, mapped errors, safe migrations.

The double (`tests/support/pyodbc_double.py`) runs real T-SQL with SQL Server's limits and raises
pyodbc's errors, so each test here fails the way production would if the backend were wrong.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.errors import StoreRefused, StoreUnavailable
from shared.store import Store
from shared.store.mssql import MssqlBackend, backend_from_settings
from shared.store.schema import VERSION
from tests.support.leads import graph_lead_payload, normalised
from tests.support.pyodbc_double import (
    Server,
    connection_broken,
    database_paused,
    deadlock,
    login_failed,
    query_timeout,
    throttled,
)

DRIVER = "Driver={ODBC Driver 18 for SQL Server};Server=double;"


def azure_sql(server: Server, pool_size: int = 3, checkout: float = 2.0, token: object = None) -> Store:
    backend = MssqlBackend(
        DRIVER,
        token=token,  # type: ignore[arg-type]
        connect=server.connect,
        pool_size=pool_size,
        checkout_timeout_seconds=checkout,
        sleep=lambda s: None,
    )
    return Store(backend, migrate_on_first_use=True)


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path / "db")


def test_the_pool_never_opens_more_connections_than_its_size(server):
    store = azure_sql(server, pool_size=3, checkout=30)
    store.migrate()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(5):
                store.leads.store_lead(normalised(f"{n}{i:03d}"), None, graph_lead_payload(f"{n}{i:03d}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 13)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert server.max_concurrent_connections <= 3
    assert store.stats.counters()["source:webhook"] == 60


def test_a_caller_that_finds_no_free_connection_in_time_gets_store_unavailable(server):
    store = azure_sql(server, pool_size=1, checkout=0.2)
    store.migrate()
    with store.backend.read(), pytest.raises(StoreUnavailable, match="no Azure SQL connection free"):
        store.leads.has_lead("1")  # the only connection is held by the block above


@pytest.mark.parametrize(
    "error",
    [deadlock(), connection_broken(), query_timeout(), database_paused(), throttled()],
    ids=["deadlock-1205", "connection-reset-10054", "query-timeout", "paused-40613", "throttled-40501"],
)
def test_transient_errors_inside_a_write_are_store_unavailable_and_the_next_write_works(server, error):
    store = azure_sql(server)
    store.migrate()
    server.fail_on("INSERT INTO leads", error)
    with pytest.raises(StoreUnavailable):
        store.leads.store_lead(normalised("11"), None, graph_lead_payload("11"))
    assert store.leads.has_lead("11") is False  # rolled back whole
    store.leads.store_lead(normalised("11"), None, graph_lead_payload("11"))
    assert store.leads.has_lead("11")


def test_a_refused_login_is_store_unavailable_until_the_user_exists(server):
    server.fail_connect(login_failed(), times=1)
    store = azure_sql(server)
    with pytest.raises(StoreUnavailable, match="18456"):
        store.migrate()
    assert store.migrate() == VERSION  # the operator created the database user


def test_a_token_request_that_fails_is_store_unavailable_and_no_connection_is_leaked(server):
    def no_token() -> str:
        raise OSError("IMDS endpoint unreachable")

    store = azure_sql(server, pool_size=1, token=no_token)
    for _ in range(3):  # a leaked pool slot would turn the later calls into checkout timeouts
        with pytest.raises(StoreUnavailable, match="no access token"):
            store.leads.has_lead("1")
    assert server.connections_open == 0


def test_a_truncation_names_table_and_column_and_never_the_value(server):
    store = azure_sql(server)
    store.migrate()
    secret = "+44 " + "9" * 70
    with pytest.raises(StoreRefused) as refused, store.backend.write() as tx:
        tx.execute("INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)", ("x", secret, datetime.now(UTC)))
    text = str(refused.value)
    assert "leases.owner" in text and "2628" in text and secret not in text and "9999" not in text


def test_instances_starting_together_migrate_once(server):
    stores = [azure_sql(server) for _ in range(4)]
    versions: list[int] = []
    threads = [threading.Thread(target=lambda s=s: versions.append(s.migrate())) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert versions == [VERSION] * 4
    with stores[0].backend.read() as tx:
        assert tx.value(int, "SELECT COUNT(*) FROM schema_migrations") == VERSION


def test_the_store_timeout_bounds_the_wait_for_a_pooled_connection_with_a_connection_string_too(server):
    backend = backend_from_settings(DRIVER, "", "", "", pool_size=1, timeout_seconds=0.2, connect=server.connect)
    assert (backend.pool_size, backend.checkout_timeout_seconds) == (1, 0.2)
    store = Store(backend, migrate_on_first_use=True)
    store.migrate()
    with store.backend.read(), pytest.raises(StoreUnavailable, match="free within"):
        store.leads.has_lead("1")

"""The SQLite store: versioned schema, exactly-once under concurrency, atomic writes, clear unavailability."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.errors import StoreUnavailable
from shared.store import Store
from shared.store.failed_events import FailedEvent
from shared.store.leads import AlreadyStored, Stored
from shared.store.schema import VERSION, migrations
from shared.store.sqlite import SqliteBackend
from tests.support.leads import graph_lead_payload, normalised, store_one_lead_in_process
from tests.support.stores import migrate_in_process


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = Store(SqliteBackend(str(tmp_path / "leads.db")))
    created.migrate()
    return created


def count(path: Path, table: str, where: str = "1=1") -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0])  # noqa: S608


def test_schema_is_created_from_an_empty_file(tmp_path: Path):
    path = tmp_path / "nested" / "leads.db"
    store = Store(SqliteBackend(str(path)))
    assert store.migrate() == VERSION
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"leads", "raw_leads", "audit_log", "failed_events", "state", "schema_migrations"} <= tables
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rerunning_migrations_on_an_existing_file_changes_nothing(tmp_path: Path):
    path = tmp_path / "leads.db"
    first = Store(SqliteBackend(str(path)))
    first.migrate()
    first.leads.store_lead(normalised("1"), None, graph_lead_payload("1"))
    second = Store(SqliteBackend(str(path)))
    assert second.migrate() == VERSION
    assert count(path, "schema_migrations") == len(migrations("sqlite"))
    assert count(path, "leads") == 1


def test_new_lead_is_stored_with_raw_rows_and_an_audit_row(store: Store, tmp_path: Path):
    outcome = store.leads.store_lead(normalised("42"), {"leadgen_id": "42"}, graph_lead_payload("42"))
    assert outcome == Stored("42")
    path = tmp_path / "leads.db"
    assert count(path, "leads") == 1
    assert count(path, "raw_leads", "raw_event IS NOT NULL AND raw_graph LIKE '%Zo%'") == 1
    assert count(path, "audit_log", "action='stored' AND facebook_lead_id='42'") == 1


def test_second_store_of_the_same_lead_is_a_counted_duplicate(store: Store, tmp_path: Path):
    store.leads.store_lead(normalised("42"), None, graph_lead_payload("42"))
    outcome = store.leads.store_lead(normalised("42", source="polling"), None, graph_lead_payload("42"))
    assert outcome == AlreadyStored("42")
    path = tmp_path / "leads.db"
    assert count(path, "leads") == 1
    assert count(path, "raw_leads") == 1
    assert count(path, "audit_log", "action='duplicate'") == 1


def test_eight_processes_storing_the_same_lead_at_once_leave_exactly_one_row(tmp_path: Path):
    path = str(tmp_path / "leads.db")
    Store(SqliteBackend(path)).migrate()
    start_at = time.time() + 1.5
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        outcomes = pool.starmap(store_one_lead_in_process, [(path, "777", start_at)] * 8)
    assert sorted(outcomes) == ["AlreadyStored"] * 7 + ["Stored"]
    assert count(Path(path), "leads") == 1
    assert count(Path(path), "audit_log", "action='duplicate'") == 7


def test_last_leads_are_newest_first_with_every_field(store: Store):
    for n, created in (("1", 1_790_000_000), ("2", 1_790_000_300), ("3", 1_790_000_100)):
        store.leads.store_lead(normalised(n, created=created), None, graph_lead_payload(n, created=created))
    leads = [lead.ops_view() for lead in store.leads.last_leads(2)]
    assert [lead["facebook_lead_id"] for lead in leads] == ["2", "3"]
    first = leads[0]
    assert first["created_time"] == datetime.fromtimestamp(1_790_000_300, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert first["fields"]["full_name"] == ["Zoë Åström"]
    assert first["fields"]["interests"] == ["solar", "batteries"]
    assert first["email"] == "lead2@example.com"
    assert first["phone_number"] == "+442079460000"
    assert set(first) == {
        "facebook_lead_id", "page_id", "form_id", "ad_id", "created_time", "source",
        "email", "full_name", "phone_number", "fields", "mapped",
    }  # fmt: skip


def test_failed_event_is_kept_open_and_audited(store: Store, tmp_path: Path):
    store.failed_events.record_failed_event(
        FailedEvent(queue="leads-inbound-poison", stage="ingest", error="LeadNotFetchable", attempts=1, payload="{}")
    )
    path = tmp_path / "leads.db"
    assert count(path, "failed_events", "status='open' AND error='LeadNotFetchable'") == 1
    assert count(path, "audit_log", "action='dead_lettered'") == 1


def test_database_in_an_unusable_place_is_reported_as_unavailable(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable):
        Store(SqliteBackend(str(blocker / "leads.db"))).migrate()


def test_four_processes_migrating_an_empty_database_at_once_apply_each_version_once(tmp_path: Path):
    path = str(tmp_path / "fresh.db")
    start_at = time.time() + 1.5
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        versions = pool.starmap(migrate_in_process, [(path, start_at)] * 4)
    assert versions == [VERSION] * 4
    assert count(Path(path), "schema_migrations") == len(migrations("sqlite"))

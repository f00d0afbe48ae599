"""Watchers: dead letters piling up and unexpected silence open an incident once and resolve it once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.monitoring.incidents import is_open
from shared.monitoring.watch import watch
from shared.store import Store
from shared.store.failed_events import FailedEvent
from shared.store.sqlite import SqliteBackend
from tests.support.leads import graph_lead_payload, normalised


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = Store(SqliteBackend(str(tmp_path / "leads.db")))
    created.migrate()
    return created


def add_lead(store: Store, lead_id: str, hours_ago: float) -> None:
    created = int(time.time() - hours_ago * 3600)
    store.leads.store_lead(normalised(lead_id, created=created), None, graph_lead_payload(lead_id, created=created))


def test_dead_letters_over_the_threshold_open_one_incident_and_clearing_them_resolves_it(store):
    for n in range(3):
        store.failed_events.record_failed_event(
            FailedEvent("leads-inbound-poison", "ingest", "x", 1, "{}", facebook_lead_id=str(n))
        )
    now = datetime.now(UTC)
    assert watch(store, now, 3, 6, 3).dead_letters_open == 3
    watch(store, now, 3, 6, 3)
    assert is_open(store, "dead_letters_growing")
    assert store.stats.count_audit("incident_opened", now.replace(year=2000), now.replace(year=2100)) == 1
    for event in store.failed_events.list_failed_events():
        store.failed_events.set_failed_event_status(event.id, "resolved")
    watch(store, now, 3, 6, 3)
    assert not is_open(store, "dead_letters_growing")
    alerts = [key for _, key in store.outbox.outbox_due(now.replace(year=2100), now.replace(year=2100))]
    assert len(alerts) == 2 and alerts[0].endswith(":opened") and alerts[1].endswith(":resolved")


def test_an_open_dead_letter_nearing_the_retention_opens_one_incident_until_it_is_settled(store):
    now = datetime.now(UTC)
    store.failed_events.record_failed_event(
        FailedEvent("leads-inbound-poison", "ingest", "x", 1, "{}", failed_at=now - timedelta(days=26))
    )
    store.failed_events.record_failed_event(FailedEvent("leads-inbound-poison", "ingest", "y", 1, "{}"))
    assert watch(store, now, 100, 6, 3, unattended_days=25).dead_letters_unattended == 1
    watch(store, now, 100, 6, 3, unattended_days=25)
    assert is_open(store, "dead_letters_unattended")
    assert [i.detail for i in store.coordination.incidents().values()] == [{"count": 1, "days": 25}]
    old = next(e for e in store.failed_events.list_failed_events() if e.error == "x")
    store.failed_events.set_failed_event_status(old.id, "resolved")
    watch(store, now, 100, 6, 3, unattended_days=25)
    assert not is_open(store, "dead_letters_unattended")


def test_silence_opens_when_the_baseline_expects_leads_and_none_came(store):
    for n in range(40):  # about one lead every 4 hours over the past week
        add_lead(store, f"5{n:04d}", hours_ago=8 + n * 4)
    report = watch(store, datetime.now(UTC), 10, 6, 1)
    assert report.leads_in_silence_window == 0 and report.expected_in_silence_window >= 1
    assert is_open(store, "silence")
    add_lead(store, "59999", hours_ago=0.1)
    watch(store, datetime.now(UTC), 10, 6, 1)
    assert not is_open(store, "silence")


def test_no_silence_alarm_for_a_page_that_rarely_gets_leads(store):
    add_lead(store, "60001", hours_ago=50)
    watch(store, datetime.now(UTC), 10, 6, 3)
    assert not is_open(store, "silence")


def test_incident_transitions_leave_alert_rows_in_the_outbox(store):
    for _n in range(2):
        store.failed_events.record_failed_event(FailedEvent("leads-inbound-poison", "ingest", "x", 1, "{}"))
    now = datetime.now(UTC)
    watch(store, now, 2, 6, 3)
    kinds = [kind for kind, _ in store.outbox.outbox_due(now.replace(year=2100), now.replace(year=2100))]
    assert kinds == ["alert"]

"""Speed to lead on a real SQLite file: Meta's creation to the email's send, and webhook receipt to the row committed,
as `GET /api/stats/notifications` and the daily digest report them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared import stats
from shared.notify.digest import build_digest_data
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.leads import graph_lead_payload, normalised
from tests.support.stores import claim

CREATED = int(datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp())
RECEIVED = datetime(2026, 11, 26, 9, 0, 2, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    created = Store(SqliteBackend(str(tmp_path / "leads.db")))
    created.migrate()
    yield created


def store_and_send(store: Store, lead_id: str, created: int, source: str = "webhook") -> None:
    received = RECEIVED + timedelta(seconds=created - CREATED) if source == "webhook" else None
    lead = normalised(lead_id, source=source, created=created).model_copy(update={"webhook_received_at": received})
    store.leads.store_lead(lead, {"leadgen_id": lead_id}, graph_lead_payload(lead_id, created=created), notify=True)
    assert claim(store, lead_id, f"claim-{lead_id}") == "claimed"
    store.outbox.begin_send(f"claim-{lead_id}")
    store.outbox.mark_claim_sent(f"claim-{lead_id}", "lead", [lead_id], f"provider-{lead_id}")


def just_after() -> datetime:
    """A window end past every send so far (times are kept to the millisecond; the end is exclusive)."""
    return datetime.now(UTC) + timedelta(seconds=1)


def rows(store: Store, sql: str) -> list[tuple[str, ...]]:
    backend = store.backend
    assert isinstance(backend, SqliteBackend)
    with sqlite3.connect(backend.path) as conn:
        return conn.execute(sql).fetchall()


def ms(later: str, earlier: str) -> float:
    return round((datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds() * 1000, 1)


def test_stats_report_speed_to_lead_for_every_lead_emailed_and_webhook_to_stored_for_webhook_leads(store):
    store_and_send(store, "301", CREATED)
    store_and_send(store, "302", CREATED + 40)
    store_and_send(store, "303", CREATED + 20, source="polling")
    report = stats.notifications(store, 24, now=just_after())

    speed = sorted(
        ms(sent, created)
        for sent, created in rows(
            store,
            "SELECT n.sent_at, l.created_time FROM notification_log n"
            " JOIN leads l ON l.facebook_lead_id = n.notification_key",
        )
    )
    assert report["speed_to_lead_ms"] == {"count": 3, "p50": speed[1], "p99": speed[2], "max": speed[2]}

    intake = sorted(
        ms(stored, received)
        for stored, received in rows(
            store, "SELECT stored_at, webhook_received_at FROM leads WHERE webhook_received_at IS NOT NULL"
        )
    )
    assert report["webhook_to_stored_ms"] == {
        "count": 2,
        "p50": intake[0],
        "p99": intake[1],
        "max": intake[1],
        "not_from_webhook": 1,
    }


def test_stats_report_no_figure_when_nothing_was_emailed_or_received_by_the_webhook(store):
    report = stats.notifications(store, 24)
    assert report["speed_to_lead_ms"] == {"count": 0, "p50": None, "p99": None, "max": None}
    assert report["webhook_to_stored_ms"] == {"count": 0, "p50": None, "p99": None, "max": None, "not_from_webhook": 0}


def test_the_digest_carries_the_same_figures_for_its_day(store):
    store_and_send(store, "401", CREATED)
    store_and_send(store, "402", CREATED + 10, source="reprocess")
    end = just_after()
    report = stats.notifications(store, 24, now=end)
    data = build_digest_data(store, end, lambda form: None)
    speed, intake = report["speed_to_lead_ms"], report["webhook_to_stored_ms"]
    assert (data.speed_to_lead.count, data.speed_to_lead.p50_ms, data.speed_to_lead.p99_ms) == (
        2,
        speed["p50"],
        speed["p99"],
    )
    assert (data.webhook_to_stored.count, data.webhook_to_stored.p50_ms) == (1, intake["p50"])
    assert data.not_from_webhook == 1

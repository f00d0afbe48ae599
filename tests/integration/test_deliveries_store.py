"""The deliveries store on every engine (SQLite, the Azure SQL double, SQL Server when configured)."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.store import Store
from shared.store.backend import utc_now
from shared.store.deliveries import Claimed, DeliveryRouting, NotClaimed, delivery_key, webhook_id
from tests.integration.test_store_contract import add, store  # noqa: F401 - the parametrised store fixture
from tests.support.stores import count_rows

ROUTING = DeliveryRouting(lead=("webhook:aaaa", "slack"), alert=("slack", "teams"), stage=("capi",))
STALE = timedelta(minutes=10)


def routed(store: Store) -> Store:  # noqa: F811
    """The same database with destinations configured."""
    return Store(store.backend, routing=ROUTING)


def test_a_stored_lead_gets_one_pending_delivery_per_destination_in_its_transaction(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100001")
    add(with_routes, "100001")  # a redelivery stores nothing and adds no delivery
    rows = with_routes.deliveries.newest(None, 10)
    assert sorted((r.destination, r.kind, r.subject, r.status) for r in rows) == [
        ("slack", "lead", "100001", "pending"),
        ("webhook:aaaa", "lead", "100001", "pending"),
    ]
    key = delivery_key("webhook:aaaa", "lead", "100001")
    assert with_routes.deliveries.get(key).webhook_id == webhook_id(key)  # type: ignore[union-attr]


def test_an_alert_goes_to_the_chats_with_its_payload(store):  # noqa: F811
    with_routes = routed(store)
    assert with_routes.coordination.open_incident("token_invalid", {"code": 190})
    rows = with_routes.deliveries.newest(None, 10)
    assert sorted(r.destination for r in rows) == ["slack", "teams"]
    payload = json.loads(rows[0].payload or "{}")
    assert payload["kind"] == "token_invalid" and payload["opened"] is True and payload["detail"] == {"code": 190}


def test_one_claim_at_a_time_then_delivered_once(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100002")
    key = delivery_key("slack", "lead", "100002")
    first = with_routes.deliveries.claim(key, "c1", STALE)
    assert isinstance(first, Claimed)
    assert with_routes.deliveries.claim(key, "c2", STALE) == NotClaimed("in_progress")
    assert with_routes.deliveries.mark_delivered(key, "c1", 200)
    assert with_routes.deliveries.claim(key, "c3", STALE) == NotClaimed("delivered")
    row = with_routes.deliveries.get(key)
    assert row is not None and (row.status, row.attempts, row.last_status) == ("delivered", 1, 200)


def test_a_failed_attempt_waits_for_its_retry_and_the_last_one_fails_for_good(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100003")
    key = delivery_key("slack", "lead", "100003")
    with_routes.deliveries.claim(key, "c1", STALE)
    retry_at = utc_now() + timedelta(minutes=5)
    assert with_routes.deliveries.mark_attempt_failed(key, "c1", 503, "HTTP 503" + "x" * 900, retry_at)
    row = with_routes.deliveries.get(key)
    assert row is not None and (row.status, row.attempts, row.last_status) == ("pending", 1, 503)
    assert row.last_error is not None and len(row.last_error) <= 500  # cut to the column's width
    with_routes.deliveries.claim(key, "c2", STALE)
    assert with_routes.deliveries.mark_attempt_failed(key, "c2", None, "timeout", None)
    assert with_routes.deliveries.claim(key, "c3", STALE) == NotClaimed("failed")
    assert [r.subject for r in with_routes.deliveries.newest("failed", 10)] == ["100003"]


def test_a_stale_claim_is_taken_over_and_the_old_holder_can_no_longer_record(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100004")
    key = delivery_key("slack", "lead", "100004")
    with_routes.deliveries.claim(key, "dead", STALE)
    # stale after -1 s: every claim counts as stale, even one taken in this same millisecond
    assert isinstance(with_routes.deliveries.claim(key, "new", timedelta(seconds=-1)), Claimed)
    assert not with_routes.deliveries.mark_delivered(key, "dead", 200)
    assert with_routes.deliveries.mark_delivered(key, "new", 200)


def test_due_finds_unqueued_overdue_and_stale_rows_only(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100005")
    add(with_routes, "100006")
    later = utc_now() + timedelta(minutes=2)
    keys = with_routes.deliveries.due(later, timedelta(minutes=1), timedelta(minutes=30), STALE)
    assert len(keys) == 4  # never queued, older than the grace
    with_routes.deliveries.mark_queued(keys)
    assert with_routes.deliveries.due(later, timedelta(minutes=1), timedelta(minutes=30), STALE) == []


def test_replay_makes_a_failed_delivery_pending_again_with_the_same_webhook_id(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100007")
    key = delivery_key("slack", "lead", "100007")
    with_routes.deliveries.claim(key, "c1", STALE)
    with_routes.deliveries.mark_attempt_failed(key, "c1", 500, "HTTP 500", None)
    failed = with_routes.deliveries.get(key)
    assert failed is not None
    replayed = with_routes.deliveries.replay(failed.id)
    assert replayed is not None and (replayed.status, replayed.attempts) == ("pending", 0)
    assert replayed.webhook_id == failed.webhook_id
    assert with_routes.deliveries.replay(999_999) is None
    assert count_rows(with_routes, "audit_log", "action = 'delivery_replayed'") == 1


def test_a_stage_is_recorded_once_with_its_conversions_api_delivery(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100008")
    outcome, keys = with_routes.deliveries.record_stage("100008", "qualified")
    assert outcome == "recorded" and keys == [delivery_key("capi", "stage", "100008:qualified")]
    assert with_routes.deliveries.record_stage("100008", "qualified") == ("already_recorded", [])
    assert with_routes.deliveries.record_stage("999999", "qualified") == ("unknown_lead", [])
    assert with_routes.deliveries.stages("100008") == ["qualified"]
    event = json.loads(with_routes.deliveries.get(keys[0]).payload or "{}")  # type: ignore[union-attr]
    assert event["stage"] == "qualified" and isinstance(event["event_time"], int)


def test_a_claim_given_back_unsent_is_pending_again_and_claimable(store):  # noqa: F811
    with_routes = routed(store)
    add(with_routes, "100009")
    key = delivery_key("slack", "lead", "100009")
    first = with_routes.deliveries.claim(key, "c1", STALE)
    assert isinstance(first, Claimed)
    assert not with_routes.deliveries.release(key, "someone-else")  # only the holder gives it back
    assert with_routes.deliveries.release(key, "c1")
    row = with_routes.deliveries.get(key)
    assert row is not None and (row.status, row.attempts) == ("pending", 0)
    assert isinstance(with_routes.deliveries.claim(key, "c2", STALE), Claimed)

"""Dead letters: swept from the poison queues into failed_events, listed, reprocessed, purged."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.ingest.consumer import ingest_lead_message
from shared.messaging.messages import LeadMessage
from shared.messaging.sweep import HOST_MOVE_REASON, sweep_poison_queues
from shared.ops.errors import NotFound, NotReplayable
from shared.ops.reprocess import reprocess
from shared.storage.names import LEADS_QUEUE, NOTIFICATIONS_QUEUE, poison_queue
from shared.store.failed_events import FailedEvent
from shared.webhook.intake import receive_webhook
from shared.webhook.signature import sign_body
from tests.support.queues import drain_json, message_count, queue_client, reset_queue
from tests.support.safety_net import APP_ID, APP_SECRET, PAGE, TOKEN, SafetyNet, build_safety_net

POISON = poison_queue(LEADS_QUEUE)


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], app_id=APP_ID, page_ids=[PAGE], app_secret=APP_SECRET, subscribed=True)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def net(azurite, graph, tmp_path: Path) -> SafetyNet:
    for queue in (LEADS_QUEUE, POISON, NOTIFICATIONS_QUEUE, poison_queue(NOTIFICATIONS_QUEUE)):
        reset_queue(azurite.connection_string, queue)
    return build_safety_net(graph, azurite.connection_string, tmp_path)


def sweep(net: SafetyNet, **kwargs):
    return sweep_poison_queues(net.storage, net.store, **kwargs)


def message(lead_id: str, **extra) -> bytes:
    return LeadMessage(facebook_lead_id=lead_id, page_id=PAGE, form_id=PAGE + "01", **extra).to_text().encode()


def test_pipeline_dead_letter_is_recorded_once_even_after_the_sweep(net):
    assert ingest_lead_message(message("444444444444"), net.ingest_deps()).outcome == "dead_lettered"
    report = sweep(net)
    assert (report.moved, report.already_recorded) == (0, 1)
    assert message_count(net.storage, POISON) == 0
    [event] = net.store.failed_events.list_failed_events()
    assert event.facebook_lead_id == "444444444444" and "LeadNotFetchable" in event.error
    assert set(event.as_json()) == {
        "id", "queue", "stage", "facebook_lead_id", "error", "attempts", "first_failed_at", "last_failed_at", "status"
    }  # fmt: skip


def test_webhook_dead_letter_reaches_failed_events_through_the_sweep(net):
    body = b"garbage that was signed"
    assert receive_webhook(body, sign_body(body, "s"), ["s"], net.sender, 1 << 20).outcome == "malformed"
    assert sweep(net).moved == 1
    [event] = net.store.failed_events.list_failed_events()
    assert (event.stage, event.error, event.facebook_lead_id) == ("webhook", "body is not JSON", None)


def test_host_poisoned_message_is_recorded_with_a_reason_the_host_never_gives(net):
    queue_client(net.storage, POISON).send_message(message("555").decode())
    report = sweep(net)
    assert report.moved == 1
    [event] = net.store.failed_events.list_failed_events()
    assert event.error == HOST_MOVE_REASON and event.facebook_lead_id == "555"


def test_sweeping_twice_records_nothing_twice(net):
    queue_client(net.storage, POISON).send_message(message("556").decode())
    sweep(net)
    assert sweep(net).moved == 0
    assert len(net.store.failed_events.list_failed_events()) == 1


def test_notification_poison_queue_is_swept_too(net):
    queue_client(net.storage, poison_queue(NOTIFICATIONS_QUEUE)).send_message('{"kind":"notify"}')
    assert sweep(net).moved == 1
    assert net.store.failed_events.list_failed_events()[0].stage == "notify"


def test_only_settled_dead_letters_are_purged_after_the_retention_and_open_ones_stay(net):
    old = datetime.now(UTC) - timedelta(days=31)
    for error in ("old resolved", "old reprocessed", "old open"):
        net.store.failed_events.record_failed_event(
            FailedEvent("leads-inbound-poison", "ingest", error, 1, "{}", failed_at=old)
        )
    for event in net.store.failed_events.list_failed_events():
        if event.error != "old open":
            net.store.failed_events.set_failed_event_status(event.id, event.error.split()[1])
    net.store.failed_events.record_failed_event(FailedEvent("leads-inbound-poison", "ingest", "new", 1, "{}"))
    assert sweep(net, retention_days=30).purged == 2
    assert sorted(e.error for e in net.store.failed_events.list_failed_events()) == ["new", "old open"]


def test_reprocessing_a_fixed_lead_stores_it(net, graph):
    lead_id = graph.sandbox.create_lead(PAGE + "01", [{"name": "full_name", "values": ["Later Fixed"]}])
    graph.sandbox.add_fault("permission", route="lead", code=100, subcode=33)
    ingest_lead_message(message(lead_id), net.ingest_deps())  # Leads Access missing → 100/33 → dead letter
    graph.sandbox.clear_faults()
    [event] = net.store.failed_events.list_failed_events()
    result = reprocess(str(event.id), net.store, net.sender)
    assert (result.failed_event_id, result.facebook_lead_id) == (event.id, lead_id)
    assert net.drain_ingest() == ["stored"]
    assert net.store.failed_events.get_failed_event(event.id).status == "reprocessed"
    with sqlite3.connect(net.store.backend.path) as conn:  # type: ignore[attr-defined]
        assert conn.execute("SELECT source FROM leads").fetchone()[0] == "reprocess"


def test_reprocessing_a_lead_that_still_fails_makes_a_fresh_visible_dead_letter(net):
    ingest_lead_message(message("444444444444"), net.ingest_deps())
    [event] = net.store.failed_events.list_failed_events()
    assert reprocess(str(event.id), net.store, net.sender).queue == LEADS_QUEUE
    assert net.drain_ingest() == ["dead_lettered"]
    [fresh] = net.store.failed_events.list_failed_events()
    assert fresh.id != event.id and fresh.facebook_lead_id == "444444444444"


def test_reprocessing_by_lead_id_queues_the_lead(net):
    ingest_lead_message(message("444444444444"), net.ingest_deps())
    result = reprocess("444444444444", net.store, net.sender)
    assert (result.queue, result.failed_event_id) == (LEADS_QUEUE, None)
    [queued] = drain_json(net.storage, LEADS_QUEUE)
    assert (queued["facebook_lead_id"], queued["source"], queued["form_id"]) == (
        "444444444444",
        "reprocess",
        PAGE + "01",
    )


def test_reprocessing_a_malformed_webhook_is_refused_with_the_reason(net):
    body = b"not json"
    receive_webhook(body, sign_body(body, "s"), ["s"], net.sender, 1 << 20)
    sweep(net)
    [event] = net.store.failed_events.list_failed_events()
    with pytest.raises(NotReplayable) as refused:
        reprocess(str(event.id), net.store, net.sender)
    assert refused.value.detail == {"failed_event_id": event.id, "reason": "body is not JSON"}
    assert message_count(net.storage, LEADS_QUEUE) == 0


def test_reprocessing_an_unknown_id_is_404(net):
    for identifier in ("999", "1234567890123456", "../etc"):
        with pytest.raises(NotFound):
            reprocess(identifier, net.store, net.sender)


def test_dead_letter_payload_keeps_the_original_message(net):
    ingest_lead_message(message("444444444444", source="webhook"), net.ingest_deps())
    [event] = net.store.failed_events.list_failed_events()
    payload = json.loads(net.store.failed_events.get_failed_event(event.id).payload)
    assert payload["facebook_lead_id"] == "444444444444" and payload["source"] == "webhook"


def test_reprocessing_an_id_that_is_not_digits_is_a_404_not_an_error(net):
    for identifier in ("abc_123", "12a", "", "\uff11\uff12\uff13"):  # the last: full-width digits
        with pytest.raises(NotFound, match="digits"):
            reprocess(identifier, net.store, net.sender)

"""The safety net against the sandbox Graph API, SQLite and Azurite: backfill, gaps, health, limits."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.errors import GraphThrottled
from shared.ingest.consumer import ingest_lead_message
from shared.ingest.pipeline import IngestDeps
from shared.messaging.sender import QueueSender
from shared.monitoring.incidents import is_open
from shared.poller.reconcile import poll_once, reconcile_window
from shared.storage.connection import azurite_connection_string
from shared.storage.names import LEADS_QUEUE, poison_queue
from tests.support.queues import drain_json, message_count, queue_client, reset_queue
from tests.support.safety_net import APP_ID, APP_SECRET, PAGE, TOKEN, SafetyNet, build_safety_net, hours_ago
from tests.support.waiting import free_port

FORM_1, FORM_2 = PAGE + "01", PAGE + "02"


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], app_id=APP_ID, page_ids=[PAGE], app_secret=APP_SECRET, subscribed=True)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def net(azurite, graph, tmp_path: Path) -> SafetyNet:
    for queue in (LEADS_QUEUE, poison_queue(LEADS_QUEUE)):
        reset_queue(azurite.connection_string, queue)
    return build_safety_net(graph, azurite.connection_string, tmp_path)


def lead_at(graph: RunningSandbox, form: str, created: float, name: str = "Backfill Person") -> str:
    fields = [{"name": "full_name", "values": [name]}, {"name": "email", "values": ["p@example.com"]}]
    return graph.sandbox.create_lead(form, fields, created_time=created)


def sources(net: SafetyNet) -> dict[str, str]:
    path = net.store.backend.path  # type: ignore[attr-defined]
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT facebook_lead_id, source FROM leads").fetchall())


def test_two_hours_of_missed_webhooks_are_backfilled_with_source_polling(net, graph):
    created = [lead_at(graph, (FORM_1, FORM_2)[i % 2], hours_ago(2 - i * 0.1)) for i in range(12)]
    report = poll_once(net.poller())
    assert (report.forms_checked, report.leads_seen, report.missing_found, report.enqueued) == (2, 12, 12, 12)
    assert report.error is None
    assert net.drain_ingest() == ["stored"] * 12
    assert sources(net) == dict.fromkeys(created, "polling")


def test_backfilled_messages_carry_ids_only_and_ingestion_fetches_each_lead_once(net, graph):
    for i in range(3):
        lead_at(graph, FORM_1, hours_ago(1) + i)
    poll_once(net.poller())
    lead_calls = graph.sandbox.calls().get("lead", 0)
    assert net.drain_ingest() == ["stored"] * 3
    assert graph.sandbox.calls().get("lead", 0) == lead_calls + 3


def test_late_webhook_deliveries_after_a_backfill_are_counted_duplicates(net, graph):
    lead_id = lead_at(graph, FORM_1, hours_ago(1))
    poll_once(net.poller())
    net.drain_ingest()
    from shared.ingest.consumer import ingest_lead_message
    from shared.messaging.messages import LeadMessage

    late = LeadMessage(facebook_lead_id=lead_id, page_id=PAGE, form_id=FORM_1, source="webhook")
    assert ingest_lead_message(late.to_text().encode(), net.ingest_deps()).outcome == "duplicate"


def test_stored_leads_are_not_queued_again(net, graph):
    lead_at(graph, FORM_1, hours_ago(1))
    poll_once(net.poller())
    net.drain_ingest()
    again = poll_once(net.poller(full_every_seconds=0))
    assert (again.leads_seen, again.missing_found, again.enqueued) == (1, 0, 0)


def test_a_lead_still_waiting_on_the_queue_is_not_queued_again_by_the_next_run(net, graph, azurite):
    lead_at(graph, FORM_1, hours_ago(1))
    assert poll_once(net.poller()).enqueued == 1
    again = poll_once(net.poller(full_every_seconds=0))  # ingestion has not caught up yet
    assert (again.leads_seen, again.missing_found, again.enqueued, again.already_queued) == (1, 0, 0, 1)
    assert message_count(azurite.connection_string, LEADS_QUEUE) == 1


def test_a_lead_queued_longer_ago_than_requeue_after_is_queued_again(net, graph, azurite):
    lead_at(graph, FORM_1, hours_ago(1))
    poll_once(net.poller())
    later = net.poller(full_every_seconds=0, requeue_after_seconds=30)
    later.clock = lambda: time.time() + 60  # its first copy has waited a minute: maybe it is stuck
    assert poll_once(later).enqueued == 1
    assert message_count(azurite.connection_string, LEADS_QUEUE) == 2
    assert net.drain_ingest() == ["stored", "duplicate"]


def test_leads_behind_the_oldest_waiting_message_are_left_for_ingestion_to_reach(net, graph, azurite):
    backlog = QueueSender(azurite.connection_string)
    backlog.send(LEADS_QUEUE, json.dumps({"note": "a webhook message ingestion has not reached"}))
    lead_at(graph, FORM_1, time.time() - 5)  # its webhook message may be behind that one

    def a_minute_later() -> float:  # the plain 10 s grace has long passed
        return time.time() + 60

    held = net.poller(grace_seconds=10)
    held.clock = a_minute_later
    report = poll_once(held)
    assert (report.leads_seen, report.enqueued) == (0, 0)
    drain_json(azurite.connection_string, LEADS_QUEUE)  # ingestion caught up
    caught_up = net.poller(grace_seconds=10)
    caught_up.clock = a_minute_later
    report = poll_once(caught_up)
    assert (report.leads_seen, report.enqueued) == (1, 1)


def test_checkpoint_limits_the_next_run_to_recent_leads(net, graph):
    lead_at(graph, FORM_1, hours_ago(3))
    poll_once(net.poller())
    net.drain_ingest()
    lead_at(graph, FORM_1, hours_ago(0.01))
    report = poll_once(net.poller(overlap_seconds=60))
    assert report.leads_seen == 1 and report.enqueued == 1


def test_full_window_reconciliation_finds_an_old_gap_the_checkpoint_skipped(net, graph):
    poll_once(net.poller())
    lead_at(graph, FORM_2, hours_ago(5))  # created behind the checkpoint: only a full pass sees it
    incremental = poll_once(net.poller(overlap_seconds=60))
    assert incremental.missing_found == 0
    full = poll_once(net.poller(full_every_seconds=0))
    assert full.missing_found == 1


def test_paging_follows_after_cursors_through_short_pages(net, graph):
    for i in range(230):
        lead_at(graph, FORM_1, hours_ago(3) + i)
    graph.sandbox.set_quirks(short_pages=40)
    report = poll_once(net.poller())
    assert report.leads_seen == 230 and report.enqueued == 230
    assert message_count(net.storage, LEADS_QUEUE) == 230


def test_graph_calls_stay_per_form_and_page_never_per_lead(net, graph):
    for i in range(150):
        lead_at(graph, FORM_1, hours_ago(2) + i)
    report = poll_once(net.poller())
    # debug_token + subscribed_apps + leadgen_forms + 2 pages of form 1 + 1 page of form 2
    assert report.graph_calls == 6


def test_checkpoint_does_not_move_when_the_queue_is_down(net, graph):
    lead_at(graph, FORM_1, hours_ago(1))
    net.sender = QueueSender(azurite_connection_string(queue=free_port()), timeout_seconds=1)
    report = poll_once(net.poller())
    assert report.error and "QueueUnavailable" in report.error
    assert net.store.coordination.get_state(f"checkpoint:{FORM_1}") is None
    assert is_open(net.store, "polling_failing")


def test_restart_in_the_middle_of_a_poll_loses_nothing_and_queues_nothing_twice(net, graph):
    first = [lead_at(graph, FORM_1, hours_ago(1) + i) for i in range(3)]
    second = [lead_at(graph, FORM_2, hours_ago(1) + i) for i in range(3)]
    graph.sandbox.add_fault("server_error", route="form_leads", count=1)  # form 1 read fails: the run stops
    broken = poll_once(net.poller())
    assert broken.error is not None
    resumed = poll_once(net.poller(overlap_seconds=0))
    assert resumed.enqueued == 6
    assert net.drain_ingest() == ["stored"] * 6
    assert set(sources(net)) == set(first + second)


def test_overlapping_runs_cannot_both_poll(net, graph):
    lead_at(graph, FORM_1, hours_ago(1))
    graph.sandbox.add_fault("slow", route="leadgen_forms", count=1, delay=1.5)
    results: list = []
    runner = threading.Thread(target=lambda: results.append(poll_once(net.poller())))
    runner.start()
    from tests.support.waiting import wait_until

    wait_until(lambda: graph.sandbox.calls().get("leadgen_forms", 0) >= 1, what="first run inside its poll")
    second = poll_once(net.poller())
    runner.join()
    assert second.skipped == "another poll is running"
    assert results[0].enqueued == 1
    assert message_count(net.storage, LEADS_QUEUE) == 1


def test_lost_subscription_is_restored_and_reported(net, graph):
    graph.sandbox.unsubscribe(PAGE)
    report = poll_once(net.poller())
    assert report.subscriptions == [{"page_id": PAGE, "subscribed": True, "restored": True, "error": None}]
    assert graph.sandbox.subscribed_apps(PAGE)[0]["subscribed_fields"] == ["leadgen"]
    assert is_open(net.store, "subscription_lost")
    assert poll_once(net.poller()).subscriptions[0]["restored"] is False
    assert not is_open(net.store, "subscription_lost")


def test_invalid_token_pauses_polling_and_raises_one_incident_until_it_works_again(net, graph):
    graph.sandbox.set_tokens(expired=[TOKEN])
    first = poll_once(net.poller())
    second = poll_once(net.poller())
    assert first.skipped == second.skipped == "token invalid: polling paused"
    assert first.token is not None and first.token["valid"] is False
    assert is_open(net.store, "token_invalid")
    assert graph.sandbox.calls().get("form_leads", 0) == 0
    opened = _audit_count(net, "incident_opened")
    assert opened == 1
    graph.sandbox.set_tokens(valid=[TOKEN])
    recovered = poll_once(net.poller())
    assert recovered.skipped is None and recovered.token is not None and recovered.token["valid"] is True
    assert not is_open(net.store, "token_invalid")
    assert _audit_count(net, "incident_resolved") == 1


def test_throttling_stops_graph_calls_until_the_regain_time(net, graph):
    graph.sandbox.add_fault("throttle", code=613, regain_minutes=3, count=1)
    report = poll_once(net.poller())
    assert report.error is not None and "GraphThrottled" in report.error
    calls = graph.sandbox.calls()["total"]
    with pytest.raises(GraphThrottled) as blocked:
        net.client.fetch_lead("123")
    assert 150 < blocked.value.regain_seconds <= 180
    assert poll_once(net.poller()).error is not None
    assert graph.sandbox.calls()["total"] == calls  # nothing left while blocked
    net.store.coordination.put_state("graph_throttle", {"until": 0})  # the regain time has passed
    from shared.graph.throttle import ThrottleGate

    net.client._gate = ThrottleGate(lambda: net.store.coordination)
    assert poll_once(net.poller()).error is None


def test_throttled_poll_does_not_open_the_polling_incident(net, graph):
    graph.sandbox.add_fault("throttle", code=80005, count=1)
    poll_once(net.poller())
    assert not is_open(net.store, "polling_failing")


def test_each_run_is_recorded_with_its_figures(net, graph):
    lead_at(graph, FORM_1, hours_ago(1))
    poll_once(net.poller())
    with sqlite3.connect(net.store.backend.path) as conn:  # type: ignore[attr-defined]
        row = conn.execute(
            "SELECT trigger, forms_checked, leads_seen, missing_found, enqueued, graph_calls, error FROM poll_runs"
        ).fetchone()
    assert row == ("timer", 2, 1, 1, 1, 5, None)


def test_on_demand_reconciliation_covers_days_in_chunks(net, graph):
    ids = [lead_at(graph, (FORM_1, FORM_2)[i % 2], hours_ago(70 - i * 10)) for i in range(7)]
    report = reconcile_window(net.poller(), hours=72, budget_seconds=100)
    assert report.complete and report.missing_found == 7 and report.enqueued == 7
    assert sorted(m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)) == sorted(ids)


def test_on_demand_reconciliation_stops_at_its_budget_and_says_how_far_it_got(net, graph):
    lead_at(graph, FORM_1, hours_ago(70))
    report = reconcile_window(net.poller(), hours=72, budget_seconds=0)
    assert report.complete is False
    assert report.window_end is not None and report.enqueued == 1


def test_on_demand_reconciliation_leaves_checkpoints_alone(net, graph):
    reconcile_window(net.poller(), hours=24, budget_seconds=100)
    assert net.store.coordination.get_state(f"checkpoint:{FORM_1}") is None


def _audit_count(net: SafetyNet, action: str) -> int:
    with sqlite3.connect(net.store.backend.path) as conn:  # type: ignore[attr-defined]
        return int(conn.execute("SELECT COUNT(*) FROM audit_log WHERE action = ?", (action,)).fetchone()[0])


def test_message_from_the_poller_names_its_source_and_form(net, graph):
    lead_id = lead_at(graph, FORM_2, hours_ago(1))
    poll_once(net.poller())
    [message] = drain_json(net.storage, LEADS_QUEUE)
    assert (message["facebook_lead_id"], message["source"], message["form_id"]) == (lead_id, "polling", FORM_2)
    assert "lead" not in message
    text = json.dumps(message, ensure_ascii=False)
    assert "Backfill Person" not in text and "p@example.com" not in text
    assert text.count(TOKEN) == 0


def test_a_crashed_poll_holds_its_lease_only_until_it_expires(net, graph):
    lead_at(graph, FORM_1, hours_ago(1))
    assert net.store.coordination.try_acquire_lease("poller", "crashed-instance", ttl_seconds=0.2)
    assert poll_once(net.poller()).skipped == "another poll is running"
    from tests.support.waiting import wait_until

    report = wait_until(lambda: (r := poll_once(net.poller())).skipped is None and r, timeout=5, what="lease expiry")
    assert report.enqueued == 1


def test_a_lead_with_16_500_cjk_characters_is_queued_and_stored_without_failing_its_form(net, graph):
    fields = [{"name": "full_name", "values": ["漢字"]}, {"name": "message", "values": ["漢" * 16_500]}]
    lead_id = graph.sandbox.create_lead(FORM_1, fields, created_time=hours_ago(1))
    report = poll_once(net.poller())
    assert report.error is None and report.enqueued == 1
    assert net.drain_ingest() == ["stored"]
    [stored] = net.store.leads.leads([lead_id])
    assert stored.fields["message"] == ["漢" * 16_500]


def ingest_all(net: SafetyNet, deps: IngestDeps) -> list[str]:
    """Run ingestion with `deps` over every visible `leads-inbound` message."""
    client = queue_client(net.storage, LEADS_QUEUE)
    outcomes = []
    while batch := list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30)):
        for message in batch:
            outcomes.append(ingest_lead_message(message.content.encode(), deps).outcome)
            client.delete_message(message)
    return outcomes


def test_a_lead_that_failed_permanently_is_dead_lettered_once_not_requeued_by_every_full_reconcile(net, graph):
    lead_at(graph, FORM_1, hours_ago(1))
    kept = lead_at(graph, FORM_2, hours_ago(1))
    invalid = {"created_time": "yesterday", "field_data": []}
    broken = dataclasses.replace(net.ingest_deps(), fetch_lead=lambda lead_id, page_id=None: {"id": lead_id, **invalid})
    assert poll_once(net.poller()).enqueued == 2
    assert sorted(ingest_all(net, broken)) == ["dead_lettered", "dead_lettered"]
    reprocessed = net.store.failed_events.latest_failed_event_for_lead(kept)
    assert reprocessed is not None
    net.store.failed_events.set_failed_event_status(reprocessed.id, "reprocessed")
    hourly = net.poller(full_every_seconds=0, requeue_after_seconds=0)  # every run a full pass, nothing held back
    reports = [poll_once(hourly) for _ in range(3)]
    assert [(r.missing_found, r.enqueued, r.dead_lettered_held) for r in reports] == [(1, 1, 1), (1, 1, 1), (1, 1, 1)]
    assert [m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)] == [kept] * 3
    assert len(net.store.failed_events.list_failed_events("open")) == 1


DAY = 24 * 3600


def poller_at(net: SafetyNet, at: float, **config: object):
    """A poller whose clock reads `at` (seconds since the epoch) when its run starts, moving on from there."""
    deps = net.poller(**config)
    offset = at - time.time()
    deps.clock = lambda: time.time() + offset
    return deps


def poll_runs(net: SafetyNet) -> list[tuple[str, str]]:
    with sqlite3.connect(net.store.backend.path) as conn:  # type: ignore[attr-defined]
        return conn.execute("SELECT window_start, window_end FROM poll_runs ORDER BY id").fetchall()


def test_after_a_three_day_outage_the_poller_backfills_from_its_checkpoint_and_reports_the_gap(net, graph):
    poll_once(poller_at(net, time.time() - 3 * DAY))  # the last run before the outage
    ids = [lead_at(graph, FORM_1, hours_ago(hours)) for hours in (70, 30, 1)]
    report = poll_once(net.poller())
    assert report.error is None and report.complete
    assert (report.missing_found, report.enqueued) == (3, 3)
    assert sorted(m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)) == sorted(ids)
    assert report.gap is not None and 71.9 < report.gap["hours"] < 72.2 and report.gap["capped"] is False
    assert is_open(net.store, "backfill_gap")
    window_start = poll_runs(net)[-1][0]
    assert window_start.startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * DAY)))
    assert poll_once(net.poller()).gap is None  # caught up: the next run reads from a fresh checkpoint
    assert not is_open(net.store, "backfill_gap")


def test_a_backfill_reaches_back_no_further_than_max_backfill_days_and_says_so(net, graph):
    poll_once(poller_at(net, time.time() - 5 * DAY))
    too_old, kept = lead_at(graph, FORM_1, hours_ago(72)), lead_at(graph, FORM_1, hours_ago(36))
    report = poll_once(net.poller(max_backfill_days=2))
    assert [m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)] == [kept]
    assert too_old != kept
    assert report.gap is not None and report.gap["capped"] is True
    assert 71.9 < report.gap["unreadable_hours"] < 72.2


def test_a_first_install_backfills_first_run_hours(net, graph):
    lead_at(graph, FORM_1, hours_ago(50))
    inside = lead_at(graph, FORM_2, hours_ago(40))
    report = poll_once(net.poller(first_run_hours=48))
    assert [m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)] == [inside]
    assert report.gap is None and not is_open(net.store, "backfill_gap")


def test_a_long_backfill_stops_at_its_budget_and_the_next_run_continues_from_the_checkpoint(net, graph):
    poll_once(poller_at(net, time.time() - 4 * DAY))
    ids = [lead_at(graph, (FORM_1, FORM_2)[i % 2], hours_ago(hours)) for i, hours in enumerate((90, 60, 30, 2))]
    runs = [poll_once(net.poller(backfill_budget_seconds=0))]
    while not runs[-1].complete and len(runs) < 12:
        runs.append(poll_once(net.poller(backfill_budget_seconds=0)))
    assert runs[-1].complete and len(runs) > 2
    assert sum(run.enqueued for run in runs) == 4
    assert sorted(m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)) == sorted(ids)

"""Idle mode: with nothing moving, the timers leave the database alone, and still miss nothing.

Real parts: the sandbox Graph API over HTTP, Azurite (queues and the `agentstate` table) and a
SQLite file whose backend counts its transactions, so "no database query" is measured, not assumed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.messaging.sweep import sweep_poison_queues
from shared.monitoring.dead_letter_watch import sweep_and_watch
from shared.monitoring.incidents import is_open
from shared.monitoring.watch import watch
from shared.ops.outbox import Outbox, flush
from shared.poller.idle_probe import poll_on_timer
from shared.storage.idle import IdleGate
from shared.storage.names import LEADS_QUEUE, NOTIFICATIONS_QUEUE, poison_queue
from shared.storage.state import TableState
from shared.store.failed_events import FailedEvent
from tests.support.queues import drain_json, message_count, queue_client, reset_queue
from tests.support.safety_net import APP_ID, APP_SECRET, PAGE, TOKEN, SafetyNet, build_safety_net
from tests.support.stores import CountingSqlite

FORM = PAGE + "01"
HOUR = 3600.0


@dataclass
class Idle:
    net: SafetyNet
    backend: CountingSqlite
    state: TableState
    gate: IdleGate
    graph: RunningSandbox

    def sql_during(self, action) -> int:  # type: ignore[no-untyped-def]
        """How many database transactions `action()` opened."""
        before = self.backend.transactions
        action()
        return self.backend.transactions - before

    def poll(self):  # type: ignore[no-untyped-def]
        return poll_on_timer(self.net.poller(), self.gate, self.state)


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], app_id=APP_ID, page_ids=[PAGE], app_secret=APP_SECRET, subscribed=True)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def idle(azurite, graph, tmp_path: Path, unique_suffix: str) -> Idle:
    storage = azurite.connection_string
    for queue in (LEADS_QUEUE, poison_queue(LEADS_QUEUE), NOTIFICATIONS_QUEUE, poison_queue(NOTIFICATIONS_QUEUE)):
        reset_queue(storage, queue)
    state = TableState(storage, table=f"state{unique_suffix}")
    backend = CountingSqlite(str(tmp_path / "leads.db"))
    net = build_safety_net(graph, storage, tmp_path, backend=backend, throttle_state=state)
    gate = IdleGate(state, idle_after_seconds=15 * 60, sql_every_seconds=3 * HOUR)
    return Idle(net, backend, state, gate, graph)


def created_lead(graph: RunningSandbox) -> str:
    """A lead created now, after the last poll; the next whole second starts after it (reads are by the second)."""
    fields = [{"name": "full_name", "values": ["Idle Person"]}, {"name": "email", "values": ["p@example.com"]}]
    lead_id = graph.sandbox.create_lead(FORM, fields, created_time=time.time())
    time.sleep(1.1)
    return lead_id


class TestTheState:
    def test_a_key_holds_the_object_last_put_and_a_missing_key_is_none(self, idle: Idle):
        assert idle.state.get_state("nothing") is None
        idle.state.put_state("k", {"at": 1.5, "why": "first"})
        idle.state.put_state("k", {"at": 2.5})
        assert idle.state.get_state("k") == {"at": 2.5}

    def test_an_app_that_never_handled_a_message_is_idle_and_a_touch_wakes_it(self, idle: Idle):
        assert idle.gate.idle()
        idle.gate.touch()
        assert not idle.gate.idle()

    def test_the_mode_is_off_unless_idle_after_is_set(self, idle: Idle):
        assert not IdleGate(idle.state, idle_after_seconds=0, sql_every_seconds=HOUR).idle()


class TestThePoller:
    def test_an_idle_poll_with_nothing_new_at_meta_asks_graph_and_never_the_database(self, idle: Idle):
        first = idle.poll()  # the first idle run is due: the full run, which records the baseline
        assert first.skipped is None and first.forms_checked == 2
        calls_before = sum(idle.graph.sandbox.calls().values())

        reports = []
        assert idle.sql_during(lambda: reports.append(idle.poll())) == 0

        assert reports[0].skipped == "idle: nothing new at Meta"
        asked = idle.graph.sandbox.calls()
        assert sum(asked.values()) > calls_before  # Meta was asked: token, subscriptions, forms, leads
        assert asked.get("debug_token", 0) >= 2

    def test_a_lead_the_webhook_missed_while_idle_is_queued_by_the_next_poll(self, idle: Idle, azurite):
        idle.poll()
        lead_id = created_lead(idle.graph)

        report = idle.poll()

        assert (report.skipped, report.missing_found, report.enqueued) == (None, 1, 1)
        assert message_count(azurite.connection_string, LEADS_QUEUE) == 1
        assert idle.net.drain_ingest() == ["stored"]
        assert idle.net.store.leads.existing_lead_ids([lead_id]) == {lead_id}
        assert not idle.gate.idle()  # news marks activity: the other timers query again

    def test_a_subscription_lost_while_idle_is_restored_and_alerted_by_the_next_poll(self, idle: Idle):
        idle.poll()
        idle.graph.sandbox.unsubscribe(PAGE)

        report = idle.poll()

        assert report.subscriptions[0]["restored"] is True
        assert is_open(idle.net.store, "subscription_lost")

    def test_an_idle_poll_still_runs_in_full_once_every_idle_sql_every(self, idle: Idle):
        offset = [0.0]
        idle.gate = IdleGate(idle.state, 15 * 60, 3 * HOUR, clock=lambda: time.time() + offset[0])
        idle.poll()
        assert idle.poll().skipped == "idle: nothing new at Meta"

        offset[0] = 3 * HOUR + 60
        report = idle.poll()

        assert report.skipped is None and report.forms_checked == 2


class TestTheOutboxFlush:
    def test_an_idle_flush_leaves_the_database_alone_until_a_message_moves(self, idle: Idle, azurite):
        store = idle.net.store
        outbox = Outbox(store, idle.net.sender, enabled=True, idle=idle.gate)
        idle.gate.ran("flush_outbox")  # its idle run is not due
        store.outbox.add_outbox("alert", "silence:1")  # a row whose message never went (a crash between)
        later = datetime.fromtimestamp(time.time() + 120, tz=UTC)

        assert idle.sql_during(lambda: flush(outbox, later)) == 0

        idle.gate.touch()
        assert flush(outbox, later) == 1
        assert message_count(azurite.connection_string, NOTIFICATIONS_QUEUE) == 1


class TestTheDeadLetterSweep:
    def run(self, idle: Idle):  # type: ignore[no-untyped-def]
        store, storage = idle.net.store, idle.net.storage

        def sweep(purge: bool):  # type: ignore[no-untyped-def]
            return sweep_poison_queues(storage, store, purge=purge)

        return sweep_and_watch(sweep, lambda: watch(store, datetime.now(UTC), 10, 6, 3), idle.gate)

    def test_an_idle_sweep_of_empty_poison_queues_leaves_the_database_alone(self, idle: Idle):
        idle.gate.ran("sweep_dead_letters")
        runs = []

        assert idle.sql_during(lambda: runs.append(self.run(idle))) == 0
        assert runs[0].watched is None

    def test_a_dead_letter_while_idle_is_recorded_and_watched_at_once(self, idle: Idle):
        idle.gate.ran("sweep_dead_letters")
        queue_client(idle.net.storage, poison_queue(LEADS_QUEUE)).send_message('{"facebook_lead_id":"77"}')

        run = self.run(idle)

        assert run.swept.moved == 1
        assert run.watched is not None and run.watched.dead_letters_open == 1
        assert not idle.gate.idle()

    def test_an_alert_a_watcher_raises_in_the_idle_slot_is_queued_by_the_next_flush(self, idle: Idle, azurite):
        store = idle.net.store
        store.failed_events.record_failed_event(FailedEvent(poison_queue(LEADS_QUEUE), "ingest", "gone", 1, "{}"))
        outbox = Outbox(store, idle.net.sender, enabled=True, idle=idle.gate)
        assert flush(outbox, datetime.now(UTC)) == 0  # the flush's query of this slot, before the watchers ran

        def sweep(purge: bool):  # type: ignore[no-untyped-def]
            return sweep_poison_queues(idle.net.storage, store, purge=purge)

        run = sweep_and_watch(sweep, lambda: watch(store, datetime.now(UTC), 1, 6, 3), idle.gate)
        assert run.watched is not None and is_open(store, "dead_letters_growing")

        assert flush(outbox, datetime.now(UTC) + timedelta(minutes=2)) == 1
        assert drain_json(azurite.connection_string, NOTIFICATIONS_QUEUE)[0]["kind"] == "alert"
        assert idle.gate.idle()  # an alert is not a lead: the app stays idle

    def test_an_active_sweep_purges_and_watches_every_run(self, idle: Idle):
        idle.gate.touch()
        run = self.run(idle)
        assert run.watched is not None and run.watched.dead_letters_open == 0

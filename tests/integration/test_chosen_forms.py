"""FACEBOOK_FORMS_INCLUDE / _EXCLUDE against real parts: Azurite, a SQLite file and the sandbox Graph over HTTP.

A change for a form that is not chosen is answered, counted per form and never queued; a message
already queued for one is skipped without a Graph call; the poller never reads one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared import stats
from shared.ingest.consumer import ingest_lead_message
from shared.messaging.messages import LeadMessage
from shared.messaging.sender import QueueSender
from shared.models.forms import ChosenForms
from shared.poller.idle_probe import PROBE_KEY, news_at_meta
from shared.poller.reconcile import FORM_QUESTIONS_STATE, poll_once
from shared.storage.counters import TableCounters
from shared.storage.names import LEADS_QUEUE, poison_queue
from shared.storage.state import TableState
from shared.webhook.intake import receive_webhook
from shared.webhook.signature import sign_body
from tests.support.queues import drain_json, message_count, reset_queue
from tests.support.safety_net import APP_ID, APP_SECRET, PAGE, TOKEN, SafetyNet, build_safety_net, hours_ago

SECRET = "chosen-forms-secret"
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


@pytest.fixture
def counters(azurite, unique_suffix: str) -> TableCounters:
    return TableCounters(azurite.connection_string, table=f"chosen{unique_suffix}")


def post_changes(sender: QueueSender, counters: TableCounters, chosen: ChosenForms, *changes: tuple[str, str]):
    """POST one signed delivery of (lead id, form id) changes, counted as the wiring counts ignored content."""
    values = [
        {"field": "leadgen", "value": {"leadgen_id": lead, "page_id": PAGE, "form_id": form, "created_time": 1}}
        for lead, form in changes
    ]
    body = json.dumps({"object": "page", "entry": [{"id": PAGE, "changes": values}]}).encode()

    def count_ignored(kind: str, n: int) -> None:
        counters.increment(f"webhook_ignored:{kind}", n)

    return receive_webhook(body, sign_body(body, SECRET), [SECRET], sender, 1024 * 1024, count_ignored, chosen)


def test_an_excluded_forms_change_is_answered_counted_per_form_and_never_queued(net, counters):
    chosen = ChosenForms.of(exclude=[FORM_2])
    result = post_changes(net.sender, counters, chosen, ("11", FORM_1), ("12", FORM_2), ("13", FORM_2))
    assert (result.outcome, result.queued, result.ignored, result.dead_lettered) == ("accepted", 1, 2, 0)
    assert [m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)] == ["11"]
    assert message_count(net.storage, poison_queue(LEADS_QUEUE)) == 0
    assert counters.totals()[f"webhook_ignored:form:{FORM_2}"] == 2


def test_ingestion_stats_show_todays_ignored_changes_per_form(net, counters):
    post_changes(net.sender, counters, ChosenForms.of(exclude=[FORM_2]), ("21", FORM_2), ("22", FORM_2))
    report = stats.ingestion(net.store, 24, lambda form_id: None, day_counters=counters.totals)
    assert report["ignored_forms"] == {FORM_2: 2}


def test_ingestion_stats_still_answer_when_the_counters_cannot_be_read(net):
    def unreadable() -> dict[str, int]:
        raise ConnectionError("table storage away")

    assert stats.ingestion(net.store, 24, lambda form_id: None, day_counters=unreadable)["ignored_forms"] == {}


def test_an_include_list_wins_over_the_exclude_list(net, counters):
    chosen = ChosenForms.of(include=[FORM_1], exclude=[FORM_1, FORM_2])
    result = post_changes(net.sender, counters, chosen, ("31", FORM_1), ("32", FORM_2))
    assert (result.queued, result.ignored) == (1, 1)
    assert [m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)] == ["31"]
    assert counters.totals() == {f"webhook_ignored:form:{FORM_2}": 1}


def test_a_queued_message_for_an_excluded_form_is_skipped_without_a_graph_call(net, graph):
    lead_id = graph.sandbox.create_lead(FORM_2, [{"name": "email", "values": ["p@example.com"]}])
    deps = net.ingest_deps()
    deps.form_chosen = ChosenForms.of(exclude=[FORM_2])
    message = LeadMessage(facebook_lead_id=lead_id, page_id=PAGE, form_id=FORM_2, source="reprocess")
    calls = graph.sandbox.calls().get("lead", 0)
    result = ingest_lead_message(message.to_text().encode(), deps)
    assert (result.outcome, result.reason) == ("skipped", "form not chosen")
    assert graph.sandbox.calls().get("lead", 0) == calls
    assert not net.store.leads.has_lead(lead_id)
    assert message_count(net.storage, LEADS_QUEUE) + message_count(net.storage, poison_queue(LEADS_QUEUE)) == 0


def test_a_message_without_its_form_is_not_stored_when_graph_names_an_excluded_form(net, graph):
    lead_id = graph.sandbox.create_lead(FORM_2, [{"name": "email", "values": ["p@example.com"]}])
    deps = net.ingest_deps()
    deps.form_chosen = ChosenForms.of(include=[FORM_1])
    message = LeadMessage(facebook_lead_id=lead_id, page_id=PAGE, source="reprocess")
    result = ingest_lead_message(message.to_text().encode(), deps)
    assert (result.outcome, result.reason) == ("skipped", "form not chosen")
    assert not net.store.leads.has_lead(lead_id)


def lead_on(graph: RunningSandbox, form: str, created: float) -> str:
    return graph.sandbox.create_lead(form, [{"name": "email", "values": ["p@example.com"]}], created_time=created)


def test_the_poller_skips_an_excluded_form(net, graph):
    kept = lead_on(graph, FORM_1, hours_ago(1))
    lead_on(graph, FORM_2, hours_ago(1))
    report = poll_once(net.poller(forms_exclude=(FORM_2,)))
    assert (report.forms_checked, report.leads_seen, report.enqueued) == (1, 1, 1)
    assert [m["facebook_lead_id"] for m in drain_json(net.storage, LEADS_QUEUE)] == [kept]
    assert net.store.coordination.get_state("checkpoint:" + FORM_2) is None


def test_the_poller_keeps_the_chosen_forms_question_keys_and_every_forms_name(net, graph):
    poll_once(net.poller(forms_include=(FORM_1,)))
    [form] = [form for form, _, _ in graph.sandbox.forms_of(PAGE) if form.id == FORM_1]
    assert net.store.coordination.get_state(FORM_QUESTIONS_STATE) == {FORM_1: [q["key"] for q in form.questions]}
    assert "email" in [q["key"] for q in form.questions]
    assert set(net.store.coordination.get_state("forms") or {}) == {FORM_1, FORM_2}


def test_the_idle_probe_sees_no_news_in_an_excluded_form(net, graph, azurite, unique_suffix):
    state = TableState(azurite.connection_string, table=f"chosenstate{unique_suffix}")
    state.put_state(PROBE_KEY, {"since": int(hours_ago(2))})
    lead_on(graph, FORM_2, hours_ago(1))
    assert news_at_meta(net.poller(forms_exclude=(FORM_2,)), state) is None
    state.put_state(PROBE_KEY, {"since": int(hours_ago(2))})
    assert news_at_meta(net.poller(), state) == "leads"

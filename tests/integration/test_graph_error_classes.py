"""Graph answers that are not Meta's verdict on a lead (a 408, a proxy's HTML page) are retried, capped.

Against the sandbox Graph API over HTTP (its `proxy_error` fault answers as a gateway in front of
Graph would: an HTML page, no Graph envelope), a real SQLite file and real Azurite queues.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.errors import TokenInvalid
from shared.graph.client import GraphClient
from shared.ingest.consumer import ingest_lead_message
from shared.ingest.pipeline import IngestDeps
from shared.messaging.messages import LeadMessage
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.storage.names import LEADS_QUEUE, poison_queue
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.queues import drain_json, message_count, reset_queue
from tests.support.waiting import wait_until

TOKEN = "error-classes-token"
PAGE = "1000000000001"
FORM = PAGE + "01"
POISON = poison_queue(LEADS_QUEUE)


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    with serve(SandboxGraph([TOKEN], page_ids=[PAGE])) as running:
        yield running


@pytest.fixture
def token_errors() -> list[TokenInvalid]:
    return []


@pytest.fixture
def deps(azurite, graph: RunningSandbox, tmp_path: Path, token_errors: list[TokenInvalid]) -> IngestDeps:
    for queue in (LEADS_QUEUE, POISON):
        reset_queue(azurite.connection_string, queue)
    store = Store(SqliteBackend(str(tmp_path / "leads.db")))
    store.migrate()
    client = GraphClient(
        graph.url, "v26.0", token=lambda: TOKEN, timeout_seconds=2, on_token_invalid=token_errors.append
    )
    return IngestDeps(store, client.fetch_lead, QueueSender(azurite.connection_string), RetryPolicy(5, 1, 60))


def message_for(lead_id: str, attempt: int = 0) -> bytes:
    event = {"leadgen_id": lead_id, "page_id": PAGE, "form_id": FORM, "created_time": 1790000000}
    fields = {"facebook_lead_id": lead_id, "page_id": PAGE, "form_id": FORM, "event": event, "attempt": attempt}
    return LeadMessage.model_validate(fields).to_text().encode()


def create_lead(graph: RunningSandbox) -> str:
    return graph.sandbox.create_lead(FORM, [{"name": "email", "values": ["a@example.com"]}])


@pytest.mark.parametrize("status", [408, 403, 404, 400], ids=["408", "html-403", "html-404", "html-400"])
def test_a_proxy_error_requeues_the_lead_with_a_delay_and_a_counted_attempt(deps, graph, azurite, status):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault_spec({"kind": "proxy_error", "status": status, "count": 1})
    result = ingest_lead_message(message_for(lead_id), deps)
    assert (result.outcome, result.attempt) == ("retrying", 1)
    assert result.delay_seconds is not None and result.delay_seconds > 0
    assert message_count(azurite.connection_string, POISON) == 0
    [retry] = wait_until(lambda: drain_json(azurite.connection_string, LEADS_QUEUE), what="the re-queued copy")
    assert retry["attempt"] == 1 and retry["last_error"].startswith("GraphUnavailable")
    assert f"status={status}" in retry["last_error"]


def test_an_html_403_from_a_proxy_does_not_pause_the_integration_as_a_bad_token(deps, graph, token_errors):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault_spec({"kind": "proxy_error", "status": 403, "count": 1})
    assert ingest_lead_message(message_for(lead_id), deps).outcome == "retrying"
    assert token_errors == []


def test_the_lead_is_stored_once_the_proxy_answers_again(deps, graph, azurite):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault_spec({"kind": "proxy_error", "status": 408, "count": 1})
    ingest_lead_message(message_for(lead_id), deps)
    [retry] = wait_until(lambda: drain_json(azurite.connection_string, LEADS_QUEUE), what="the re-queued copy")
    assert ingest_lead_message(message_for(lead_id, attempt=retry["attempt"]), deps).outcome == "stored"


def test_a_lead_that_keeps_getting_proxy_errors_is_dead_lettered_after_the_cap(deps, graph, azurite):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault_spec({"kind": "proxy_error", "status": 408})
    result = ingest_lead_message(message_for(lead_id, attempt=deps.policy.max_attempts - 1), deps)
    assert result.outcome == "dead_lettered"
    assert f"attempts exhausted after {deps.policy.max_attempts}" in (result.reason or "")
    assert message_count(azurite.connection_string, POISON) == 1

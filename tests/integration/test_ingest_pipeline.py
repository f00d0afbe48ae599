"""Ingestion against the sandbox Graph API over HTTP, a real SQLite file and real Azurite queues."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.graph.client import GraphClient
from shared.ingest.consumer import ingest_lead_message
from shared.ingest.pipeline import IngestDeps, Ingested
from shared.messaging.messages import LeadMessage
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.storage.names import LEADS_QUEUE, poison_queue
from shared.store import Store
from shared.store.mssql import MssqlBackend
from shared.store.sqlite import SqliteBackend
from tests.support.pyodbc_double import Server, deadlock
from tests.support.queues import drain_json, message_count, reset_queue
from tests.support.waiting import wait_until

TOKEN = "pipeline-test-token"
PAGE = "1000000000001"
FORM = PAGE + "01"
POISON = poison_queue(LEADS_QUEUE)


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    with serve(SandboxGraph([TOKEN], page_ids=[PAGE])) as running:
        yield running


@pytest.fixture
def deps(azurite, graph: RunningSandbox, tmp_path: Path) -> IngestDeps:
    for queue in (LEADS_QUEUE, POISON):
        reset_queue(azurite.connection_string, queue)
    store = Store(SqliteBackend(str(tmp_path / "leads.db")))
    store.migrate()
    client = GraphClient(graph.url, "v26.0", token=lambda: TOKEN, timeout_seconds=2)
    return IngestDeps(store, client.fetch_lead, QueueSender(azurite.connection_string), RetryPolicy(5, 1, 60))


def create_lead(graph: RunningSandbox, name: str = "Zoë Åström 🌞") -> str:
    return graph.sandbox.create_lead(
        FORM,
        [
            {"name": "full_name", "values": [name]},
            {"name": "email", "values": ["Zoe@Example.com"]},
            {"name": "which_services", "values": ["solar", "heat pump"]},
        ],
        ad_id="6000000000001",
        ad_name="Autumn campaign ad",
        campaign_id="7000000000001",
    )


def message_for(lead_id: str, **extra: object) -> bytes:
    event = {"leadgen_id": lead_id, "page_id": PAGE, "form_id": FORM, "created_time": 1790000000}
    fields = {"facebook_lead_id": lead_id, "page_id": PAGE, "form_id": FORM, "event": event, **extra}
    return LeadMessage.model_validate(fields).to_text().encode()


def stored_rows(deps: IngestDeps) -> list[sqlite3.Row]:
    backend = deps.store.backend
    assert isinstance(backend, SqliteBackend)
    with sqlite3.connect(backend.path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM leads").fetchall()


def test_lead_is_fetched_validated_and_stored_with_every_answer(deps, graph):
    lead_id = create_lead(graph)
    result = ingest_lead_message(message_for(lead_id), deps)
    assert result.outcome == "stored" and result.message is not None and result.message.facebook_lead_id == lead_id
    [row] = stored_rows(deps)
    assert row["full_name"] == "Zoë Åström 🌞"
    assert row["email"] == "zoe@example.com"
    assert row["ad_id"] == "6000000000001" and row["campaign_id"] == "7000000000001"
    assert json.loads(row["fields_json"])["which_services"] == ["solar", "heat pump"]
    assert graph.sandbox.calls()["lead"] == 1


def test_second_delivery_is_a_duplicate_and_costs_no_graph_call(deps, graph):
    lead_id = create_lead(graph)
    ingest_lead_message(message_for(lead_id), deps)
    result = ingest_lead_message(message_for(lead_id), deps)
    assert result.outcome == "duplicate"
    assert len(stored_rows(deps)) == 1
    assert graph.sandbox.calls()["lead"] == 1


def test_a_webhook_lead_row_keeps_when_the_webhook_received_it_even_after_a_retry(deps, graph, azurite):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault("server_error", count=1)
    deps.policy = RetryPolicy(max_attempts=5, retry_base_seconds=0, retry_max_seconds=60)
    ingest_lead_message(message_for(lead_id, received_at="2026-11-27T10:00:00.125Z"), deps)
    [retry] = drain_json(azurite.connection_string, LEADS_QUEUE)
    assert ingest_lead_message(json.dumps(retry).encode(), deps).outcome == "stored"
    [row] = stored_rows(deps)
    assert row["webhook_received_at"] == "2026-11-27T10:00:00.125Z"


def test_a_polled_lead_row_has_no_webhook_receive_time(deps, graph):
    lead_id = create_lead(graph)
    assert ingest_lead_message(message_for(lead_id, source="polling"), deps).outcome == "stored"
    [row] = stored_rows(deps)
    assert row["webhook_received_at"] is None


def carrying_answers(lead_id: str, answers: dict[str, Any], **extra: object) -> bytes:
    """A message in the old shape, with the lead's answers in `lead` (queued before ids-only messages)."""
    return json.dumps({**json.loads(message_for(lead_id, **extra)), "lead": answers}).encode()


def test_a_message_still_carrying_the_lead_is_fetched_from_graph_not_trusted(deps, graph):
    lead_id = create_lead(graph)
    stale = {"id": lead_id, "created_time": "2026-11-27T12:00:00+0000", "field_data": []}
    calls_before = graph.sandbox.calls().get("lead", 0)
    result = ingest_lead_message(carrying_answers(lead_id, stale, source="polling"), deps)
    assert result.outcome == "stored"
    assert graph.sandbox.calls().get("lead", 0) == calls_before + 1
    assert stored_rows(deps)[0]["source"] == "polling"
    assert stored_rows(deps)[0]["full_name"] == "Zoë Åström 🌞"


def test_a_retry_carries_the_lead_id_never_its_answers(deps, graph, azurite):
    lead_id = create_lead(graph)
    answers = GraphClient(graph.url, "v26.0", token=lambda: TOKEN).fetch_lead(lead_id)
    graph.sandbox.add_fault("server_error", route="lead", count=1)
    result = ingest_lead_message(carrying_answers(lead_id, answers, source="polling"), deps)
    assert result.outcome == "retrying"
    [retry] = wait_until(lambda: drain_json(azurite.connection_string, LEADS_QUEUE), what="the delayed retry")
    assert retry["facebook_lead_id"] == lead_id and "lead" not in retry
    text = json.dumps(retry, ensure_ascii=False)
    assert "Zoë" not in text and "Zoe@Example.com" not in text


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "token_expired"},
        {"kind": "throttle", "code": 613, "regain_minutes": 2},
        {"kind": "throttle", "code": 80005},
        {"kind": "server_error"},
    ],
    ids=["token-190", "throttle-613", "throttle-80005", "server-5xx"],
)
def test_transient_graph_failure_requeues_with_a_delay_not_poison(deps, graph, azurite, fault):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault_spec({**fault, "count": 1})
    result = ingest_lead_message(message_for(lead_id), deps)
    assert result.outcome == "retrying"
    assert result.delay_seconds is not None and result.delay_seconds > 0
    if fault.get("code") == 613:
        assert result.delay_seconds >= 120
    assert message_count(azurite.connection_string, POISON) == 0
    assert message_count(azurite.connection_string, LEADS_QUEUE) == 1
    assert stored_rows(deps) == []


def test_requeued_message_carries_the_attempt_and_then_stores(deps, graph, azurite):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault("server_error", count=1)
    deps.policy = RetryPolicy(max_attempts=5, retry_base_seconds=0, retry_max_seconds=60)
    ingest_lead_message(message_for(lead_id), deps)
    [retry] = drain_json(azurite.connection_string, LEADS_QUEUE)
    assert retry["attempt"] == 1 and retry["last_error"].startswith("GraphUnavailable")
    assert ingest_lead_message(json.dumps(retry).encode(), deps).outcome == "stored"


def test_graph_timeout_is_transient(deps, graph):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault("slow", count=1, delay=4)
    assert ingest_lead_message(message_for(lead_id), deps).outcome == "retrying"


def test_unfetchable_lead_100_33_is_dead_lettered_with_its_reason(deps, azurite):
    result = ingest_lead_message(message_for("444444444444"), deps)
    assert result.outcome == "dead_lettered"
    [letter] = drain_json(azurite.connection_string, POISON)
    assert letter["dead_letter"]["error_type"] == "LeadNotFetchable"
    assert "code=100 subcode=33" in letter["dead_letter"]["reason"]
    assert letter["message"]["facebook_lead_id"] == "444444444444"
    backend = deps.store.backend
    with sqlite3.connect(backend.path) as conn:
        row = conn.execute("SELECT stage, facebook_lead_id, error, status FROM failed_events").fetchone()
    assert row[:2] == ("ingest", "444444444444") and "LeadNotFetchable" in row[2] and row[3] == "open"


def test_attempts_exhausted_becomes_a_dead_letter(deps, graph, azurite):
    lead_id = create_lead(graph)
    graph.sandbox.add_fault("server_error")
    result = ingest_lead_message(message_for(lead_id, attempt=4), deps)
    assert result.outcome == "dead_lettered"
    assert "attempts exhausted after 5" in (result.reason or "")
    assert message_count(azurite.connection_string, POISON) == 1


def test_malformed_message_is_dead_lettered(deps, azurite):
    result = ingest_lead_message(b'{"kind": "lead"}', deps)
    assert result.outcome == "dead_lettered"
    [letter] = drain_json(azurite.connection_string, POISON)
    assert letter["raw_body"] == '{"kind": "lead"}'


def test_invalid_lead_from_graph_is_dead_lettered(deps, azurite):
    broken = {"id": "123", "created_time": "yesterday", "field_data": []}
    deps = dataclasses.replace(deps, fetch_lead=lambda _lead_id, _page_id=None: broken)
    result = ingest_lead_message(message_for("123", source="polling"), deps)
    assert result.outcome == "dead_lettered"
    assert "created_time" in (result.reason or "")


def test_store_unavailable_requeues_instead_of_poisoning(deps, graph, azurite, tmp_path):
    lead_id = create_lead(graph)
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    deps.store = Store(SqliteBackend(str(blocker / "leads.db")))
    result = ingest_lead_message(message_for(lead_id), deps)
    assert result.outcome == "retrying" and "StoreUnavailable" in (result.reason or "")
    assert message_count(azurite.connection_string, POISON) == 0


# --- on the Azure SQL backend (the pyodbc double: SQL Server's types, limits and errors) ----------


class NoToken:
    """A managed-identity credential while IMDS is out: every token request fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        from azure.core.exceptions import ClientAuthenticationError

        raise ClientAuthenticationError("ManagedIdentityCredential authentication unavailable")


def on_azure_sql(deps: IngestDeps, tmp_path: Path, token: Any = None) -> tuple[IngestDeps, Server]:
    """The same pipeline with the store on `MssqlBackend` over the double."""
    server = Server(tmp_path / "azure-sql")
    backend = MssqlBackend(
        "Driver={ODBC Driver 18 for SQL Server};Server=double;",
        token=token,
        connect=server.connect,
        sleep=lambda s: None,
    )
    deps.store = Store(backend, migrate_on_first_use=True)
    return deps, server


def test_a_token_outage_on_azure_sql_requeues_with_a_delay_never_poison(deps, graph, azurite, tmp_path):
    lead_id = create_lead(graph)
    deps, _ = on_azure_sql(deps, tmp_path, token=NoToken())
    result = ingest_lead_message(message_for(lead_id), deps)
    assert result.outcome == "retrying" and "no access token" in (result.reason or "")
    assert result.delay_seconds is not None and result.delay_seconds > 0
    assert message_count(azurite.connection_string, POISON) == 0
    assert message_count(azurite.connection_string, LEADS_QUEUE) == 1


def test_a_deadlock_on_azure_sql_requeues_and_the_retry_stores_the_lead(deps, graph, azurite, tmp_path):
    lead_id = create_lead(graph)
    deps, server = on_azure_sql(deps, tmp_path)
    deps.policy = RetryPolicy(max_attempts=5, retry_base_seconds=0, retry_max_seconds=60)
    server.fail_on("INSERT INTO leads", deadlock())
    assert ingest_lead_message(message_for(lead_id), deps).outcome == "retrying"
    [retry] = drain_json(azurite.connection_string, LEADS_QUEUE)
    assert ingest_lead_message(json.dumps(retry).encode(), deps).outcome == "stored"
    assert message_count(azurite.connection_string, POISON) == 0


def test_a_300_character_phone_and_a_5000_character_answer_store_the_lead_on_azure_sql(deps, graph, tmp_path):
    lead_id = graph.sandbox.create_lead(
        FORM,
        [
            {"name": "full_name", "values": ["Zoë " * 150]},
            {"name": "phone_number", "values": ["+1 " + "5" * 297]},
            {"name": "message", "values": ["x" * 5_000]},
        ],
    )
    deps, _ = on_azure_sql(deps, tmp_path)
    assert ingest_lead_message(message_for(lead_id), deps).outcome == "stored"
    [lead] = deps.store.leads.leads([lead_id])
    assert lead.fields["message"] == ["x" * 5_000] and lead.fields["phone_number"] == ["+1 " + "5" * 297]
    assert lead.phone_number is not None and len(lead.phone_number) == 64


def test_an_id_azure_sql_cannot_take_is_a_dead_letter_whose_reason_quotes_no_data(deps, graph, azurite, tmp_path):
    too_long = "7" * 70
    carried = {"id": too_long, "created_time": "2026-11-27T12:00:00+0000", "field_data": []}
    deps, _ = on_azure_sql(deps, tmp_path)
    deps = dataclasses.replace(deps, fetch_lead=lambda _lead_id, _page_id=None: carried)
    result = ingest_lead_message(message_for(too_long, source="polling"), deps)
    assert result.outcome == "dead_lettered"
    assert "StoreRefused" in (result.reason or "") and "leads.facebook_lead_id" in (result.reason or "")
    [letter] = drain_json(azurite.connection_string, POISON)
    assert too_long not in letter["dead_letter"]["reason"]


def test_a_stored_webhook_lead_reports_how_long_it_took_from_meta_and_from_the_webhook(deps, graph):
    lead_id = create_lead(graph)
    received = datetime(2026, 11, 27, 10, tzinfo=UTC)
    result = ingest_lead_message(message_for(lead_id, received_at=received.isoformat()), deps)
    assert isinstance(result.result, Ingested)
    dims = result.result.dimensions()
    [row] = stored_rows(deps)
    created = datetime.fromisoformat(row["created_time"])
    assert abs(dims["created_to_stored_ms"] - dims["webhook_to_stored_ms"] - ms(received - created)) <= 1
    assert dims["webhook_to_stored_ms"] >= ms(datetime.fromisoformat(row["stored_at"]) - received) - 1


def test_a_stored_polled_lead_reports_no_webhook_time(deps, graph):
    result = ingest_lead_message(message_for(create_lead(graph), source="polling"), deps)
    assert isinstance(result.result, Ingested)
    assert result.result.webhook_to_stored_ms is None and result.result.created_to_stored_ms is not None


def ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000

"""End to end through the devhost: signed webhooks → Azurite queue → ingestion → SQLite → ops route."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devhost.defaults import LOCAL_DEFAULTS
from fakes.simulate import build_webhook_body, sign, simulate
from shared.storage.names import LEADS_QUEUE, poison_queue
from tests.support.devhost_process import DevhostProcess, devhost_env, start_devhost
from tests.support.queues import drain_json, message_count
from tests.support.waiting import wait_until

SECRET = LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"]
TOKEN = LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]
PAGE = LOCAL_DEFAULTS["FACEBOOK_PAGE_IDS"]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e") / "leads.db"


@pytest.fixture(scope="module")
def devhost(storage, graph, db_path, tmp_path_factory) -> Iterator[DevhostProcess]:
    env = devhost_env(storage.connection_string, graph.url, str(db_path))
    running = start_devhost(env, tmp_path_factory.mktemp("logs") / "devhost.log")
    yield running
    assert running.stop() == 0, running.log()


def webhook_url(devhost: DevhostProcess) -> str:
    return f"{devhost.url}/api/webhook/facebook/leads"


def stored_count(db_path: Path) -> int:
    """Leads stored so far; 0 until the ingestion worker's first lead has migrated the file."""
    with sqlite3.connect(db_path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'leads'").fetchone():
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM leads").fetchone()[0])


def test_fifty_leads_with_duplicates_and_batches_are_stored_exactly_once(devhost, graph, storage, db_path):
    report = simulate(
        graph.url, webhook_url(devhost), SECRET, TOKEN, [PAGE], "v26.0",
        leads=50, rate=200, duplicates=0.2, batch=4, seed=11,
    )  # fmt: skip
    assert report.statuses == {200: report.posts}
    assert report.duplicate_deliveries > 0 and report.posts < report.deliveries

    def drained() -> bool:
        return stored_count(db_path) >= 50 and message_count(storage.connection_string, LEADS_QUEUE) == 0

    wait_until(drained, timeout=60, what="50 leads stored and the queue drained")
    assert stored_count(db_path) == 50
    assert message_count(storage.connection_string, poison_queue(LEADS_QUEUE)) == 0
    with sqlite3.connect(db_path) as conn:
        duplicates = conn.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'duplicate'").fetchone()[0]
    assert duplicates == report.duplicate_deliveries

    answer = requests.get(f"{devhost.url}/api/ops/last-leads", params={"limit": 100}, timeout=10)
    assert answer.status_code == 200
    leads = answer.json()["leads"]
    assert sorted(lead["facebook_lead_id"] for lead in leads) == sorted(report.lead_ids)
    created = [lead["created_time"] for lead in leads]
    assert created == sorted(created, reverse=True)
    sandbox_leads = {lead["id"]: lead for lead in graph.sandbox.all_leads()}
    for lead in leads:
        sent = sandbox_leads[lead["facebook_lead_id"]]["field_data"]
        assert lead["fields"] == {item["name"]: item["values"] for item in sent}
        assert lead["source"] == "webhook" and lead["page_id"] == PAGE
        assert lead["created_time"].endswith("Z")


def test_bad_signature_is_401_and_the_queue_is_unchanged(devhost, storage):
    drain_json(storage.connection_string, LEADS_QUEUE)
    body = build_webhook_body([{"leadgen_id": "123", "page_id": PAGE, "form_id": PAGE + "01"}])
    answer = requests.post(
        webhook_url(devhost),
        data=body,
        headers={"X-Hub-Signature-256": sign(body, "wrong-secret"), "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 401
    assert message_count(storage.connection_string, LEADS_QUEUE) == 0


def test_handshake_over_http_echoes_the_challenge(devhost):
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": LOCAL_DEFAULTS["FACEBOOK_VERIFY_TOKEN"],
        "hub.challenge": "42x",
    }
    answer = requests.get(webhook_url(devhost), params=params, timeout=10)
    assert (answer.status_code, answer.text) == (200, "42x")
    assert answer.headers["Content-Type"].startswith("text/plain")
    params["hub.verify_token"] = "wrong"
    assert requests.get(webhook_url(devhost), params=params, timeout=10).status_code == 403


def test_signed_garbage_is_400_and_dead_lettered_over_http(devhost, storage):
    body = b"not json at all"
    answer = requests.post(
        webhook_url(devhost), data=body, headers={"X-Hub-Signature-256": sign(body, SECRET)}, timeout=10
    )
    assert answer.status_code == 400
    letters = wait_until(lambda: drain_json(storage.connection_string, poison_queue(LEADS_QUEUE)), what="dead letter")
    assert letters[0]["dead_letter"]["reason"] == "body is not JSON"


def test_oversized_body_is_413_over_http(devhost):
    body = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    answer = requests.post(
        webhook_url(devhost), data=body, headers={"X-Hub-Signature-256": sign(body, SECRET)}, timeout=10
    )
    assert answer.status_code == 413


def test_health_is_ok_when_queue_database_and_facebook_answer(devhost):
    answer = requests.get(f"{devhost.url}/api/health", timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"queue", "database", "facebook", "email"}
    assert body["checks"]["email"]["status"] == "disabled"
    assert SECRET not in json.dumps(body) and "AccountKey" not in json.dumps(body)

"""Recovery scenarios through the devhost, the sandbox Graph API and Azurite: nothing lost, nothing twice."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devhost.defaults import LOCAL_DEFAULTS
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.simulate import build_webhook_body, sign
from shared.storage.names import LEADS_QUEUE, poison_queue
from tests.support.azurite import Azurite
from tests.support.devhost_process import DevhostProcess, devhost_env, start_devhost
from tests.support.queues import message_count, reset_queue
from tests.support.waiting import wait_until

SECRET = LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"]
TOKEN = LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]
APP_ID = LOCAL_DEFAULTS["FACEBOOK_APP_ID"]
PAGE = LOCAL_DEFAULTS["FACEBOOK_PAGE_IDS"]
FORM = PAGE + "01"
POISON = poison_queue(LEADS_QUEUE)
FAST = {
    "POLL_SCHEDULE": "*/2 * * * * *",
    "POLL_GRACE_SECONDS": "0",
    "TOKEN_RECHECK_SECONDS": "1",
    "PAUSED_RETRY_SECONDS": "1",
    "RETRY_BASE_SECONDS": "1",
    "RETRY_MAX_SECONDS": "2",
}


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], app_id=APP_ID, page_ids=[PAGE], app_secret=SECRET, subscribed=True)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def clean_storage(storage: Azurite) -> str:
    for queue in (LEADS_QUEUE, POISON):
        reset_queue(storage.connection_string, queue)
    return storage.connection_string


class Stack:
    def __init__(self, storage: str, graph: RunningSandbox, tmp: Path) -> None:
        self.storage, self.graph, self.tmp = storage, graph, tmp
        self.db = tmp / "db" / "leads.db"
        self.hosts: list[DevhostProcess] = []

    def start(self, **overrides: str) -> DevhostProcess:
        env = devhost_env(self.storage, self.graph.url, str(self.db), **{**FAST, **overrides})
        host = start_devhost(env, self.tmp / f"devhost-{len(self.hosts)}.log")
        self.hosts.append(host)
        return host

    def post_leads(self, host: DevhostProcess, lead_ids: list[str]) -> None:
        changes = [
            {"leadgen_id": i, "page_id": PAGE, "form_id": FORM, "created_time": int(time.time())} for i in lead_ids
        ]
        body = build_webhook_body(changes)
        answer = requests.post(
            f"{host.url}/api/webhook/facebook/leads",
            data=body,
            headers={"X-Hub-Signature-256": sign(body, SECRET)},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

    def rows(self) -> dict[str, str]:
        if not self.db.exists():
            return {}
        try:
            with sqlite3.connect(self.db) as conn:
                return dict(conn.execute("SELECT facebook_lead_id, source FROM leads").fetchall())
        except sqlite3.OperationalError:
            return {}

    def audit(self, action: str) -> int:
        with sqlite3.connect(self.db) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM audit_log WHERE action = ?", (action,)).fetchone()[0])


@pytest.fixture
def stack(clean_storage, graph, tmp_path) -> Iterator[Stack]:
    created = Stack(clean_storage, graph, tmp_path)
    yield created
    for host in created.hosts:
        host.stop()


def new_leads(graph: RunningSandbox, count: int, created: float | None = None) -> list[str]:
    fields = [{"name": "full_name", "values": ["Recovery Test"]}, {"name": "email", "values": ["r@example.com"]}]
    return [graph.sandbox.create_lead(FORM, fields, created_time=created) for _ in range(count)]


def test_two_hours_without_webhooks_are_backfilled_then_late_deliveries_are_duplicates(stack, graph):
    missed = new_leads(graph, 8, created=time.time() - 2 * 3600)
    host = stack.start()
    wait_until(lambda: len(stack.rows()) == 8, timeout=30, what="poller backfill")
    assert stack.rows() == dict.fromkeys(missed, "polling")
    stack.post_leads(host, missed)
    wait_until(lambda: stack.audit("duplicate") >= 8, timeout=30, what="late deliveries counted")
    assert len(stack.rows()) == 8


def test_database_unavailable_for_a_while_ends_with_every_lead_stored_and_nothing_poisoned(stack, graph):
    stack.db.parent.write_text("a file where the database folder should be")  # the store cannot open
    host = stack.start()
    ids = new_leads(graph, 6)
    stack.post_leads(host, ids)
    wait_until(lambda: host.log().count("retrying later") >= 12, timeout=30, what="retries while the database is down")
    assert stack.rows() == {}
    assert message_count(stack.storage, POISON) == 0
    stack.db.parent.unlink()
    stack.db.parent.mkdir()
    wait_until(lambda: set(stack.rows()) == set(ids), timeout=40, what="leads stored after recovery")
    assert message_count(stack.storage, POISON) == 0


def test_expired_token_raises_one_alert_no_dead_letters_and_all_leads_land_after_renewal(stack, graph):
    host = stack.start()
    wait_until(lambda: stack.db.exists(), timeout=20, what="store created by the first poll")
    graph.sandbox.set_tokens(expired=[TOKEN])
    ids = new_leads(graph, 5)
    stack.post_leads(host, ids)
    wait_until(lambda: stack.audit("incident_opened") >= 1, timeout=20, what="token incident")
    calls = graph.sandbox.calls()["total"]
    wait_until(lambda: graph.sandbox.calls()["total"] >= calls + 6, timeout=30, what="probes against the expired token")
    assert stack.rows() == {}
    assert stack.audit("incident_opened") == 1
    assert message_count(stack.storage, POISON) == 0
    graph.sandbox.set_tokens(valid=[TOKEN])
    wait_until(lambda: set(stack.rows()) == set(ids), timeout=40, what="leads stored after renewal")
    wait_until(lambda: stack.audit("incident_resolved") == 1, timeout=20, what="recovery recorded")
    assert message_count(stack.storage, POISON) == 0


def test_killed_mid_batch_the_host_restarts_and_stores_every_lead_once(stack, graph):
    host = stack.start(DEVHOST_QUEUE_LEASE_SECONDS="3", **{"AzureWebJobs.poll_leads.Disabled": "true"})
    graph.sandbox.add_fault("slow", route="lead", delay=1.0, count=10)
    ids = new_leads(graph, 10)
    stack.post_leads(host, ids)
    wait_until(lambda: graph.sandbox.calls().get("lead", 0) >= 2, timeout=20, what="ingestion under way")
    host.process.send_signal(signal.SIGKILL)
    host.process.wait(timeout=10)
    stack.start(DEVHOST_QUEUE_LEASE_SECONDS="3")
    wait_until(lambda: set(stack.rows()) == set(ids), timeout=60, what="every lead stored after the restart")
    assert len(stack.rows()) == 10
    assert message_count(stack.storage, POISON) == 0


def test_removed_subscription_is_restored_on_the_next_run_and_reported(stack, graph):
    graph.sandbox.unsubscribe(PAGE)
    stack.start()
    wait_until(lambda: graph.sandbox.subscribed_apps(PAGE), timeout=20, what="subscription restored")
    # the run audits the restore just after Meta accepted it: wait for the row, do not race it
    wait_until(lambda: stack.audit("subscription_restored") >= 1, timeout=10, what="restore audited")
    wait_until(lambda: stack.audit("incident_opened") >= 1, timeout=10, what="incident opened")
    assert stack.audit("incident_opened") == 1  # once, however many runs saw it


def test_unfetchable_lead_is_listed_with_its_reason_and_reprocess_works(stack, graph):
    host = stack.start()
    stack.post_leads(host, ["444444444444"])
    events = wait_until(
        lambda: requests.get(f"{host.url}/api/ops/failed-events", timeout=10).json()["events"],
        timeout=20,
        what="dead letter listed",
    )
    [event] = events
    assert event["facebook_lead_id"] == "444444444444" and "code=100 subcode=33" in event["error"]
    answer = requests.post(f"{host.url}/api/ops/reprocess/{event['id']}", timeout=10)
    assert answer.status_code == 202 and answer.json()["queued"]["facebook_lead_id"] == "444444444444"
    fresh = wait_until(
        lambda: [
            e
            for e in requests.get(f"{host.url}/api/ops/failed-events", timeout=10).json()["events"]
            if e["id"] != event["id"]
        ],
        timeout=20,
        what="the reprocessed lead failing visibly again",
    )
    assert fresh[0]["facebook_lead_id"] == "444444444444"
    assert requests.post(f"{host.url}/api/ops/reprocess/777", timeout=10).status_code == 404


def test_malformed_payload_is_listed_and_refused_for_reprocess(stack, graph):
    host = stack.start()
    body = b"{broken json"
    answer = requests.post(
        f"{host.url}/api/webhook/facebook/leads",
        data=body,
        headers={"X-Hub-Signature-256": sign(body, SECRET)},
        timeout=10,
    )
    assert answer.status_code == 400
    [event] = wait_until(
        lambda: requests.get(f"{host.url}/api/ops/failed-events", timeout=10).json()["events"],
        timeout=20,
        what="listed",
    )
    assert event["error"] == "body is not JSON"
    assert requests.post(f"{host.url}/api/ops/reprocess/{event['id']}", timeout=10).status_code == 409


def test_reconcile_route_returns_the_figures(stack, graph):
    host = stack.start(**{"AzureWebJobs.poll_leads.Disabled": "true"})
    ids = new_leads(graph, 3, created=time.time() - 30 * 3600)
    answer = requests.post(f"{host.url}/api/ops/reconcile", params={"hours": 48}, timeout=60)
    assert answer.status_code == 200
    figures = answer.json()
    assert (figures["forms_checked"], figures["leads_seen"], figures["missing_found"], figures["enqueued"]) == (
        2,
        3,
        3,
        3,
    )
    wait_until(lambda: set(stack.rows()) == set(ids), timeout=30, what="reconciled leads stored")
    assert requests.post(f"{host.url}/api/ops/reconcile", params={"hours": 0}, timeout=10).status_code == 400

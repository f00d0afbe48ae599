"""A token per page: two pages with their own tokens, one of them expired, against the sandbox Graph API.

Real parts: the sandbox over HTTP (Page tokens refused on another page, expired tokens answering
190/463), a SQLite file, Azurite; the app's own secret provider, Graph client, integration monitor,
poller and ingestion, wired as `wiring.py` wires them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.errors import GraphThrottled, IntegrationPaused, TokenInvalid
from shared.graph.client import GraphClient
from shared.graph.throttle import ThrottleGate
from shared.ingest.consumer import ingest_lead_message
from shared.ingest.pipeline import IngestDeps
from shared.messaging.messages import LeadMessage
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.monitoring.health import facebook_detail
from shared.monitoring.incidents import is_open
from shared.monitoring.token_state import IntegrationMonitor
from shared.notify.templates.alert_email import alert_title
from shared.poller.reconcile import PollerConfig, PollerDeps, poll_once
from shared.secrets import SecretProvider
from shared.settings import load_settings
from shared.storage.names import LEADS_QUEUE
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.queues import reset_queue

APP_ID, APP_SECRET = "1234567890", "page-tokens-app-secret"
SHARED, P1, P2 = "shared-system-user-token", "2000000000001", "2000000000002"
T1, T2 = "page-one-own-token", "page-two-own-token"


@dataclass
class Pages:
    graph: RunningSandbox
    store: Store
    secrets: SecretProvider
    client: GraphClient
    monitor: IntegrationMonitor
    sender: QueueSender

    def poller(self) -> PollerDeps:
        config = PollerConfig(page_ids=(P1, P2), app_id=APP_ID, grace_seconds=0)
        return PollerDeps(
            graph=self.client,
            store=self.store,
            sender=self.sender,
            config=config,
            access_token=self.secrets.access_token,
            app_token=self.secrets.app_token,
            monitor=self.monitor,
            page_token=self.secrets.page_token,
        )

    def ingest(self, lead_id: str, page_id: str) -> str:
        deps = IngestDeps(
            self.store, self.client.fetch_lead, self.sender, RetryPolicy(5, 0, 60, 1), monitor=self.monitor
        )
        message = LeadMessage(facebook_lead_id=lead_id, page_id=page_id, form_id=page_id + "01")
        return ingest_lead_message(message.to_text().encode(), deps).outcome

    def lead(self, page_id: str) -> str:
        fields = [{"name": "full_name", "values": ["Page Person"]}, {"name": "email", "values": ["p@example.com"]}]
        return self.graph.sandbox.create_lead(page_id + "01", fields, created_time=time.time() - 600)


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph(
        [SHARED], app_id=APP_ID, page_ids=[P1, P2], app_secret=APP_SECRET, subscribed=True, page_tokens={P1: T1, P2: T2}
    )
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def pages(azurite, graph: RunningSandbox, tmp_path: Path) -> Pages:
    reset_queue(azurite.connection_string, LEADS_QUEUE)
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "FACEBOOK_APP_ID": APP_ID,
            "FACEBOOK_APP_SECRET": APP_SECRET,
            "FACEBOOK_VERIFY_TOKEN": "v",
            "FACEBOOK_ACCESS_TOKEN": SHARED,
            "FACEBOOK_PAGE_IDS": f"{P1},{P2}",
            f"FACEBOOK_PAGE_TOKEN_{P1}": T1,
            f"FACEBOOK_PAGE_TOKEN_{P2}": T2,
        }
    )
    store = Store(SqliteBackend(str(tmp_path / "leads.db")))
    store.migrate()
    secrets = SecretProvider(settings)
    monitor = IntegrationMonitor(lambda: store, recheck_seconds=60, refresh_seconds=0, scope=secrets.token_scope)
    client = GraphClient(
        graph.url,
        "v26.0",
        secrets.access_token,
        3,
        gate=ThrottleGate(),
        on_token_invalid=monitor.token_invalid,
        page_token=secrets.page_token,
    )
    return Pages(graph, store, secrets, client, monitor, QueueSender(azurite.connection_string))


def test_each_page_is_read_with_its_own_token(pages: Pages):
    first, second = pages.lead(P1), pages.lead(P2)
    report = poll_once(pages.poller())
    assert report.error is None and (report.forms_checked, report.enqueued) == (4, 2)
    assert set(report.page_tokens) == {P1, P2} and all(t["valid"] for t in report.page_tokens.values())
    assert pages.ingest(first, P1) == "stored" and pages.ingest(second, P2) == "stored"
    assert pages.store.leads.existing_lead_ids([first, second]) == {first, second}


def test_one_pages_expired_token_pauses_and_alerts_that_page_only(pages: Pages):
    pages.graph.sandbox.set_tokens(valid=[SHARED], expired=[T2])
    alive, dead = pages.lead(P1), pages.lead(P2)

    report = poll_once(pages.poller())

    assert report.page_tokens[P2]["valid"] is False and report.page_tokens[P1]["valid"] is True
    assert report.skipped is None and report.forms_checked == 2  # page one's forms only
    assert report.enqueued == 1
    assert is_open(pages.store, f"token_invalid:{P2}")  # type: ignore[arg-type]
    assert not is_open(pages.store, "token_invalid") and not is_open(pages.store, f"token_invalid:{P1}")  # type: ignore[arg-type]

    assert pages.ingest(alive, P1) == "stored"
    with pytest.raises(IntegrationPaused, match=P2):
        pages.monitor.check_fetch_allowed(P2)
    pages.monitor.check_fetch_allowed(P1)  # page one keeps going
    assert pages.ingest(dead, P2) == "retrying"  # paused without a Graph call, the message waits


def test_the_alert_and_the_health_route_name_the_page(pages: Pages):
    pages.graph.sandbox.set_tokens(valid=[SHARED], expired=[T2])
    with pytest.raises(TokenInvalid):
        pages.client.fetch_lead(pages.lead(P2), P2)
    assert is_open(pages.store, f"token_invalid:{P2}")  # type: ignore[arg-type]
    assert alert_title(f"token_invalid:{P2}", {}).endswith(f"(page {P2})")

    parts = SimpleNamespace(
        settings=load_settings(
            {
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
                "FACEBOOK_APP_ID": APP_ID,
                "FACEBOOK_APP_SECRET": APP_SECRET,
                "FACEBOOK_VERIFY_TOKEN": "v",
                "FACEBOOK_ACCESS_TOKEN": SHARED,
                "FACEBOOK_PAGE_IDS": f"{P1},{P2}",
            }
        ),
        secrets=pages.secrets,
        graph=pages.client,
        throttle=ThrottleGate(),
    )
    detail = facebook_detail(parts)  # type: ignore[arg-type]
    by_page = {p["page_id"]: p for p in detail["pages"]}
    assert by_page[P1]["own_token"] and by_page[P1]["token"]["valid"] and by_page[P1]["subscribed"]
    assert by_page[P2]["own_token"] and not by_page[P2]["token"]["valid"]
    assert detail["status"] == "down" and P2 in detail["reason"] and detail["token"]["valid"]


def test_the_health_route_warns_about_a_field_map_key_no_form_asks(pages: Pages):
    pages.store.coordination.put_state("form_questions", {P1 + "01": ["full_name", "what_is_your_budget?"]})
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "FACEBOOK_APP_SECRET": APP_SECRET,
        "FACEBOOK_VERIFY_TOKEN": "v",
        "FACEBOOK_ACCESS_TOKEN": SHARED,
        "FACEBOOK_PAGE_IDS": P1,
        "FIELD_MAP": '{"what_is_your_budget?": "budget", "favourite_colour?": "colour"}',
    }
    parts = SimpleNamespace(
        settings=load_settings(env),
        secrets=pages.secrets,
        graph=pages.client,
        throttle=ThrottleGate(),
        store=pages.store,
    )
    detail = facebook_detail(parts)  # type: ignore[arg-type]
    assert detail["warnings"] == ["FIELD_MAP names questions no chosen form asks: favourite_colour?"]
    assert "status" not in detail  # a warning, not a failure


def test_a_page_throttled_by_its_own_limit_stops_only_that_page(pages: Pages):
    pages.graph.sandbox.add_fault("throttle", code=80005, page=P2, count=1, regain_minutes=10)
    report = poll_once(pages.poller())

    assert report.error is None and report.forms_checked == 2  # page one read; page two held back by its limit
    assert pages.client.fetch_lead  # the client is still usable
    gate = pages.client._gate
    assert gate.blocked_until(P2) > time.time() + 500 and gate.blocked_until(P1) == 0
    with pytest.raises(GraphThrottled):
        pages.client.request("GET", f"{P2}/leadgen_forms", page=P2)
    assert list(pages.client.paged(f"{P1}/leadgen_forms", {}, page=P1))  # page one goes on


def test_an_app_wide_limit_stops_every_page(pages: Pages):
    pages.graph.sandbox.add_fault("throttle", code=4, count=1, regain_minutes=10)
    poll_once(pages.poller())
    gate = pages.client._gate
    assert gate.blocked_until(P1) > time.time() + 500 and gate.blocked_until(P2) > time.time() + 500

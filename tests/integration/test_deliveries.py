"""Deliveries against real parts: a receiver on loopback, Azurite, a SQLite file and the sandbox Graph API.

The signature is checked twice: by the receiver's own implementation (`fakes.receiver`) and by
`verify` below, a third one written from the Standard Webhooks spec, so the sender is never checked
against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fakes.receiver import Receiver
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.deliver.consumer import enqueue_deliveries, enqueue_lead_deliveries, flush_deliveries, handle_delivery
from shared.deliver.deliver import DeliverDeps
from shared.deliver.destinations import Destinations, destinations_from, webhook_name
from shared.deliver.http import post_json
from shared.graph.client import GraphClient
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.ops.deliveries import list_deliveries, record_stage, replay_delivery
from shared.ops.reprocess import reprocess
from shared.settings import load_settings
from shared.storage.names import DELIVERIES_QUEUE, poison_queue
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.leads import graph_lead_payload, normalised
from tests.support.queues import message_count, queue_client, reset_queue

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
TOKEN = "deliveries-token"
DATASET = "987654321012345"
LEAD = "1200000000000777"


def verify(secret: str, webhook_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """Standard Webhooks, from the spec: HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed with base64(secret)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    return any(
        hmac.compare_digest(sig.split(",", 1)[1].encode(), expected) for sig in header.split() if sig.startswith("v1,")
    )


@dataclass
class Net:
    store: Store
    sender: QueueSender
    receiver: Receiver
    graph: RunningSandbox
    destinations: Destinations
    storage: str

    def deps(self, ladder: tuple[float, ...] = (1.0, 1.0, 1.0)) -> DeliverDeps:
        client = GraphClient(self.graph.url, "v26.0", lambda: TOKEN, 3)
        return DeliverDeps(
            store=self.store,
            queues=self.sender,
            destinations=self.destinations,
            policy=RetryPolicy(5, 0, 1, 1),
            ladder=ladder,
            send_events=lambda dataset, events: client.request(
                "POST", f"{dataset}/events", form={"data": json.dumps(events)}
            ) and None,
            webhook_secret=lambda: SECRET,
            timeout=1.0,
        )  # fmt: skip

    def drain(self, deps: DeliverDeps, until, timeout: float = 30) -> list[str]:  # type: ignore[no-untyped-def]
        """Run the `deliveries` consumer over every message that becomes visible, until `until()` or `timeout`."""
        client = queue_client(self.storage, DELIVERIES_QUEUE)
        outcomes: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
            for message in batch:
                outcomes.append(handle_delivery(message.content.encode(), deps).outcome)
                client.delete_message(message)
            if not batch:
                time.sleep(0.3)
        return outcomes

    def store_lead(self, lead_id: str = LEAD) -> None:
        self.store.leads.store_lead(normalised(lead_id), {"leadgen_id": lead_id}, graph_lead_payload(lead_id))
        enqueue_lead_deliveries(self.sender, self.store, lead_id)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "receiver", secret=SECRET) as running:
        yield running


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    with serve(SandboxGraph([TOKEN], subscribed=True)) as running:
        yield running


@pytest.fixture
def net(azurite, receiver: Receiver, graph: RunningSandbox, tmp_path: Path) -> Net:
    for queue in (DELIVERIES_QUEUE, poison_queue(DELIVERIES_QUEUE)):
        reset_queue(azurite.connection_string, queue)
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "FACEBOOK_APP_SECRET": "s",
            "FACEBOOK_VERIFY_TOKEN": "v",
            "FACEBOOK_ACCESS_TOKEN": TOKEN,
            "LEAD_WEBHOOK_URLS": f"{receiver.url}/webhook",
            "LEAD_WEBHOOK_SECRET": SECRET,
            "SLACK_WEBHOOK_URL": f"{receiver.url}/slack",
            "SLACK_EVENTS": "both",
            "TEAMS_WEBHOOK_URL": f"{receiver.url}/teams",
            "TEAMS_EVENTS": "alerts",
            "META_DATASET_ID": DATASET,
        }
    )
    destinations = destinations_from(settings, lambda name: str(getattr(settings, name.lower())))
    store = Store(SqliteBackend(str(tmp_path / "leads.db")), routing=destinations.routing)
    store.migrate()
    return Net(store, QueueSender(azurite.connection_string), receiver, graph, destinations, azurite.connection_string)


def accepted(receiver: Receiver, path: str) -> list:  # type: ignore[type-arg]
    return [d for d in receiver.deliveries(path) if 200 <= d.status < 300]


def test_a_lead_reaches_the_webhook_signed_and_slack_once(net: Net):
    net.store_lead()
    net.drain(net.deps(), lambda: len(accepted(net.receiver, "/webhook")) and len(accepted(net.receiver, "/slack")))

    [delivery] = net.receiver.deliveries("/webhook")
    assert delivery.signature_valid and delivery.status in (200, 204)
    assert delivery.body["type"] == "lead.created"
    assert delivery.body["data"]["facebook_lead_id"] == LEAD and delivery.body["data"]["fields"]
    [slack] = net.receiver.deliveries("/slack")
    assert LEAD in json.dumps(slack.body) and "blocks" in slack.body
    assert net.receiver.deliveries("/teams") == []  # Teams takes alerts only here
    rows = list_deliveries(net.store, "delivered", 10)
    assert sorted(r["destination"] for r in rows) == sorted([webhook_name(f"{net.receiver.url}/webhook"), "slack"])


def test_the_signature_verifies_with_an_independent_implementation_of_the_spec(net: Net):
    sent: list[tuple[str, bytes, dict[str, str]]] = []

    def recording_post(url: str, body: bytes, headers, timeout: float) -> int:  # type: ignore[no-untyped-def]
        sent.append((url, body, dict(headers)))
        return post_json(url, body, headers, timeout)  # the real POST: the receiver checks it too

    net.store_lead()
    deps = net.deps()
    deps.post = recording_post
    net.drain(deps, lambda: len(accepted(net.receiver, "/webhook")))
    [(_, body, headers)] = [s for s in sent if s[0].endswith("/webhook")]
    row = next(r for r in net.store.deliveries.newest(None, 10) if r.destination.startswith("webhook:"))
    assert headers["webhook-id"] == row.webhook_id == net.receiver.deliveries("/webhook")[0].webhook_id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
    assert verify(SECRET, row.webhook_id, headers["webhook-timestamp"], body, headers["webhook-signature"])
    assert not verify(SECRET, row.webhook_id, headers["webhook-timestamp"], body + b" ", headers["webhook-signature"])
    assert net.receiver.deliveries("/webhook")[0].signature_valid


def test_500_then_a_timeout_then_200_is_delivered_once_with_one_webhook_id(net: Net):
    net.receiver.set_faults("/webhook", [500, "timeout", 200], hold_seconds=2)
    net.store_lead()
    net.drain(net.deps(), lambda: len(accepted(net.receiver, "/webhook")) >= 2, timeout=40)

    seen = net.receiver.deliveries("/webhook")
    assert [(d.status, d.fault) for d in seen] == [(500, "status"), (204, "timeout"), (200, "status")]
    assert len({d.webhook_id for d in seen}) == 1  # the same id through every retry
    assert net.receiver.duplicates("/webhook") == 1  # the timed-out attempt did arrive: the receiver dedupes
    row = next(r for r in net.store.deliveries.newest(None, 10) if r.destination.startswith("webhook:"))
    assert (row.status, row.attempts) == ("delivered", 3)
    assert row.last_error is None


def test_a_crm_down_for_the_whole_ladder_ends_as_a_visible_dead_letter_and_replays(net: Net):
    net.receiver.set_faults("/webhook", [503] * 4)
    net.store_lead()
    deps = net.deps(ladder=(1.0, 1.0))
    net.drain(deps, lambda: message_count(net.storage, poison_queue(DELIVERIES_QUEUE)) > 0, timeout=40)

    [failed] = list_deliveries(net.store, "failed", 10)
    assert failed["attempts"] == 3 and failed["last_status"] == 503 and "HTTP 503" in failed["last_error"]
    [event] = net.store.failed_events.list_failed_events("open", 10)
    assert event.stage == "deliver" and "after 3 attempts" in event.error and event.facebook_lead_id == LEAD

    net.receiver.clear_faults()
    queued = replay_delivery(net.store, net.sender, str(failed["id"]))
    assert queued["webhook_id"] == failed["webhook_id"]
    net.drain(deps, lambda: len(accepted(net.receiver, "/webhook")) == 1)
    assert accepted(net.receiver, "/webhook")[0].webhook_id == failed["webhook_id"]


def test_reprocessing_the_dead_letter_replays_the_delivery(net: Net):
    net.receiver.set_faults("/webhook", [500, 500])
    net.store_lead()
    deps = net.deps(ladder=(1.0,))
    net.drain(deps, lambda: message_count(net.storage, poison_queue(DELIVERIES_QUEUE)) > 0, timeout=30)
    [event] = net.store.failed_events.list_failed_events("open", 10)

    requeued = reprocess(str(event.id), net.store, net.sender)
    assert requeued.queue == DELIVERIES_QUEUE
    net.drain(deps, lambda: len(accepted(net.receiver, "/webhook")) == 1)
    assert len(accepted(net.receiver, "/webhook")) == 1


def test_a_repeated_message_and_a_replay_after_delivery_send_the_same_id_again_only_on_replay(net: Net):
    net.store_lead()
    deps = net.deps()
    net.drain(deps, lambda: len(accepted(net.receiver, "/webhook")) == 1)
    key = next(r.delivery_key for r in net.store.deliveries.newest(None, 10) if r.destination.startswith("webhook:"))
    enqueue_deliveries(net.sender, net.store, [key, key])  # redelivered messages: already delivered
    outcomes = net.drain(deps, lambda: message_count(net.storage, DELIVERIES_QUEUE) == 0, timeout=10)
    assert outcomes.count("duplicate") >= 2 and len(accepted(net.receiver, "/webhook")) == 1

    row = net.store.deliveries.get(key)
    assert row is not None
    replay_delivery(net.store, net.sender, str(row.id))
    net.drain(deps, lambda: len(accepted(net.receiver, "/webhook")) == 2)
    assert net.receiver.duplicates("/webhook") == 1  # the receiver sees the same webhook-id: it may ignore it


def test_an_alert_goes_to_slack_and_teams(net: Net):
    assert net.store.coordination.open_incident("token_invalid", {"code": 190})
    keys = [r.delivery_key for r in net.store.deliveries.newest("pending", 10)]
    enqueue_deliveries(net.sender, net.store, keys)
    net.drain(net.deps(), lambda: len(accepted(net.receiver, "/slack")) and len(accepted(net.receiver, "/teams")))
    [teams] = net.receiver.deliveries("/teams")
    assert teams.body["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "token" in json.dumps(net.receiver.deliveries("/slack")[0].body).lower()


def test_a_stage_reaches_the_conversions_api_once_with_the_lead_id_as_an_integer(net: Net):
    net.store_lead()
    answer = record_stage(net.store, net.sender, LEAD, "qualified")
    assert answer["recorded"] and answer["conversions_api"] == "queued"
    assert record_stage(net.store, net.sender, LEAD, "qualified")["recorded"] is False
    net.drain(net.deps(), lambda: len(net.graph.sandbox.capi_events(DATASET)) >= 1)

    [event] = net.graph.sandbox.capi_events(DATASET)
    assert event["event_name"] == "qualified" and event["action_source"] == "system_generated"
    assert event["user_data"]["lead_id"] == int(LEAD)
    assert event["custom_data"]["event_source"] == "crm"
    assert any(r["destination"] == "capi" for r in list_deliveries(net.store, "delivered", 10))


def test_an_erased_lead_is_not_delivered(net: Net):
    net.store_lead()
    net.store.leads.erase_lead(LEAD)
    outcomes = net.drain(net.deps(), lambda: message_count(net.storage, DELIVERIES_QUEUE) == 0, timeout=10)
    assert net.receiver.deliveries("/webhook") == [] and "skipped" in outcomes
    assert all(r["status"] == "failed" for r in list_deliveries(net.store, None, 10))


def test_a_row_whose_message_never_went_is_flushed(net: Net):
    net.store.leads.store_lead(normalised(LEAD), {"leadgen_id": LEAD}, graph_lead_payload(LEAD))  # crash: no queue
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert flush_deliveries(net.sender, net.store, later) == 2
    assert flush_deliveries(net.sender, net.store, later) == 0  # marked queued
    net.drain(
        net.deps(), lambda: len(accepted(net.receiver, "/webhook")) == 1 and len(accepted(net.receiver, "/slack"))
    )
    assert {r["status"] for r in list_deliveries(net.store, None, 10)} == {"delivered"}

"""FIELD_MAP against real parts: a SQLite file, Azurite queues, a real SMTP server and a receiver on loopback.

`mapped` is computed when a lead is read, so the same stored lead shows the current map's names
on `/api/ops/last-leads`, in the lead email and in a delivery's body.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.receiver import Receiver
from fakes.smtp_sink import SmtpSink
from shared.deliver.consumer import enqueue_lead_deliveries, handle_delivery
from shared.deliver.deliver import DeliverDeps
from shared.deliver.destinations import destinations_from
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.notify.outbox import enqueue_notification
from shared.ops.leads import last_leads
from shared.settings import load_settings
from shared.storage.names import DELIVERIES_QUEUE, NOTIFICATIONS_QUEUE, poison_queue
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.leads import graph_lead_payload, normalised
from tests.support.notifications import FakeClock, drain_notifications, notify_deps, parts, read_mail, sink
from tests.support.queues import queue_client, reset_queue

LEAD = "1300000000000123"
SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
FIELD_MAP = {"what_is_your_budget?": "budget", "interests": "interest"}
BUDGET = "<b>5000</b> & more"


def store_lead(store: Store, notify: bool = False) -> None:
    """A lead with a custom budget question (its answer is markup) and a ZIP code, beside the usual answers."""
    lead = normalised(LEAD)
    lead = lead.model_copy(update={"fields": {**lead.fields, "what_is_your_budget?": [BUDGET], "zip_code": ["10115"]}})
    store.leads.store_lead(lead, {"leadgen_id": LEAD}, graph_lead_payload(LEAD), notify=notify)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = Store(SqliteBackend(str(tmp_path / "leads.db")))
    created.migrate()
    return created


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpSink]:
    running = sink(tmp_path / "mail")
    yield running
    running.stop()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "receiver", secret=SECRET) as running:
        yield running


def test_last_leads_carry_mapped_names_beside_the_untouched_fields(store):
    store_lead(store)
    [lead] = last_leads(store, 1, FIELD_MAP)
    assert lead["mapped"] == {
        "budget": BUDGET,
        "interest": "solar",
        "full_name": "Zoë Åström",
        "email": f"lead{LEAD}@example.com",
        "phone": "+44 20 7946 0000",
        "zip": "10115",
    }
    assert lead["fields"]["what_is_your_budget?"] == [BUDGET] and lead["fields"]["interests"] == ["solar", "batteries"]


def test_a_changed_field_map_applies_to_a_lead_stored_before(store):
    store_lead(store)
    [before] = last_leads(store, 1)
    assert "budget" not in before["mapped"] and before["mapped"]["zip"] == "10115"
    [after] = last_leads(store, 1, {"what_is_your_budget?": "budget", "zip_code": "postal"})
    assert after["mapped"]["budget"] == BUDGET and after["mapped"]["postal"] == "10115" and "zip" not in after["mapped"]


def test_the_lead_email_shows_the_mapped_names_escaped(store, azurite, smtp):
    for queue in (NOTIFICATIONS_QUEUE, poison_queue(NOTIFICATIONS_QUEUE)):
        reset_queue(azurite.connection_string, queue)
    clock = FakeClock()
    deps = notify_deps(store, azurite.connection_string, smtp.port, clock)
    deps.field_map = FIELD_MAP
    store_lead(store, notify=True)
    enqueue_notification(deps.queues, store, "lead", LEAD)
    assert drain_notifications(deps, azurite.connection_string, clock) == ["sent"]
    [mail] = smtp.messages()
    text, html = parts(read_mail(mail))
    assert "Named fields:" in text and f"  budget: {BUDGET}" in text and "  interest: solar" in text
    assert "Named fields" in html and "&lt;b&gt;5000&lt;/b&gt; &amp; more" in html and "<b>5000</b>" not in html


def test_a_delivery_body_carries_the_mapped_names(store, azurite, receiver, tmp_path):
    for queue in (DELIVERIES_QUEUE, poison_queue(DELIVERIES_QUEUE)):
        reset_queue(azurite.connection_string, queue)
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "FACEBOOK_APP_SECRET": "s",
            "FACEBOOK_VERIFY_TOKEN": "v",
            "FACEBOOK_ACCESS_TOKEN": "t",
            "LEAD_WEBHOOK_URLS": f"{receiver.url}/webhook",
            "LEAD_WEBHOOK_SECRET": SECRET,
        }
    )
    destinations = destinations_from(settings, lambda name: str(getattr(settings, name.lower())))
    routed = Store(SqliteBackend(str(tmp_path / "routed.db")), routing=destinations.routing)
    routed.migrate()
    store_lead(routed)
    sender = QueueSender(azurite.connection_string)
    enqueue_lead_deliveries(sender, routed, LEAD)
    deps = DeliverDeps(
        routed, sender, destinations, RetryPolicy(5, 0, 1, 1), webhook_secret=lambda: SECRET, field_map=FIELD_MAP
    )
    client = queue_client(azurite.connection_string, DELIVERIES_QUEUE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not receiver.deliveries("/webhook"):
        batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=30))
        for message in batch:
            handle_delivery(message.content.encode(), deps)
            client.delete_message(message)
        if not batch:
            time.sleep(0.2)
    [delivery] = receiver.deliveries("/webhook")
    assert delivery.signature_valid
    assert delivery.body["data"]["mapped"]["budget"] == BUDGET and delivery.body["data"]["mapped"]["zip"] == "10115"
    assert delivery.body["data"]["fields"]["what_is_your_budget?"] == [BUDGET]

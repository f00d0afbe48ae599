"""The local receiver checks Standard Webhooks signatures, records deliveries, and fails on purpose when told."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.children import spawn_tied
from fakes.receiver import Receiver
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + base64.b64encode(b"test-receiver-secret-32-bytes-ok").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-secret-of-32-bytes-ok").decode()
LEAD = {"type": "lead.created", "data": {"lead_id": "1234567890123456", "full_name": "Zoë Ångström"}}


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `id.timestamp.body`, as a Standard Webhooks sender writes it."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def deliver(
    url: str,
    document: Any = LEAD,
    *,
    webhook_id: str = "msg_1",
    secret: str = SECRET,
    timestamp: int | None = None,
    signature: str | None = None,
    body: bytes | None = None,
    timeout: float = 10,
) -> requests.Response:
    """POST a JSON document signed over its exact bytes (or over `body`, to tamper with what is sent)."""
    sent = json.dumps(document).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature or sign(secret, webhook_id, stamp, sent),
    }
    return requests.post(url, data=sent if body is None else body, headers=headers, timeout=timeout)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "receiver", secret=SECRET) as running:
        wait_until(lambda: port_open(running.port), what="receiver listening")
        yield running


def test_a_correctly_signed_delivery_is_answered_204_and_recorded_as_valid(receiver: Receiver) -> None:
    response = deliver(f"{receiver.url}/webhook")

    assert response.status_code == 204
    (delivery,) = receiver.deliveries("/webhook")
    assert delivery.signature_valid is True
    assert delivery.webhook_id == "msg_1"
    assert delivery.body == LEAD
    assert delivery.duplicate is False


def test_each_delivery_is_appended_as_one_json_line(receiver: Receiver) -> None:
    deliver(f"{receiver.url}/webhook", webhook_id="msg_a")
    deliver(f"{receiver.url}/webhook/crm", webhook_id="msg_b")

    lines = (receiver.directory / "deliveries.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["path"], r["webhook_id"], r["signature_valid"]) for r in records] == [
        ("/webhook", "msg_a", True),
        ("/webhook/crm", "msg_b", True),
    ]
    assert records[0]["body"]["data"]["full_name"] == "Zoë Ångström"


def test_named_destinations_are_recorded_apart(receiver: Receiver) -> None:
    deliver(f"{receiver.url}/webhook/crm")
    deliver(f"{receiver.url}/webhook/erp")

    assert [d.path for d in receiver.deliveries("/webhook/crm")] == ["/webhook/crm"]
    assert len(receiver.deliveries()) == 2


@pytest.mark.parametrize(
    ("case", "options"),
    [
        ("wrong secret", {"secret": OTHER_SECRET}),
        ("tampered body", {"body": json.dumps({**LEAD, "type": "lead.deleted"}).encode()}),
        ("stale timestamp", {"timestamp_offset": -6 * 60}),
        ("timestamp in the future", {"timestamp_offset": 6 * 60}),
        ("unknown signature version", {"signature": "v1a,bm90IGEgc2lnbmF0dXJl"}),
    ],
)
def test_a_delivery_that_is_not_correctly_signed_is_refused_401(
    receiver: Receiver, case: str, options: dict[str, Any]
) -> None:
    if "timestamp_offset" in options:  # taken now, not when the cases were collected (minutes earlier in a full run)
        options = {"timestamp": int(time.time()) + options["timestamp_offset"]}
    response = deliver(f"{receiver.url}/webhook", **options)

    assert response.status_code == 401, case
    (delivery,) = receiver.deliveries()
    assert delivery.signature_valid is False
    assert delivery.problem


def test_a_delivery_without_signature_headers_is_refused_401(receiver: Receiver) -> None:
    response = requests.post(f"{receiver.url}/webhook", json=LEAD, timeout=10)

    assert response.status_code == 401
    assert receiver.deliveries()[0].problem == "missing webhook-id, webhook-timestamp or webhook-signature"


def test_during_secret_rotation_a_later_matching_signature_is_enough(receiver: Receiver) -> None:
    stamp = int(time.time())
    body = json.dumps(LEAD).encode()
    both = f"{sign(OTHER_SECRET, 'msg_1', stamp, body)} {sign(SECRET, 'msg_1', stamp, body)}"

    response = deliver(f"{receiver.url}/webhook", timestamp=stamp, signature=both)

    assert response.status_code == 204
    assert receiver.deliveries()[0].signature_valid is True


def test_a_repeated_webhook_id_is_counted_as_a_duplicate(receiver: Receiver) -> None:
    for webhook_id in ("msg_1", "msg_2", "msg_1"):
        assert deliver(f"{receiver.url}/webhook", webhook_id=webhook_id).status_code == 204

    assert [d.duplicate for d in receiver.deliveries()] == [False, False, True]
    assert receiver.duplicates("/webhook") == 1


def test_slack_answers_ok_and_refuses_a_message_without_text_or_blocks(receiver: Receiver) -> None:
    accepted = requests.post(f"{receiver.url}/slack", json={"text": "New lead"}, timeout=10)
    with_blocks = requests.post(f"{receiver.url}/slack", json={"blocks": [{"type": "divider"}]}, timeout=10)
    refused = requests.post(f"{receiver.url}/slack", json={"attachments": []}, timeout=10)

    assert (accepted.status_code, accepted.text) == (200, "ok")
    assert with_blocks.status_code == 200
    assert (refused.status_code, refused.text) == (400, "no_text")
    assert receiver.deliveries("/slack")[0].body == {"text": "New lead"}
    assert len((receiver.directory / "slack.jsonl").read_text(encoding="utf-8").splitlines()) == 3


def test_teams_answers_202_with_an_empty_body(receiver: Receiver) -> None:
    card = {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive"}]}

    response = requests.post(f"{receiver.url}/teams", json=card, timeout=10)

    assert (response.status_code, response.content) == (202, b"")
    assert receiver.deliveries("/teams")[0].body == card
    assert (receiver.directory / "teams.jsonl").exists()


def test_scripted_answers_come_in_order_and_a_timeout_holds_past_the_client_deadline(receiver: Receiver) -> None:
    receiver.set_faults("/webhook", [500, "timeout", 200], hold_seconds=30)
    url = f"{receiver.url}/webhook"

    first = deliver(url, webhook_id="msg_1")
    with pytest.raises(requests.exceptions.ReadTimeout):
        deliver(url, webhook_id="msg_1", timeout=0.5)
    third = deliver(url, webhook_id="msg_1")
    fourth = deliver(url, webhook_id="msg_2")

    assert (first.status_code, third.status_code, fourth.status_code) == (500, 200, 204)
    assert [d.fault for d in receiver.deliveries()] == ["status", "timeout", "status", None]
    assert receiver.duplicates() == 1  # the held one was handled; the retry repeats its id


def test_a_seeded_fail_rate_fails_the_same_share_every_run(receiver: Receiver) -> None:
    receiver.set_faults("/slack", fail_rate=0.2, seed=1)
    session = requests.Session()

    statuses = [session.post(f"{receiver.url}/slack", json={"text": "hi"}, timeout=10).status_code for _ in range(200)]

    assert statuses.count(500) == 40  # seed 1 draws exactly 40 of 200 below 0.2
    assert set(statuses) == {200, 500}


def test_faults_can_be_set_and_records_read_and_reset_over_http(receiver: Receiver) -> None:
    control = f"{receiver.url}/_receiver"
    refused = requests.post(f"{control}/faults", json={"path": "/elsewhere"}, timeout=10)
    set_up = requests.post(f"{control}/faults", json={"path": "/webhook", "script": [503]}, timeout=10)

    answered = deliver(f"{receiver.url}/webhook")
    listed = requests.get(f"{control}/deliveries", params={"path": "/webhook"}, timeout=10).json()
    reset = requests.post(f"{control}/reset", timeout=10)

    assert refused.status_code == 400
    assert set_up.json()["faults"]["/webhook"]["script"] == [503]
    assert (answered.status_code, answered.headers["Retry-After"]) == (503, "1")
    assert [(r["webhook_id"], r["status"], r["signature_valid"]) for r in listed["data"]] == [("msg_1", 503, True)]
    assert reset.status_code == 200
    assert receiver.deliveries() == []
    assert deliver(f"{receiver.url}/webhook").status_code == 204


def test_python_m_fakes_receiver_serves_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    process = spawn_tied(
        [sys.executable, "-m", "fakes.receiver", "--port", str(port), "--dir", str(tmp_path), "--secret", SECRET],
        cwd=REPO,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, timeout=20, what="the receiver to listen")
        answered = deliver(f"http://127.0.0.1:{port}/webhook")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert answered.status_code == 204
    assert process.returncode == 0, stderr
    assert f"127.0.0.1:{port}" in stdout
    assert "Zoë" not in stderr  # logs name the path, status and id, never the body
    assert json.loads((tmp_path / "deliveries.jsonl").read_text(encoding="utf-8"))["signature_valid"] is True

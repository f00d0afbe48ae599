"""Webhook POSTs against real Azurite: every response code, and what lands on which queue."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from shared.errors import QueueUnavailable, SignatureInvalid
from shared.messaging.sender import QueueSender
from shared.storage.connection import azurite_connection_string
from shared.storage.counters import TableCounters
from shared.storage.names import LEADS_QUEUE, poison_queue
from shared.webhook.intake import receive_webhook
from shared.webhook.signature import sign_body
from tests.support.queues import drain_json, message_count, reset_queue
from tests.support.waiting import free_port

SECRET = "intake-test-secret"
POISON = poison_queue(LEADS_QUEUE)


@pytest.fixture
def storage(azurite) -> str:
    for queue in (LEADS_QUEUE, POISON):
        reset_queue(azurite.connection_string, queue)
    return azurite.connection_string


@pytest.fixture
def sender(storage: str) -> QueueSender:
    return QueueSender(storage, timeout_seconds=5)


def body_of(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def leadgen(lead_id: object, page: object = "1000000000001", **extra: object) -> dict[str, object]:
    value = {"leadgen_id": lead_id, "page_id": page, "form_id": "100000000000101", "created_time": 1790000000}
    return {"field": "leadgen", "value": {**value, **extra}}


def post(body: bytes, sender: QueueSender, signature: str | None = "sign", counted: list | None = None, **kw):
    header = sign_body(body, SECRET) if signature == "sign" else signature
    return receive_webhook(
        body,
        header,
        [SECRET],
        sender,
        kw.pop("max_body_bytes", 1024 * 1024),
        (lambda kind, n: counted.append((kind, n))) if counted is not None else None,
    )


def test_batch_of_entries_and_changes_becomes_one_message_per_leadgen_change(storage, sender):
    payload = {
        "object": "page",
        "entry": [
            {"id": "1000000000001", "time": 1, "changes": [leadgen("11"), leadgen(12)]},
            {"id": "1000000000002", "time": 1, "changes": [leadgen("21", page=1000000000002), leadgen("22")]},
        ],
    }
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued) == ("accepted", 4)
    messages = drain_json(storage, LEADS_QUEUE)
    assert sorted(m["facebook_lead_id"] for m in messages) == ["11", "12", "21", "22"]
    by_id = {m["facebook_lead_id"]: m for m in messages}
    assert by_id["21"]["page_id"] == "1000000000002"
    assert by_id["12"]["event"]["leadgen_id"] == 12
    assert all(m["source"] == "webhook" and m["attempt"] == 0 for m in messages)


def test_messages_are_base64_text_as_the_functions_host_expects(storage, sender):
    from azure.storage.queue import QueueClient

    post(body_of({"object": "page", "entry": [{"id": "1", "changes": [leadgen("31")]}]}), sender)
    raw = QueueClient.from_connection_string(storage, LEADS_QUEUE).peek_messages()[0].content
    assert json.loads(base64.b64decode(raw))["facebook_lead_id"] == "31"


def test_missing_signature_is_401_and_nothing_is_queued(storage, sender):
    with pytest.raises(SignatureInvalid):
        post(body_of({"object": "page", "entry": [{"changes": [leadgen("1")]}]}), sender, signature=None)
    assert message_count(storage, LEADS_QUEUE) == 0


def test_wrong_signature_is_401_and_nothing_is_queued(storage, sender):
    body = body_of({"object": "page", "entry": [{"changes": [leadgen("1")]}]})
    with pytest.raises(SignatureInvalid):
        post(body, sender, signature=sign_body(body, "not-our-secret"))
    assert message_count(storage, LEADS_QUEUE) + message_count(storage, POISON) == 0


def test_signed_body_that_is_not_json_is_400_and_kept_as_a_dead_letter(storage, sender):
    body = b"this is not json \xc3\xa9"
    result = post(body, sender)
    assert result.outcome == "malformed"
    assert message_count(storage, LEADS_QUEUE) == 0
    [letter] = drain_json(storage, POISON)
    assert letter["dead_letter"]["reason"] == "body is not JSON"
    assert letter["dead_letter"]["stage"] == "webhook"
    assert letter["raw_body"].encode() == body


def test_large_signed_non_json_body_is_kept_compressed(storage, sender):
    body = b"<html>" + b"x" * 200_000 + b"</html>"
    assert post(body, sender).outcome == "malformed"
    [letter] = drain_json(storage, POISON)
    assert letter["raw_body_encoding"] == "zlib+base64"
    assert zlib.decompress(base64.b64decode(letter["raw_body"])) == body


def test_body_over_one_mebibyte_is_413(storage, sender):
    body = b"{" + b" " * (1024 * 1024) + b"}"
    assert post(body, sender).outcome == "too_large"
    assert message_count(storage, LEADS_QUEUE) == 0


def test_queue_unreachable_is_503_so_meta_retries(storage):
    dead = QueueSender(azurite_connection_string(blob=free_port(), queue=free_port(), table=free_port()), 1)
    with pytest.raises(QueueUnavailable):
        post(body_of({"object": "page", "entry": [{"changes": [leadgen("1")]}]}), dead)


def test_other_object_is_200_ignored_and_counted(storage, sender):
    counted: list = []
    result = post(body_of({"object": "instagram", "entry": []}), sender, counted=counted)
    assert (result.outcome, result.reason) == ("ignored", "object 'instagram' is not handled")
    assert counted == [("object:instagram", 1)]
    assert message_count(storage, LEADS_QUEUE) == 0


def test_other_field_is_ignored_and_counted_while_leadgen_changes_are_queued(storage, sender):
    counted: list = []
    payload = {"object": "page", "entry": [{"changes": [{"field": "feed", "value": {}}, leadgen("41")]}]}
    result = post(body_of(payload), sender, counted=counted)
    assert (result.outcome, result.queued, result.ignored) == ("accepted", 1, 1)
    assert counted == [("field:feed", 1)]


def test_leadgen_change_without_leadgen_id_is_dead_lettered_and_the_rest_queued(storage, sender):
    broken = {"field": "leadgen", "value": {"page_id": "1", "form_id": "2"}}
    payload = {"object": "page", "entry": [{"id": "1", "changes": [leadgen("51"), broken, leadgen("52")]}]}
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 2, 1)
    assert sorted(m["facebook_lead_id"] for m in drain_json(storage, LEADS_QUEUE)) == ["51", "52"]
    [letter] = drain_json(storage, POISON)
    assert "leadgen_id" in letter["dead_letter"]["reason"]
    assert letter["message"]["change"]["value"] == {"page_id": "1", "form_id": "2"}


def test_ignored_content_counter_is_shared_in_table_storage(storage):
    counters = TableCounters(storage, table="countertest" + "x")
    first = counters.increment("webhook_ignored:field:feed")
    counters.increment("webhook_ignored:field:feed", 2)
    assert counters.totals()["webhook_ignored:field:feed"] == first + 2


def test_a_lead_or_form_id_that_is_not_digits_is_dead_lettered_with_its_reason_and_the_rest_queued(storage, sender):
    bad_lead = leadgen("61x")
    bad_form = leadgen("62", form_id="form-62")
    payload = {"object": "page", "entry": [{"id": "1", "changes": [leadgen("60"), bad_lead, bad_form, leadgen("63")]}]}
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 2, 2)
    assert sorted(m["facebook_lead_id"] for m in drain_json(storage, LEADS_QUEUE)) == ["60", "63"]
    letters = sorted(drain_json(storage, POISON), key=lambda letter: letter["message"]["change"]["value"]["leadgen_id"])
    assert [letter["dead_letter"]["reason"] for letter in letters] == [
        "unusable leadgen change: leadgen_id: Value error, a Graph id is digits only",
        "unusable leadgen change: form_id: Value error, a Graph id is digits only",
    ]


def test_a_change_whose_value_is_not_an_object_is_dead_lettered_and_its_batch_queued(storage, sender):
    broken = {"field": "leadgen", "value": "70"}
    payload = {"object": "page", "entry": [{"id": "1", "changes": [leadgen("71"), broken, leadgen("72")]}]}
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 2, 1)
    assert sorted(m["facebook_lead_id"] for m in drain_json(storage, LEADS_QUEUE)) == ["71", "72"]
    [letter] = drain_json(storage, POISON)
    assert letter["dead_letter"]["reason"].startswith("unusable leadgen change: value: Input should be")
    assert letter["message"] == {"entry_id": "1", "change": broken}


def test_an_entry_with_a_float_time_still_has_its_changes_queued(storage, sender):
    payload = {"object": "page", "entry": [{"id": "1", "time": 1790000000.25, "changes": [leadgen("81")]}]}
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 1, 0)
    assert [m["facebook_lead_id"] for m in drain_json(storage, LEADS_QUEUE)] == ["81"]


def test_a_change_with_a_numeric_field_is_dead_lettered_and_its_batch_queued(storage, sender):
    numeric = {"field": 7, "value": {"leadgen_id": "90"}}
    payload = {"object": "page", "entry": [{"id": "1", "changes": [numeric, leadgen("91")]}]}
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 1, 1)
    assert [m["facebook_lead_id"] for m in drain_json(storage, LEADS_QUEUE)] == ["91"]
    [letter] = drain_json(storage, POISON)
    assert letter["dead_letter"]["reason"] == "malformed change: field: Input should be a valid string"
    assert letter["message"]["change"] == numeric


def test_a_change_or_an_entry_that_is_not_an_object_is_dead_lettered_and_the_rest_queued(storage, sender):
    payload = {
        "object": "page",
        "entry": [
            {"id": "1", "changes": ["leadgen", leadgen("101")]},
            {"id": "2", "changes": {"field": "leadgen"}},
            "not an entry",
            {"id": "3", "changes": [leadgen("102")]},
        ],
    }
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 2, 3)
    assert sorted(m["facebook_lead_id"] for m in drain_json(storage, LEADS_QUEUE)) == ["101", "102"]
    reasons = sorted(letter["dead_letter"]["reason"] for letter in drain_json(storage, POISON))
    assert reasons == [
        "malformed change: Input should be an object",
        "malformed entry: Input should be an object",
        "malformed entry: changes: Input should be a valid list",
    ]


def test_a_json_object_that_is_not_an_envelope_is_dead_lettered_whole_and_answered_200(storage, sender):
    body = body_of({"entry": [{"id": "1", "changes": [leadgen("111")]}]})
    result = post(body, sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 0, 1)
    assert (result.outcome, result.ignored) == ("accepted", 0)
    assert message_count(storage, LEADS_QUEUE) == 0
    [letter] = drain_json(storage, POISON)
    assert letter["dead_letter"]["reason"] == "body is not a webhook envelope: object: Field required"
    assert letter["raw_body"].encode() == body


@pytest.mark.parametrize("body", [b"[1, 2]", b'"page"', b"42", b"null", b'{"object": NaN}'])
def test_a_signed_body_that_is_not_a_json_object_is_400_and_dead_lettered(storage, sender, body):
    assert post(body, sender).outcome == "malformed"
    [letter] = drain_json(storage, POISON)
    assert letter["dead_letter"]["reason"] in {"body is not JSON", "body is not a JSON object"}
    assert letter["raw_body"].encode() == body


def test_a_leadgen_change_too_big_for_a_queue_message_is_queued_by_its_ids(storage, sender):
    payload = {
        "object": "page",
        "entry": [{"id": "1", "changes": [leadgen("121", note="漢" * 16_500), leadgen("122")]}],
    }
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 2, 0)
    by_id = {m["facebook_lead_id"]: m for m in drain_json(storage, LEADS_QUEUE)}
    assert by_id["121"]["event"] == {
        "leadgen_id": "121",
        "page_id": "1000000000001",
        "form_id": "100000000000101",
        "created_time": 1790000000,
    }


def test_a_malformed_change_too_big_for_a_queue_message_is_dead_lettered_compressed(storage, sender):
    huge = {"field": "leadgen", "value": {"page_id": "1", "note": "漢" * 16_500}}
    payload = {"object": "page", "entry": [{"id": "1", "changes": [huge, leadgen("131")]}]}
    result = post(body_of(payload), sender)
    assert (result.outcome, result.queued, result.dead_lettered) == ("accepted", 1, 1)
    [letter] = drain_json(storage, POISON)
    assert letter["raw_body_encoding"] == "zlib+base64"
    assert json.loads(zlib.decompress(base64.b64decode(letter["raw_body"]))) == {"entry_id": "1", "change": huge}

"""The webhook envelope parses in two stages and accepts numeric or string ids, kept as strings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.models.envelope import Change, Entry, LeadgenChange, WebhookEnvelope
from shared.webhook.handshake import answer_handshake


def test_batch_of_entries_and_changes_is_parsed_completely():
    envelope = WebhookEnvelope.model_validate(
        {
            "object": "page",
            "entry": [
                {"id": "1", "time": 1, "changes": [{"field": "leadgen", "value": {"leadgen_id": "a1"}}] * 2},
                {"id": 2, "time": 2, "changes": [{"field": "feed", "value": {"x": 1}}]},
            ],
        }
    )
    entries = [Entry.model_validate(entry) for entry in envelope.entry]
    assert [len(e.changes) for e in entries] == [2, 1]
    assert entries[1].page_id == "2"


@pytest.mark.parametrize("time", [1790000000.25, "yesterday", None, [1]])
def test_an_entry_is_never_refused_for_its_time(time):
    entry = Entry.model_validate({"id": "1", "time": time, "changes": []})
    assert entry.page_id == "1"


def test_a_numeric_field_is_not_a_change():
    with pytest.raises(ValidationError):
        Change.model_validate({"field": 7, "value": {}})


def test_numeric_ids_become_strings_without_losing_digits():
    change = LeadgenChange.model_validate(
        {"leadgen_id": 1234567890123456789, "page_id": 1000000000001, "form_id": "55", "created_time": 1700000000}
    )
    assert change.leadgen_id == "1234567890123456789"
    assert change.page_id == "1000000000001"
    assert change.form_id == "55"


@pytest.mark.parametrize("value", [{}, {"leadgen_id": ""}, {"leadgen_id": None}, {"leadgen_id": "a b"}])
def test_leadgen_change_without_a_usable_id_is_rejected(value):
    with pytest.raises(ValidationError):
        LeadgenChange.model_validate(value)


def test_handshake_echoes_the_challenge_unchanged():
    params = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "00123 abc"}
    assert answer_handshake(params, "tok") == "00123 abc"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "tok", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "tok"},
        {},
    ],
)
def test_handshake_refuses_anything_else(params):
    assert answer_handshake(params, "tok") is None


@pytest.mark.parametrize("field", ["leadgen_id", "form_id"])
@pytest.mark.parametrize("bad", ["12a4", "lead-1", "1_2", "1.5", "١٢٣", "x"])
def test_lead_and_form_ids_in_a_leadgen_change_are_digits_only(field, bad):
    value = {"leadgen_id": "123", "form_id": "456", field: bad}
    with pytest.raises(ValidationError) as raised:
        LeadgenChange.model_validate(value)
    assert raised.value.errors()[0]["loc"] == (field,)
    assert "digits only" in raised.value.errors()[0]["msg"]

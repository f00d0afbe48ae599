"""A Graph lead becomes a normalised lead: contact fields normalised, every answer kept as sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.ingest.transform import normalise_lead, normalise_phone
from shared.messaging.messages import LeadMessage
from shared.models.lead import GraphLead


def graph_lead(field_data, **extra):
    return GraphLead.model_validate(
        {"id": "900", "created_time": "2026-11-27T08:49:14+0000", "field_data": field_data, **extra}
    )


def message(**extra):
    return LeadMessage(facebook_lead_id="900", page_id="1000000000001", form_id="77", **extra)


def test_every_field_keeps_its_values_exactly_as_sent():
    lead = graph_lead(
        [
            {"name": "full_name", "values": ["Zoë Åström"]},
            {"name": "which_products", "values": ["Solar 🌞", "Battery"]},
            {"name": "empty_question", "values": []},
        ]
    )
    normalised = normalise_lead(lead, message())
    assert normalised.fields == {
        "full_name": ["Zoë Åström"],
        "which_products": ["Solar 🌞", "Battery"],
        "empty_question": [],
    }


def test_contact_fields_are_normalised():
    lead = graph_lead(
        [
            {"name": "email", "values": ["  Ana.Lopez@Example.COM "]},
            {"name": "full_name", "values": [" Ana López "]},
            {"name": "phone_number", "values": ["+34 (612) 345-678"]},
        ]
    )
    normalised = normalise_lead(lead, message())
    assert normalised.email == "ana.lopez@example.com"
    assert normalised.full_name == "Ana López"
    assert normalised.phone_number == "+34612345678"
    assert normalised.fields["email"] == ["  Ana.Lopez@Example.COM "]


def test_first_and_last_name_are_joined_when_full_name_is_absent():
    lead = graph_lead([{"name": "first_name", "values": ["José"]}, {"name": "last_name", "values": ["Núñez"]}])
    assert normalise_lead(lead, message()).full_name == "José Núñez"


def test_missing_contact_fields_are_none():
    normalised = normalise_lead(graph_lead([{"name": "city", "values": ["Oslo"]}]), message())
    assert (normalised.email, normalised.full_name, normalised.phone_number) == (None, None, None)


def test_graph_time_with_plus_0000_offset_is_parsed_as_utc():
    lead = graph_lead([])
    assert lead.created_time == datetime(2026, 11, 27, 8, 49, 14, tzinfo=UTC)


def test_ids_fall_back_to_the_webhook_when_graph_omits_them():
    normalised = normalise_lead(graph_lead([]), message(ad_id="555"))
    assert (normalised.page_id, normalised.form_id, normalised.ad_id) == ("1000000000001", "77", "555")


def test_lead_without_created_time_does_not_validate():
    with pytest.raises(ValidationError):
        GraphLead.model_validate({"id": "1", "field_data": []})


def test_phone_without_digits_noise_is_kept():
    assert normalise_phone("0612345678") == "0612345678"
    assert normalise_phone("   ") is None


def test_a_webhook_lead_keeps_the_time_the_webhook_received_it():
    received = datetime(2026, 11, 27, 8, 49, 15, 250000, tzinfo=UTC)
    normalised = normalise_lead(graph_lead([]), message(source="webhook", received_at=received))
    assert normalised.webhook_received_at == received


def test_a_webhook_message_read_from_the_queue_keeps_its_receive_time():
    sent = message(source="webhook", received_at=datetime(2026, 11, 27, 8, 49, 15, tzinfo=UTC))
    read = LeadMessage.model_validate_json(sent.to_text())
    assert normalise_lead(graph_lead([]), read).webhook_received_at == sent.received_at


def test_a_polled_or_reprocessed_lead_has_no_webhook_receive_time():
    received = datetime(2026, 11, 27, 8, 49, 15, tzinfo=UTC)
    for source in ("polling", "reprocess"):
        assert normalise_lead(graph_lead([]), message(source=source, received_at=received)).webhook_received_at is None


def test_a_message_that_does_not_say_when_the_webhook_received_it_has_no_receive_time():
    read = LeadMessage.model_validate_json('{"facebook_lead_id": "900", "source": "webhook"}')
    assert normalise_lead(graph_lead([]), read).webhook_received_at is None

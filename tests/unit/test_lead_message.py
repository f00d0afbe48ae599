"""The `leads-inbound` message names a lead by ids only, and only ids Meta could have issued."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.messaging.messages import LeadMessage


@pytest.mark.parametrize("field", ["facebook_lead_id", "form_id"])
@pytest.mark.parametrize("bad", ["12a4", "lead-1", "9.0", "²", " "])
def test_a_message_whose_lead_or_form_id_is_not_digits_does_not_validate(field, bad):
    fields = {"facebook_lead_id": "123", "form_id": "456", field: bad}
    with pytest.raises(ValidationError):
        LeadMessage.model_validate(fields)


def test_numeric_ids_are_kept_as_strings_of_digits():
    message = LeadMessage.model_validate({"facebook_lead_id": 1234567890123456789, "form_id": 55})
    assert (message.facebook_lead_id, message.form_id) == ("1234567890123456789", "55")

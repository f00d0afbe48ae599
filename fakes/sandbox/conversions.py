"""The Conversions API's CRM events as Meta's Conversion Leads payload specification defines them.

`POST /{dataset-id}/events` takes `data`, a JSON array of up to 1,000 events (a JSON string in a
form field is accepted, as Graph does), and an optional `test_event_code`. Each event needs a
non-empty `event_name` (the lead's stage), an integer `event_time` in unix seconds no more than 7
days old and not in the future, `action_source` `system_generated`, `user_data.lead_id` as the
integer Meta gave the lead (15 to 17 digits) with optional SHA-256-hashed `em` / `ph`, and
`custom_data` with `event_source` `crm` and a `lead_event_source` naming the CRM. Meta refuses the
whole request when one event is wrong, so does the sandbox: error 100 naming the event and field,
and nothing recorded.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from fakes.sandbox.errors import GraphError, invalid_parameter

MAX_EVENTS = 1000
MAX_AGE_SECONDS = 7 * 24 * 3600
FUTURE_SLACK_SECONDS = 5 * 60
LEAD_ID_DIGITS = (15, 17)
TOO_OLD_SUBCODE = 2804003  # Meta's "Event Timestamp Too Old"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_HASHED_FIELDS = ("em", "ph")


def _is_integer(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid(index: int, field: str, problem: str) -> GraphError:
    return invalid_parameter(f"Invalid parameter: data[{index}].{field} {problem}")


def _check_event_time(index: int, event_time: object, now: float) -> None:
    if not _is_integer(event_time):
        raise _invalid(index, "event_time", "must be an integer of unix seconds")
    if now - event_time > MAX_AGE_SECONDS:
        error = _invalid(index, "event_time", "is more than 7 days in the past; no event of this request was processed")
        error.subcode = TOO_OLD_SUBCODE
        raise error
    if event_time - now > FUTURE_SLACK_SECONDS:
        raise _invalid(index, "event_time", "is in the future")


def _check_user_data(index: int, user_data: object) -> None:
    if not isinstance(user_data, dict):
        raise _invalid(index, "user_data", "is required and must be an object")
    lead_id = user_data.get("lead_id")
    if lead_id is None:
        raise _invalid(index, "user_data.lead_id", "is required for Conversion Leads")
    low, high = LEAD_ID_DIGITS
    if not _is_integer(lead_id) or not 10 ** (low - 1) <= lead_id < 10**high:
        raise _invalid(index, "user_data.lead_id", f"must be an integer of {low} to {high} digits")
    for field in _HASHED_FIELDS:
        if field not in user_data:
            continue
        values = user_data[field]
        values = values if isinstance(values, list) else [values]
        if not values or not all(isinstance(v, str) and _SHA256_HEX.match(v) for v in values):
            raise _invalid(index, f"user_data.{field}", "must be SHA-256 hashes (64 lowercase hex characters)")


def _check_custom_data(index: int, custom_data: object) -> None:
    if not isinstance(custom_data, dict):
        raise _invalid(index, "custom_data", "is required and must be an object")
    if custom_data.get("event_source") != "crm":
        raise _invalid(index, "custom_data.event_source", 'must be "crm"')
    source = custom_data.get("lead_event_source")
    if not isinstance(source, str) or not source.strip():
        raise _invalid(index, "custom_data.lead_event_source", "is required: the name of the CRM")


def check_event(index: int, event: object, now: float) -> None:
    """Return when event `index` meets the Conversion Leads spec; raise error 100 naming the first bad field."""
    if not isinstance(event, dict):
        raise invalid_parameter(f"Invalid parameter: data[{index}] must be an object")
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid(index, "event_name", "is required")
    _check_event_time(index, event.get("event_time"), now)
    if event.get("action_source") != "system_generated":
        raise _invalid(index, "action_source", 'must be "system_generated"')
    _check_user_data(index, event.get("user_data"))
    _check_custom_data(index, event.get("custom_data"))


def checked_events(data: Any, now: float) -> list[dict[str, Any]]:
    """The events of `data` when every one meets the spec; else error 100 and none of them is taken."""
    if data is None:
        raise invalid_parameter("The parameter data is required")
    if not isinstance(data, list) or not data:
        raise invalid_parameter("param data must be a non-empty array of events")
    if len(data) > MAX_EVENTS:
        raise invalid_parameter(f"param data must have at most {MAX_EVENTS} events (got {len(data)})")
    for index, event in enumerate(data):
        check_event(index, event, now)
    return list(data)


def checked_test_event_code(value: Any) -> str | None:
    """The optional `test_event_code`: a non-empty string or absent."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid_parameter("param test_event_code must be a non-empty string")
    return value

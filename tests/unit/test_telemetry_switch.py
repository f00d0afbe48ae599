"""The telemetry switch and the trace context a queue message carries (no OpenTelemetry imported here)."""

from __future__ import annotations

import pytest

from shared.telemetry import continue_trace, current_traceparent, message_traceparent, telemetry_requested

CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("values", "on"),
    [
        ({}, False),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}, False),
        ({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}, False),
        (
            {
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "false",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            },
            False,
        ),
        ({"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true", "APPLICATIONINSIGHTS_CONNECTION_STRING": " "}, False),
        (
            {
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "True",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
            },
            True,
        ),
    ],
)
def test_telemetry_is_requested_only_by_the_switch_and_a_connection_string_together(values, on):
    assert telemetry_requested(values) is on


@pytest.mark.parametrize(
    ("body", "traceparent"),
    [
        (
            b'{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}',
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        (b'{"facebook_lead_id": "1"}', None),
        (b'{"traceparent": 7}', None),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"\xff\xfe", None),
    ],
)
def test_a_message_traceparent_is_read_from_a_json_object_only(body, traceparent):
    assert message_traceparent(body) == traceparent


def test_while_telemetry_is_off_no_traceparent_is_given_and_continuing_a_trace_does_nothing():
    assert current_traceparent() is None
    with continue_trace(b'{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}', "x", "q"):
        pass

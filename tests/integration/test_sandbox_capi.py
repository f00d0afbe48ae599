"""The sandbox's Conversions API over real HTTP: CRM events checked as Meta's Conversion Leads spec says."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from tests.support.waiting import port_open, wait_until

TOKEN = "sandbox-test-token"
DATASET = "998877665544332"
NOW = 1_767_225_600  # the sandbox's clock, fixed: event times are judged against it
DAY = 24 * 3600
LEAD_ID = 1_767_225_600_000_123  # 16 digits, like the sandbox's own lead ids
EMAIL_HASH = hashlib.sha256(b"zoe@example.com").hexdigest()
PHONE_HASH = hashlib.sha256(b"447946095800").hexdigest()


def crm_event(**changes: Any) -> dict[str, Any]:
    """One Conversion Leads event as Meta's payload spec shows it; `changes` replace top-level keys."""
    event: dict[str, Any] = {
        "event_name": "Marketing Qualified Lead",
        "event_time": NOW - 3600,
        "action_source": "system_generated",
        "user_data": {"lead_id": LEAD_ID},
        "custom_data": {"event_source": "crm", "lead_event_source": "Lead Monitoring Agent"},
    }
    event.update(changes)
    return event


@pytest.fixture
def running() -> Iterator[RunningSandbox]:
    with serve(SandboxGraph([TOKEN], clock=lambda: NOW), port=0) as sandbox:
        wait_until(lambda: port_open(sandbox.port), what="sandbox listening")
        yield sandbox


def post_events(running: RunningSandbox, body: dict[str, Any], token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{running.url}/v26.0/{DATASET}/events", json=body, headers=headers, timeout=10)


def graph_error(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["fbtrace_id"]
    return error


@pytest.mark.parametrize(
    "event",
    [
        crm_event(),
        crm_event(user_data={"lead_id": LEAD_ID, "em": [EMAIL_HASH], "ph": [PHONE_HASH]}),
        crm_event(user_data={"lead_id": LEAD_ID, "em": EMAIL_HASH}),
        crm_event(event_name="Converted", event_time=NOW - 7 * DAY + 60),
        crm_event(event_name="Initial Lead from Facebook", event_time=NOW + 60),
    ],
    ids=["lead id only", "hashed email and phone lists", "hashed email string", "almost 7 days old", "clock skew"],
)
def test_a_valid_event_of_each_documented_shape_is_accepted_and_recorded(
    running: RunningSandbox, event: dict[str, Any]
) -> None:
    response = post_events(running, {"data": [event]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["events_received"], body["messages"]) == (1, [])
    assert body["fbtrace_id"]
    (recorded,) = running.sandbox.capi_events(DATASET)
    assert recorded == {**event, "dataset_id": DATASET, "test_event_code": None}


def test_a_form_post_with_data_as_a_json_string_and_a_test_event_code_is_accepted(running: RunningSandbox) -> None:
    stages = [crm_event(event_name=name) for name in ("Initial Lead from Facebook", "Sales Opportunity")]
    form = {"data": json.dumps(stages), "test_event_code": "TEST4821", "access_token": TOKEN}

    response = requests.post(f"{running.url}/v26.0/{DATASET}/events", data=form, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["events_received"] == 2
    recorded = running.sandbox.capi_events()
    assert [(e["event_name"], e["test_event_code"]) for e in recorded] == [
        ("Initial Lead from Facebook", "TEST4821"),
        ("Sales Opportunity", "TEST4821"),
    ]


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def remove(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        del target[last]

    return remove


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def assign(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        target[last] = value

    return assign


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (_without("event_name"), "data[0].event_name"),
        (_set("event_name", " "), "data[0].event_name"),
        (_without("event_time"), "data[0].event_time"),
        (_set("event_time", str(NOW)), "data[0].event_time"),
        (_set("event_time", NOW + 0.5), "data[0].event_time"),
        (_set("event_time", NOW * 1000), "data[0].event_time"),
        (_set("event_time", NOW + 3600), "data[0].event_time"),
        (_set("action_source", "website"), "data[0].action_source"),
        (_without("action_source"), "data[0].action_source"),
        (_without("user_data"), "data[0].user_data"),
        (_without("user_data.lead_id"), "data[0].user_data.lead_id"),
        (_set("user_data.lead_id", str(LEAD_ID)), "data[0].user_data.lead_id"),
        (_set("user_data.lead_id", 12_345_678_901_234), "data[0].user_data.lead_id"),
        (_set("user_data.lead_id", 123_456_789_012_345_678), "data[0].user_data.lead_id"),
        (_set("user_data.em", ["zoe@example.com"]), "data[0].user_data.em"),
        (_set("user_data.ph", [PHONE_HASH.upper()]), "data[0].user_data.ph"),
        (_without("custom_data"), "data[0].custom_data"),
        (_set("custom_data.event_source", "website"), "data[0].custom_data.event_source"),
        (_without("custom_data.lead_event_source"), "data[0].custom_data.lead_event_source"),
        (_set("custom_data.lead_event_source", ""), "data[0].custom_data.lead_event_source"),
    ],
    ids=[
        "no event_name",
        "blank event_name",
        "no event_time",
        "event_time as a string",
        "event_time as a fraction",
        "event_time in milliseconds",
        "event_time an hour ahead",
        "action_source website",
        "no action_source",
        "no user_data",
        "no lead_id",
        "lead_id as a string of digits",
        "lead_id of 14 digits",
        "lead_id of 18 digits",
        "email not hashed",
        "phone hash not lowercase hex",
        "no custom_data",
        "event_source website",
        "no lead_event_source",
        "blank lead_event_source",
    ],
)
def test_an_event_breaking_a_rule_is_refused_with_code_100_naming_the_field(
    running: RunningSandbox, change: Callable[[dict[str, Any]], None], field: str
) -> None:
    event = copy.deepcopy(crm_event())
    change(event)

    error = graph_error(post_events(running, {"data": [event]}))

    assert (error["code"], error["type"]) == (100, "OAuthException")
    assert field in error["message"]
    assert running.sandbox.capi_events() == []


@pytest.mark.parametrize(
    ("body", "wording"),
    [
        ({}, "parameter data is required"),
        ({"data": []}, "non-empty array"),
        ({"data": crm_event()}, "non-empty array"),
        ({"data": "not json"}, "data must be JSON"),
        ({"data": [crm_event()] * 1001}, "at most 1000 events"),
        ({"data": [crm_event()], "test_event_code": 42}, "test_event_code"),
    ],
    ids=["no data", "empty data", "data an object", "data not JSON", "1001 events", "test_event_code a number"],
)
def test_a_request_without_a_usable_data_array_is_refused_with_code_100(
    running: RunningSandbox, body: dict[str, Any], wording: str
) -> None:
    error = graph_error(post_events(running, body))

    assert error["code"] == 100
    assert wording in error["message"]


def test_one_event_8_days_old_fails_the_whole_batch(running: RunningSandbox) -> None:
    batch = [crm_event(), crm_event(event_time=NOW - 8 * DAY), crm_event(event_name="Converted")]

    error = graph_error(post_events(running, {"data": batch}))

    assert error["code"] == 100
    assert error["error_subcode"] == 2804003
    assert "data[1].event_time is more than 7 days in the past" in error["message"]
    assert running.sandbox.capi_events() == []


def test_exactly_1000_events_are_accepted(running: RunningSandbox) -> None:
    response = post_events(running, {"data": [crm_event()] * 1000})

    assert response.status_code == 200, response.text
    assert response.json()["events_received"] == 1000


def test_without_a_valid_token_the_call_fails_with_190(running: RunningSandbox) -> None:
    response = post_events(running, {"data": [crm_event()]}, token="not-a-token")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 190
    assert running.sandbox.capi_events() == []


def test_a_get_or_a_dataset_id_that_is_not_numeric_is_an_unsupported_request(running: RunningSandbox) -> None:
    listed = requests.get(f"{running.url}/v26.0/{DATASET}/events", params={"access_token": TOKEN}, timeout=10)
    elsewhere = requests.post(
        f"{running.url}/v26.0/my-pixel/events", json={"data": [crm_event()], "access_token": TOKEN}, timeout=10
    )

    for response in (listed, elsewhere):
        error = graph_error(response)
        assert (error["code"], error["error_subcode"]) == (100, 33)


def test_calls_are_metered_listed_on_the_control_api_and_cleared_by_reset(running: RunningSandbox) -> None:
    post_events(running, {"data": [crm_event()]})
    post_events(running, {"data": []})

    listed = requests.get(f"{running.url}/_sandbox/capi_events", timeout=10).json()["data"]
    counted = running.sandbox.calls()["capi_events"]
    requests.post(f"{running.url}/_sandbox/reset", timeout=10)

    assert counted == 2  # failed calls count too, as on every route
    assert [(e["dataset_id"], e["user_data"]["lead_id"]) for e in listed] == [(DATASET, LEAD_ID)]
    assert running.sandbox.capi_events() == []


def test_a_fault_can_target_the_events_route(running: RunningSandbox) -> None:
    running.sandbox.add_fault("server_error", route="capi_events", count=1)

    failed = post_events(running, {"data": [crm_event()]})
    retried = post_events(running, {"data": [crm_event()]})

    assert failed.status_code == 500
    assert retried.status_code == 200
    assert len(running.sandbox.capi_events(DATASET)) == 1

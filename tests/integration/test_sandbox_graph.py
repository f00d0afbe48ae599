"""The sandbox Graph API over real HTTP on loopback: Meta's shapes, errors, paging, faults and control API."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from tests.support.waiting import port_open, wait_until

TOKEN = "sandbox-test-token"
APP_ID = "555000111"
PAGE = "1000000000001"
OTHER_PAGE = "1000000000002"
FORM = f"{PAGE}01"
SECOND_FORM = f"{PAGE}02"
UNICODE_ANSWERS = [
    {"name": "full_name", "values": ["Zoë Åström 🚀"]},
    {"name": "city", "values": ["القاهرة"]},
    {"name": "which_services_are_you_interested_in?", "values": ["heat_pump", "solar_panels"]},
    {"name": "nickname", "values": []},
]


class Graph:
    """A tiny Graph client for the tests: the token in the Authorization header, JSON back."""

    def __init__(self, running: RunningSandbox, token: str | None = TOKEN, version: str = "v26.0") -> None:
        self.running = running
        self.base = f"{running.url}/{version}" if version else running.url
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base}/{path}", params=params, timeout=10)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(f"{self.base}/{path}", timeout=10, **kwargs)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(f"{self.base}/{path}", timeout=10)

    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.running.url}/_sandbox/{path}", json=body, timeout=10)

    def create_test_lead(self, field_data: list[dict[str, Any]] | None = None, form: str = FORM) -> str:
        response = self.post(f"{form}/test_leads", json={"field_data": field_data or UNICODE_ANSWERS})
        assert response.status_code == 200, response.text
        return str(response.json()["id"])


@pytest.fixture
def running() -> Iterator[RunningSandbox]:
    with serve(SandboxGraph([TOKEN], APP_ID, [PAGE, OTHER_PAGE], app_secret="app-secret"), port=0) as sandbox:
        wait_until(lambda: port_open(sandbox.port), what="sandbox listening")
        yield sandbox


@pytest.fixture
def graph(running: RunningSandbox) -> Graph:
    return Graph(running)


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["fbtrace_id"]
    return error


def seed_leads(running: RunningSandbox, count: int, start: int = 1_700_000_000, form: str = FORM) -> list[str]:
    """`count` leads one second apart from `start`, oldest first."""
    return [
        running.sandbox.create_lead(
            form, [{"name": "email", "values": [f"lead{i}@example.com"]}], created_time=start + i
        )
        for i in range(count)
    ]


# --- leads -----------------------------------------------------------------------------------------


def test_test_lead_is_fetched_with_requested_fields_and_unicode_intact(graph: Graph) -> None:
    lead_id = graph.create_test_lead()

    response = graph.get(lead_id, fields="id,created_time,field_data,form_id,is_organic,platform,ad_id")

    assert response.status_code == 200
    lead = response.json()
    assert lead["id"] == lead_id
    assert lead["field_data"] == UNICODE_ANSWERS
    assert lead["form_id"] == FORM
    assert lead["is_organic"] is True
    assert lead["platform"] == "fb"
    assert "ad_id" not in lead
    assert set(lead) == {"id", "created_time", "field_data", "form_id", "is_organic", "platform"}


def test_lead_ids_are_numeric_strings_of_15_to_17_digits_that_increase(graph: Graph) -> None:
    ids = [graph.create_test_lead() for _ in range(5)]

    assert all(lead_id.isdigit() and 15 <= len(lead_id) <= 17 for lead_id in ids)
    assert [int(lead_id) for lead_id in ids] == sorted({int(lead_id) for lead_id in ids})


def test_created_time_is_an_iso_string_with_utc_offset(graph: Graph) -> None:
    before = int(time.time())
    lead_id = graph.create_test_lead()

    created = graph.get(lead_id, fields="created_time").json()["created_time"]

    parsed = datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z")
    assert created.endswith("+0000")
    assert parsed.tzinfo is not None and parsed.utcoffset() == UTC.utcoffset(None)
    assert before <= parsed.timestamp() <= time.time() + 1


def test_lead_without_fields_returns_only_id_and_created_time(graph: Graph) -> None:
    lead_id = graph.create_test_lead()

    assert set(graph.get(lead_id).json()) == {"id", "created_time"}


def test_version_prefix_is_optional(running: RunningSandbox) -> None:
    lead_id = Graph(running).create_test_lead()

    unversioned = Graph(running, version="").get(lead_id, fields="field_data")

    assert unversioned.status_code == 200
    assert unversioned.json()["field_data"] == UNICODE_ANSWERS


def test_unknown_field_is_error_100(graph: Graph) -> None:
    lead_id = graph.create_test_lead()

    response = graph.get(lead_id, fields="id,shoe_size")

    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_unknown_lead_id_is_unsupported_get_request_100_33(graph: Graph) -> None:
    response = graph.get("444444444444", fields="field_data")

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["error_subcode"], error["type"]) == (100, 33, "GraphMethodException")
    assert error["message"].startswith("Unsupported get request. Object with ID '444444444444' does not exist")


def test_seeded_ad_lead_has_ad_fields_and_its_past_created_time(graph: Graph) -> None:
    created = graph.control(
        "POST",
        "leads",
        {
            "form_id": SECOND_FORM,
            "field_data": [{"name": "email", "values": ["ad@example.com"]}],
            "created_time": 1_700_000_000,
            "ad_id": "2384000000001",
            "ad_name": "Spring promo",
            "adset_id": "2384000000002",
            "campaign_id": "2384000000003",
            "campaign_name": "Spring",
            "platform": "ig",
        },
    )
    lead_id = created.json()["id"]

    lead = graph.get(
        lead_id, fields="created_time,ad_id,ad_name,adset_id,campaign_id,campaign_name,is_organic,platform"
    )

    assert lead.json() == {
        "id": lead_id,
        "created_time": "2023-11-14T22:13:20+0000",
        "ad_id": "2384000000001",
        "ad_name": "Spring promo",
        "adset_id": "2384000000002",
        "campaign_id": "2384000000003",
        "campaign_name": "Spring",
        "is_organic": False,
        "platform": "ig",
    }


def test_test_leads_accept_field_data_as_a_form_encoded_json_string(graph: Graph) -> None:
    response = graph.post(f"{FORM}/test_leads", data={"field_data": json.dumps(UNICODE_ANSWERS)})

    assert response.status_code == 200
    assert graph.get(response.json()["id"], fields="field_data").json()["field_data"] == UNICODE_ANSWERS


def test_a_form_takes_any_number_of_test_leads(graph: Graph) -> None:
    ids = {graph.create_test_lead() for _ in range(3)}

    listed = graph.get(f"{FORM}/test_leads").json()["data"]

    assert {lead["id"] for lead in listed} == ids


# --- auth and headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "not-a-token"], ids=["missing", "unknown"])
def test_missing_or_unknown_token_is_oauth_error_190(running: RunningSandbox, token: str | None) -> None:
    response = Graph(running, token=token).get(FORM + "/leads")

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["type"]) == (190, "OAuthException")
    assert error["message"] == "Invalid OAuth access token - Cannot parse access token"
    assert "error_subcode" not in error


def test_token_is_accepted_as_access_token_query_parameter(running: RunningSandbox) -> None:
    response = Graph(running, token=None).get(f"{PAGE}/leadgen_forms", access_token=TOKEN)

    assert response.status_code == 200


def test_every_answer_is_json_with_app_usage_percentages(graph: Graph) -> None:
    answers = [graph.get(f"{PAGE}/leadgen_forms"), graph.get("1"), graph.control("GET", "calls")]

    for response in answers:
        assert response.headers["Content-Type"] == "application/json"
        usage = json.loads(response.headers["X-App-Usage"])
        assert set(usage) == {"call_count", "total_cputime", "total_time"}
        assert all(isinstance(value, int) and 0 <= value <= 100 for value in usage.values())


def test_unknown_route_is_error_100_unknown_path(graph: Graph) -> None:
    response = graph.get(f"{PAGE}/feed/comments")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 100
    assert error["message"].startswith("Unknown path components")


# --- faults ----------------------------------------------------------------------------------------


def test_throttle_fault_answers_613_with_business_use_case_header_and_minutes(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "throttle", "regain_minutes": 7})

    response = graph.get(f"{FORM}/leads")

    assert response.status_code == 400
    assert error_of(response)["code"] == 613
    usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
    assert usage[PAGE][0]["type"] == "leadgen"
    assert usage[PAGE][0]["call_count"] == 100
    assert usage[PAGE][0]["estimated_time_to_regain_access"] == 7
    assert json.loads(response.headers["X-App-Usage"])["call_count"] == 100


@pytest.mark.parametrize("code", [4, 17, 32, 80001, 80005])
def test_throttle_fault_answers_the_requested_rate_limit_code(graph: Graph, code: int) -> None:
    graph.control("POST", "faults", {"kind": "throttle", "code": code})

    response = graph.get(f"{PAGE}/leadgen_forms")

    assert response.status_code == 400
    assert error_of(response)["code"] == code
    assert f"(#{code})" in error_of(response)["message"]


def test_server_error_fault_answers_http_500_code_2(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "server_error"})

    response = graph.get(f"{FORM}/leads")

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == 2
    assert error["message"] == "An unexpected error has occurred. Please retry your request later."


def test_permission_fault_answers_code_10(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "permission", "count": 1})

    assert error_of(graph.get(f"{FORM}/leads"))["code"] == 10


def test_token_expired_fault_answers_190_463(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "token_expired", "count": 1})

    error = error_of(graph.get(f"{FORM}/leads"))

    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert error["message"].startswith("Error validating access token: Session has expired")


def test_expired_token_fails_until_a_new_token_is_installed(running: RunningSandbox, graph: Graph) -> None:
    graph.control("POST", "tokens", {"expired": [TOKEN]})
    expired = graph.get(f"{FORM}/leads")
    graph.control("POST", "tokens", {"valid": ["renewed-token"]})

    renewed = Graph(running, token="renewed-token").get(f"{FORM}/leads")

    error = error_of(expired)
    assert (error["code"], error["error_subcode"]) == (190, 463)
    assert renewed.status_code == 200
    assert error_of(graph.get(f"{FORM}/leads"))["code"] == 190


def test_slow_fault_delays_the_answer_then_answers_normally(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "slow", "delay": 0.3, "count": 1})

    started = time.monotonic()
    response = graph.get(f"{PAGE}/leadgen_forms")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3
    assert len(response.json()["data"]) == 2


def test_count_limited_fault_stops_after_n_matching_calls(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "server_error", "count": 2})

    statuses = [graph.get(f"{FORM}/leads").status_code for _ in range(4)]

    assert statuses == [500, 500, 200, 200]


def test_fault_for_one_route_spares_the_others(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "throttle", "route": "lead"})
    lead_id = graph.create_test_lead()

    assert graph.get(f"{FORM}/leads").status_code == 200
    assert error_of(graph.get(lead_id))["code"] == 613


def test_timed_fault_ends_by_itself(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "server_error", "seconds": 0.5})

    assert graph.get(f"{FORM}/leads").status_code == 500
    wait_until(lambda: graph.get(f"{FORM}/leads").status_code == 200, timeout=5, what="timed fault to end")


def test_cleared_faults_stop_at_once(graph: Graph) -> None:
    graph.control("POST", "faults", {"kind": "server_error"})
    graph.control("DELETE", "faults")

    assert graph.get(f"{FORM}/leads").status_code == 200
    assert graph.control("GET", "faults").json() == {"data": []}


def test_bad_fault_is_refused_with_error_100(graph: Graph) -> None:
    response = graph.control("POST", "faults", {"kind": "meteor"})

    assert response.status_code == 400
    assert error_of(response)["code"] == 100


# --- the /leads edge -------------------------------------------------------------------------------


def test_form_leads_walk_every_lead_newest_first_across_pages(running: RunningSandbox, graph: Graph) -> None:
    ids = seed_leads(running, 250)
    seen: list[dict[str, Any]] = []
    pages = 0
    after: str | None = None

    while True:
        params = {"fields": "id,created_time", "limit": 100, **({"after": after} if after else {})}
        body = graph.get(f"{FORM}/leads", **params).json()
        seen.extend(body["data"])
        pages += 1
        if "next" not in body["paging"]:
            break
        after = body["paging"]["cursors"]["after"]

    assert pages == 3
    assert [lead["id"] for lead in seen] == list(reversed(ids))
    times = [lead["created_time"] for lead in seen]
    assert times == sorted(times, reverse=True)


def test_next_url_is_absolute_and_equals_following_the_after_cursor(running: RunningSandbox, graph: Graph) -> None:
    seed_leads(running, 30)
    first = graph.get(f"{FORM}/leads", limit=10).json()

    by_next = graph.session.get(first["paging"]["next"], timeout=10).json()
    by_cursor = graph.get(f"{FORM}/leads", limit=10, after=first["paging"]["cursors"]["after"]).json()

    assert first["paging"]["next"].startswith(f"{running.url}/v26.0/{FORM}/leads?")
    assert [lead["id"] for lead in by_next["data"]] == [lead["id"] for lead in by_cursor["data"]]
    assert len(by_next["data"]) == 10


def test_leads_created_while_paging_do_not_shift_later_pages(running: RunningSandbox, graph: Graph) -> None:
    ids = seed_leads(running, 20)
    first = graph.get(f"{FORM}/leads", limit=10).json()
    seed_leads(running, 5, start=1_800_000_000)

    second = graph.get(f"{FORM}/leads", limit=10, after=first["paging"]["cursors"]["after"]).json()

    assert [lead["id"] for lead in second["data"]] == list(reversed(ids))[10:]
    assert "next" not in second["paging"]


def test_form_leads_limit_defaults_to_25_and_is_capped_at_100(running: RunningSandbox, graph: Graph) -> None:
    seed_leads(running, 120)

    assert len(graph.get(f"{FORM}/leads").json()["data"]) == 25
    assert len(graph.get(f"{FORM}/leads", limit=500).json()["data"]) == 100


@pytest.mark.parametrize(
    ("clauses", "expected_offsets"),
    [
        ([{"field": "time_created", "operator": "GREATER_THAN", "value": 1_700_000_005}], [9, 8, 7, 6]),
        ([{"field": "time_created", "operator": "GREATER_THAN_OR_EQUAL", "value": 1_700_000_005}], [9, 8, 7, 6, 5]),
        ([{"field": "time_created", "operator": "LESS_THAN", "value": 1_700_000_002}], [1, 0]),
        (
            [
                {"field": "time_created", "operator": "GREATER_THAN", "value": "1700000002"},
                {"field": "time_created", "operator": "LESS_THAN", "value": 1_700_000_005},
            ],
            [4, 3],
        ),
    ],
    ids=["greater", "greater-or-equal", "less", "window"],
)
def test_form_leads_filter_on_time_created(
    running: RunningSandbox, graph: Graph, clauses: list[dict[str, Any]], expected_offsets: list[int]
) -> None:
    ids = seed_leads(running, 10)

    body = graph.get(f"{FORM}/leads", filtering=json.dumps(clauses)).json()

    assert [lead["id"] for lead in body["data"]] == [ids[offset] for offset in expected_offsets]


def test_form_leads_only_list_that_forms_leads(running: RunningSandbox, graph: Graph) -> None:
    mine = seed_leads(running, 3)
    seed_leads(running, 4, form=SECOND_FORM)

    assert {lead["id"] for lead in graph.get(f"{FORM}/leads").json()["data"]} == set(mine)


def test_malformed_filtering_is_error_100(graph: Graph) -> None:
    response = graph.get(f"{FORM}/leads", filtering="[{not json")

    assert response.status_code == 400
    assert error_of(response)["code"] == 100


def test_short_pages_quirk_returns_short_pages_while_next_exists(running: RunningSandbox, graph: Graph) -> None:
    ids = seed_leads(running, 12)
    graph.control("POST", "quirks", {"short_pages": 5})
    seen: list[str] = []
    url: str | None = f"{graph.base}/{FORM}/leads?limit=10"

    while url:
        body = graph.session.get(url, timeout=10).json()
        assert len(body["data"]) <= 5
        seen.extend(lead["id"] for lead in body["data"])
        url = body.get("paging", {}).get("next")

    assert seen == list(reversed(ids))


def test_unknown_form_is_unsupported_get_request(graph: Graph) -> None:
    error = error_of(graph.get("999999999/leads"))

    assert (error["code"], error["error_subcode"]) == (100, 33)


# --- forms, tokens, subscriptions ------------------------------------------------------------------


def test_each_page_has_two_active_forms_with_lead_counts(running: RunningSandbox, graph: Graph) -> None:
    seed_leads(running, 3)

    forms = graph.get(f"{PAGE}/leadgen_forms", fields="id,name,status,locale,created_time,leads_count").json()

    assert [form["id"] for form in forms["data"]] == [FORM, SECOND_FORM]
    assert {form["status"] for form in forms["data"]} == {"ACTIVE"}
    assert [form["leads_count"] for form in forms["data"]] == [3, 0]
    assert "cursors" in forms["paging"]
    other = graph.get(f"{OTHER_PAGE}/leadgen_forms").json()["data"]
    assert [form["id"] for form in other] == [f"{OTHER_PAGE}01", f"{OTHER_PAGE}02"]


def test_unknown_page_forms_is_unsupported_get_request(graph: Graph) -> None:
    error = error_of(graph.get("42/leadgen_forms"))

    assert (error["code"], error["error_subcode"]) == (100, 33)


def test_debug_token_describes_a_global_token_as_a_system_user_token(graph: Graph) -> None:
    data = graph.get("debug_token", input_token=TOKEN).json()["data"]

    assert data["is_valid"] is True
    assert (data["app_id"], data["type"], data["application"]) == (APP_ID, "SYSTEM_USER", "Sandbox Lead App")
    assert data["expires_at"] == 0
    assert data["user_id"] and "profile_id" not in data
    assert {"leads_retrieval", "pages_manage_metadata", "pages_show_list"} <= set(data["scopes"])
    assert data["data_access_expires_at"] > data["issued_at"] > 0


def test_debug_token_reports_unknown_and_expired_tokens_as_invalid(graph: Graph) -> None:
    graph.control("POST", "tokens", {"valid": [TOKEN], "expired": ["old-token"]})

    unknown = graph.get("debug_token", input_token="garbage").json()["data"]
    expired = graph.get("debug_token", input_token="old-token").json()["data"]

    assert unknown["is_valid"] is False
    assert unknown["error"]["code"] == 190
    assert expired["is_valid"] is False
    assert (expired["error"]["code"], expired["error"]["subcode"]) == (190, 463)


def test_debug_token_accepts_an_app_token(running: RunningSandbox) -> None:
    response = Graph(running, token=f"{APP_ID}|app-secret").get("debug_token", input_token=TOKEN)

    assert response.json()["data"]["is_valid"] is True


def test_subscribed_apps_install_list_and_remove(graph: Graph) -> None:
    before = graph.get(f"{PAGE}/subscribed_apps").json()
    installed = graph.post(f"{PAGE}/subscribed_apps", params={"subscribed_fields": "leadgen"}).json()
    listed = graph.get(f"{PAGE}/subscribed_apps").json()
    removed = graph.delete(f"{PAGE}/subscribed_apps").json()
    after = graph.get(f"{PAGE}/subscribed_apps").json()

    assert before == {"data": []}
    assert installed == {"success": True}
    assert listed == {"data": [{"id": APP_ID, "name": "Sandbox Lead App", "subscribed_fields": ["leadgen"]}]}
    assert removed == {"success": True}
    assert after == {"data": []}


def test_subscribing_without_fields_is_error_100(graph: Graph) -> None:
    assert error_of(graph.post(f"{PAGE}/subscribed_apps"))["code"] == 100


# --- control API -----------------------------------------------------------------------------------


def test_calls_are_counted_per_route_kind_including_failures(graph: Graph) -> None:
    lead_id = graph.create_test_lead()
    graph.get(lead_id)
    graph.get("404")
    graph.get(f"{FORM}/leads")
    graph.get(FORM, fields="questions")
    graph.get(f"{PAGE}/leadgen_forms")
    graph.get("debug_token", input_token=TOKEN)
    graph.get(f"{PAGE}/subscribed_apps")

    calls = graph.control("GET", "calls").json()

    assert calls == {
        "lead": 2,
        "form": 1,
        "form_leads": 1,
        "leadgen_forms": 1,
        "debug_token": 1,
        "subscribed_apps": 1,
        "test_leads": 1,
        "capi_events": 0,
        "total": 8,
    }


def test_control_lists_every_lead_with_all_fields(graph: Graph) -> None:
    lead_id = graph.create_test_lead()

    leads = graph.control("GET", "leads").json()["data"]

    assert [lead["id"] for lead in leads] == [lead_id]
    assert leads[0]["field_data"] == UNICODE_ANSWERS
    assert leads[0]["page_id"] == PAGE


def test_reset_forgets_leads_faults_and_counts_but_never_reuses_ids(graph: Graph) -> None:
    first = graph.create_test_lead()
    graph.control("POST", "faults", {"kind": "server_error", "route": "lead"})

    graph.control("POST", "reset")

    assert graph.control("GET", "leads").json() == {"data": []}
    assert graph.control("GET", "calls").json()["total"] == 0
    assert graph.control("GET", "faults").json() == {"data": []}
    assert int(graph.create_test_lead()) > int(first)


def test_close_stops_serving(running: RunningSandbox) -> None:
    running.close()

    assert not port_open(running.port)

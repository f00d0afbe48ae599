"""The sandbox Graph API over real HTTP with several pages: Page tokens, expiry per token, forms' questions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.sandbox.environment import page_tokens
from tests.support.waiting import port_open, wait_until

APP_ID = "555000111"
GLOBAL = "system-user-token"
PAGE_A, PAGE_B = "1000000000001", "1000000000002"
TOKEN_A, TOKEN_B = "page-token-a", "page-token-b"
FORM_A, FORM_B = f"{PAGE_A}01", f"{PAGE_B}01"
CUSTOM_FORM = f"{PAGE_A}02"


class Graph:
    """A tiny Graph client for one token (Authorization header), plus the sandbox's control routes."""

    def __init__(self, running: RunningSandbox, token: str) -> None:
        self.running = running
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **params: Any) -> requests.Response:
        return self.session.request(method, f"{self.running.url}/v26.0/{path}", params=params, timeout=10)

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.call("GET", path, **params)

    def control(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.running.url}/_sandbox/{path}", json=body, timeout=10)


@pytest.fixture
def running() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([GLOBAL], APP_ID, [PAGE_A, PAGE_B], page_tokens={PAGE_A: TOKEN_A, PAGE_B: TOKEN_B})
    with serve(sandbox, port=0) as served:
        wait_until(lambda: port_open(served.port), what="sandbox listening")
        yield served


@pytest.fixture
def lead_a(running: RunningSandbox) -> str:
    return running.sandbox.create_lead(FORM_A)


@pytest.fixture
def lead_b(running: RunningSandbox) -> str:
    return running.sandbox.create_lead(FORM_B)


def error_of(response: requests.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


def page_calls(page: str, form: str, lead: str) -> list[tuple[str, str, dict[str, str]]]:
    """Every page-scoped call a Page token may make, on this page's objects."""
    return [
        ("GET", f"{page}/leadgen_forms", {"fields": "id,name"}),
        ("GET", f"{page}/subscribed_apps", {}),
        ("POST", f"{page}/subscribed_apps", {"subscribed_fields": "leadgen"}),
        ("DELETE", f"{page}/subscribed_apps", {}),
        ("GET", f"{form}/leads", {}),
        ("GET", form, {"fields": "questions"}),
        ("GET", lead, {"fields": "field_data"}),
        ("POST", f"{form}/test_leads", {}),
    ]


# --- Page tokens ------------------------------------------------------------------------------------


def test_a_page_token_reads_and_manages_its_own_page(running: RunningSandbox, lead_a: str) -> None:
    graph = Graph(running, TOKEN_A)

    statuses = [
        graph.call(method, path, **params).status_code for method, path, params in page_calls(PAGE_A, FORM_A, lead_a)
    ]

    assert statuses == [200] * 8


def test_a_page_token_is_refused_on_another_pages_objects_with_permissions_error_200(
    running: RunningSandbox, lead_b: str
) -> None:
    graph = Graph(running, TOKEN_A)

    for method, path, params in page_calls(PAGE_B, FORM_B, lead_b):
        response = graph.call(method, path, **params)
        error = error_of(response)
        assert response.status_code == 400, path
        assert (error["code"], error["type"], error["message"]) == (200, "OAuthException", "(#200) Permissions error")
    assert running.sandbox.subscribed_apps(PAGE_B) == []
    assert [lead["id"] for lead in running.sandbox.all_leads()] == [lead_b]


def test_a_page_token_asking_for_an_unknown_object_gets_unsupported_get_request(running: RunningSandbox) -> None:
    error = error_of(Graph(running, TOKEN_A).get("424242424242"))

    assert (error["code"], error["error_subcode"]) == (100, 33)


def test_the_global_token_still_serves_every_page(running: RunningSandbox, lead_a: str, lead_b: str) -> None:
    graph = Graph(running, GLOBAL)

    calls = [*page_calls(PAGE_A, FORM_A, lead_a), *page_calls(PAGE_B, FORM_B, lead_b)]

    assert [graph.call(method, path, **params).status_code for method, path, params in calls] == [200] * 16


def test_an_expired_page_token_fails_only_the_calls_made_with_it(
    running: RunningSandbox, lead_a: str, lead_b: str
) -> None:
    Graph(running, GLOBAL).control("POST", "tokens", {"expired": [TOKEN_A]})

    expired = error_of(Graph(running, TOKEN_A).get(f"{FORM_A}/leads"))

    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    assert Graph(running, TOKEN_B).get(f"{FORM_B}/leads").status_code == 200
    assert Graph(running, TOKEN_B).get(lead_b, fields="field_data").status_code == 200
    assert Graph(running, GLOBAL).get(f"{FORM_A}/leads").status_code == 200
    assert Graph(running, GLOBAL).get(lead_a).status_code == 200


def test_a_renewed_page_token_works_again_and_still_only_on_its_page(running: RunningSandbox, lead_b: str) -> None:
    control = Graph(running, GLOBAL)
    control.control("POST", "tokens", {"expired": [TOKEN_A]})

    renewed = control.control("POST", "page_tokens", {"page_id": PAGE_A, "token": TOKEN_A})

    assert renewed.json() == {"success": True}
    assert Graph(running, TOKEN_A).get(f"{FORM_A}/leads").status_code == 200
    assert error_of(Graph(running, TOKEN_A).get(lead_b))["code"] == 200


def test_a_token_expired_fault_for_one_token_leaves_the_other_pages_calls_alone(running: RunningSandbox) -> None:
    running.sandbox.add_fault("token_expired", token=TOKEN_A)

    assert error_of(Graph(running, TOKEN_A).get(f"{PAGE_A}/leadgen_forms"))["code"] == 190
    assert Graph(running, TOKEN_B).get(f"{PAGE_B}/leadgen_forms").status_code == 200
    assert Graph(running, GLOBAL).get(f"{PAGE_A}/leadgen_forms").status_code == 200


def test_a_fault_for_one_page_hits_only_calls_on_that_pages_objects(running: RunningSandbox) -> None:
    Graph(running, GLOBAL).control("POST", "faults", {"kind": "throttle", "code": 80005, "page": PAGE_B})

    assert error_of(Graph(running, GLOBAL).get(f"{FORM_B}/leads"))["code"] == 80005
    assert Graph(running, GLOBAL).get(f"{FORM_A}/leads").status_code == 200


def test_a_page_token_added_through_the_control_api_serves_only_its_page(running: RunningSandbox) -> None:
    control = Graph(running, GLOBAL)

    control.control("POST", "page_tokens", {"page_id": PAGE_B, "token": "second-token-b"})

    assert control.control("GET", "page_tokens").json()["data"] == {PAGE_A: TOKEN_A, PAGE_B: "second-token-b"}
    assert Graph(running, "second-token-b").get(f"{PAGE_B}/subscribed_apps").status_code == 200
    assert error_of(Graph(running, "second-token-b").get(f"{PAGE_A}/subscribed_apps"))["code"] == 200


def test_a_page_token_for_an_unknown_page_is_refused(running: RunningSandbox) -> None:
    response = Graph(running, GLOBAL).control("POST", "page_tokens", {"page_id": "42", "token": "t"})

    assert (error_of(response)["code"], error_of(response)["error_subcode"]) == (100, 33)
    with pytest.raises(ValueError, match="42"):
        SandboxGraph([GLOBAL], APP_ID, [PAGE_A], page_tokens={"42": "t"})


def test_reset_keeps_the_configured_page_tokens_and_forgets_added_ones(running: RunningSandbox) -> None:
    control = Graph(running, GLOBAL)
    control.control("POST", "page_tokens", {"page_id": PAGE_B, "token": "added"})
    control.control("POST", "tokens", {"expired": [TOKEN_A]})

    control.control("POST", "reset")

    assert control.control("GET", "page_tokens").json()["data"] == {PAGE_A: TOKEN_A, PAGE_B: TOKEN_B}
    assert Graph(running, TOKEN_A).get(f"{PAGE_A}/leadgen_forms").status_code == 200
    assert error_of(Graph(running, "added").get(f"{PAGE_B}/leadgen_forms"))["code"] == 190


# --- debug_token ------------------------------------------------------------------------------------


def test_debug_token_describes_a_page_token_as_page_with_its_page_as_profile(running: RunningSandbox) -> None:
    data = Graph(running, f"{APP_ID}|secret").get("debug_token", input_token=TOKEN_B).json()["data"]

    assert (data["type"], data["profile_id"], data["app_id"]) == ("PAGE", PAGE_B, APP_ID)
    assert data["is_valid"] is True and data["expires_at"] == 0
    assert {"leads_retrieval", "pages_manage_metadata"} <= set(data["scopes"])


def test_debug_token_describes_an_expired_page_token_as_invalid_with_190_463(running: RunningSandbox) -> None:
    running.sandbox.set_tokens(expired=[TOKEN_A])

    data = Graph(running, GLOBAL).get("debug_token", input_token=TOKEN_A).json()["data"]

    assert (data["type"], data["profile_id"], data["is_valid"]) == ("PAGE", PAGE_A, False)
    assert data["expires_at"] > 0
    assert (data["error"]["code"], data["error"]["subcode"]) == (190, 463)


def test_debug_token_describes_the_global_token_as_a_system_user_token(running: RunningSandbox) -> None:
    data = Graph(running, TOKEN_A).get("debug_token", input_token=GLOBAL).json()["data"]

    assert (data["type"], data["is_valid"], data["expires_at"]) == ("SYSTEM_USER", True, 0)
    assert "profile_id" not in data and data["user_id"]


# --- forms and their questions --------------------------------------------------------------------


def test_forms_list_only_the_selected_fields_with_their_questions(running: RunningSandbox) -> None:
    forms = Graph(running, TOKEN_A).get(f"{PAGE_A}/leadgen_forms", fields="id,name,status,questions").json()["data"]

    assert [set(form) for form in forms] == [{"id", "name", "status", "questions"}] * 2
    standard, custom = forms
    assert [(q["key"], q["type"]) for q in standard["questions"]] == [
        ("full_name", "FULL_NAME"),
        ("email", "EMAIL"),
        ("phone_number", "PHONE"),
        ("city", "CITY"),
        ("zip_code", "ZIP"),
    ]
    assert [q["key"] for q in custom["questions"] if q["type"] == "CUSTOM"] == [
        "what_is_your_budget?",
        "when_do_you_want_to_start?",
    ]
    assert {"company_name", "job_title"} <= {q["key"] for q in custom["questions"]}
    for question in [*standard["questions"], *custom["questions"]]:
        assert {"key", "label", "type", "id"} <= set(question) and question["id"].isdigit()


def test_questions_alone_and_with_sub_fields(running: RunningSandbox) -> None:
    graph = Graph(running, TOKEN_A)

    only_questions = graph.get(f"{PAGE_A}/leadgen_forms", fields="questions").json()["data"]
    narrowed = graph.get(f"{PAGE_A}/leadgen_forms", fields="name,questions{key,type}").json()["data"]

    assert [set(form) for form in only_questions] == [{"id", "questions"}] * 2
    assert all(set(q) == {"key", "type"} for form in narrowed for q in form["questions"])
    assert set(narrowed[0]) == {"id", "name", "questions"}


def test_a_form_is_read_with_field_selection(running: RunningSandbox) -> None:
    graph = Graph(running, TOKEN_A)

    form = graph.get(CUSTOM_FORM, fields="id,name,status,questions").json()
    default = graph.get(CUSTOM_FORM).json()

    assert set(form) == {"id", "name", "status", "questions"}
    assert form["id"] == CUSTOM_FORM and form["status"] == "ACTIVE"
    budget = next(q for q in form["questions"] if q["key"] == "what_is_your_budget?")
    assert budget["type"] == "CUSTOM" and budget["label"] == "What is your budget?"
    assert all({"key", "value"} == set(option) for option in budget["options"])
    assert "questions" not in default and default["id"] == CUSTOM_FORM


def test_an_unknown_question_sub_field_is_error_100(running: RunningSandbox) -> None:
    error = error_of(Graph(running, TOKEN_A).get(CUSTOM_FORM, fields="questions{key,colour}"))

    assert error["code"] == 100 and "colour" in error["message"]


def test_a_lead_created_without_answers_answers_every_question_of_its_form(running: RunningSandbox) -> None:
    control = Graph(running, GLOBAL)
    seeded = control.control("POST", "leads", {"form_id": CUSTOM_FORM}).json()["id"]
    tested = Graph(running, TOKEN_A).call("POST", f"{CUSTOM_FORM}/test_leads").json()["id"]
    keys = [q["key"] for q in running.sandbox.form(CUSTOM_FORM).questions]

    for lead_id in (seeded, tested):
        lead = Graph(running, TOKEN_A).get(lead_id, fields="field_data").json()
        assert [answer["name"] for answer in lead["field_data"]] == keys
        assert all(answer["values"] and answer["values"][0] for answer in lead["field_data"])
    assert "what_is_your_budget?" in keys and "when_do_you_want_to_start?" in keys


# --- local settings -----------------------------------------------------------------------------------


def test_the_environment_reader_picks_up_each_pages_own_token() -> None:
    environ = {
        "FACEBOOK_PAGE_TOKEN_1000000000001": "token-one",
        "FACEBOOK_PAGE_TOKEN_1000000000002": "  ",
        "FACEBOOK_PAGE_TOKEN_{page_id}": "placeholder",
        "FACEBOOK_ACCESS_TOKEN": "global",
    }

    assert page_tokens(environ) == {"1000000000001": "token-one"}

"""The lead simulator against the real sandbox Graph API and a real HTTP receiver on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.simulate import SimulationError, SimulationReport, WebhookChange, build_webhook_body, sign, simulate
from tests.support.waiting import port_open, wait_until

SECRET = "local-sandbox-app-secret"
TOKEN = "sandbox-test-token"
PAGES = ["1000000000001", "1000000000002"]
VERSION = "v26.0"


@dataclass
class Delivery:
    """One POST the receiver got: the raw body bytes and its headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def changes(self) -> list[dict[str, Any]]:
        return [change["value"] for entry in self.document["entry"] for change in entry["changes"]]


@dataclass
class Receiver:
    """A webhook endpoint that records every POST and answers 200."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recorded: list[Delivery] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                recorded.append(Delivery(body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    wait_until(lambda: port_open(port), what="receiver listening")
    yield Receiver(url=f"http://127.0.0.1:{port}/api/webhook/facebook/leads", deliveries=recorded, lock=lock)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with serve(SandboxGraph([TOKEN], "1234567890", PAGES), port=0) as running:
        wait_until(lambda: port_open(running.port), what="sandbox listening")
        yield running


def run(sandbox: RunningSandbox, receiver: Receiver, leads: int, **options: Any) -> SimulationReport:
    return simulate(
        graph_url=sandbox.url,
        webhook_url=receiver.url,
        app_secret=SECRET,
        access_token=TOKEN,
        page_ids=PAGES,
        version=VERSION,
        leads=leads,
        rate=options.pop("rate", 500.0),
        **options,
    )


def test_sign_matches_a_known_hmac_for_a_non_ascii_body() -> None:
    body = '{"object":"page","name":"Zoë Åström 🚀"}'.encode()

    assert sign(body, SECRET) == "sha256=357fa09eaff19569119d4f02a1f3fd812775561d5677faef64bc960313c65494"


def test_webhook_body_is_escaped_ascii_compact_and_grouped_by_page() -> None:
    changes = [
        WebhookChange("1795000000000001", PAGES[0], f"{PAGES[0]}01", 1_700_000_000),
        WebhookChange("1795000000000002", PAGES[1], f"{PAGES[1]}02", 1_700_000_001, numeric_ids=True),
        WebhookChange("1795000000000003", PAGES[0], f"{PAGES[0]}02", 1_700_000_002, ad_id="2384000000001"),
    ]

    body = build_webhook_body(changes, sent_at=1_700_000_010)

    assert body.isascii() and b" " not in body
    document = json.loads(body)
    assert document["object"] == "page"
    assert [entry["id"] for entry in document["entry"]] == [PAGES[0], int(PAGES[1])]
    assert all(entry["time"] == 1_700_000_010 for entry in document["entry"])
    first_page = document["entry"][0]["changes"]
    assert [change["field"] for change in first_page] == ["leadgen", "leadgen"]
    assert first_page[0]["value"] == {
        "leadgen_id": "1795000000000001",
        "page_id": PAGES[0],
        "form_id": f"{PAGES[0]}01",
        "created_time": 1_700_000_000,
    }
    assert first_page[1]["value"]["ad_id"] == first_page[1]["value"]["adgroup_id"] == "2384000000001"
    numeric = document["entry"][1]["changes"][0]["value"]
    assert numeric["leadgen_id"] == 1795000000000002 and numeric["page_id"] == int(PAGES[1])


def test_webhook_body_takes_ready_values_such_as_the_dashboard_test_payload() -> None:
    value = {"leadgen_id": "444444444444", "page_id": "0", "form_id": "444444444444", "created_time": 1_700_000_000}

    document = json.loads(build_webhook_body([value], sent_at=1_700_000_001))

    assert document == {
        "object": "page",
        "entry": [{"id": "0", "time": 1_700_000_001, "changes": [{"field": "leadgen", "value": value}]}],
    }


def test_every_delivery_is_signed_over_its_exact_body_bytes(sandbox: RunningSandbox, receiver: Receiver) -> None:
    run(sandbox, receiver, leads=12, batch=3, seed=1)

    assert receiver.deliveries
    for delivery in receiver.deliveries:
        expected = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["x-hub-signature-256"] == f"sha256={expected}"
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.body.isascii()


def test_every_created_lead_is_delivered_and_exists_in_the_graph(sandbox: RunningSandbox, receiver: Receiver) -> None:
    report = run(sandbox, receiver, leads=25, batch=4, seed=2)

    delivered = {str(change["leadgen_id"]) for d in receiver.deliveries for change in d.changes}
    stored = {lead["id"]: lead for lead in sandbox.sandbox.all_leads()}
    assert len(report.lead_ids) == 25
    assert delivered == set(report.lead_ids) == set(stored)
    assert report.statuses == {200: report.posts}
    assert report.posts == len(receiver.deliveries)
    for delivery in receiver.deliveries:
        for entry in delivery.document["entry"]:
            for change in entry["changes"]:
                value = change["value"]
                lead = stored[str(value["leadgen_id"])]
                assert str(value["page_id"]) == str(entry["id"]) == lead["page_id"]
                assert str(value["form_id"]) == lead["form_id"]
                assert isinstance(value["created_time"], int)
                assert "ad_id" not in value and "adgroup_id" not in value


def test_batches_hold_at_most_b_changes_grouped_by_page(sandbox: RunningSandbox, receiver: Receiver) -> None:
    report = run(sandbox, receiver, leads=40, batch=5, seed=3)

    sizes = [len(delivery.changes) for delivery in receiver.deliveries]
    assert max(sizes) == 5
    assert sum(sizes) == report.deliveries == 40
    for delivery in receiver.deliveries:
        pages = [str(entry["id"]) for entry in delivery.document["entry"]]
        assert len(pages) == len(set(pages))


def test_duplicates_repeat_known_leads_in_later_posts_and_are_counted(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    report = run(sandbox, receiver, leads=30, batch=2, duplicates=0.5, seed=4)

    first_post: dict[str, int] = {}
    repeats = 0
    for index, delivery in enumerate(receiver.deliveries):
        for change in delivery.changes:
            lead_id = str(change["leadgen_id"])
            if lead_id in first_post:
                repeats += 1
                assert index > first_post[lead_id]
            else:
                first_post[lead_id] = index
    assert report.duplicate_deliveries == repeats > 0
    assert report.deliveries == 30 + repeats
    assert set(first_post) == set(report.lead_ids)


def test_ids_arrive_mostly_as_strings_and_sometimes_as_numbers(sandbox: RunningSandbox, receiver: Receiver) -> None:
    run(sandbox, receiver, leads=40, seed=5)

    kinds = [type(change["leadgen_id"]) for delivery in receiver.deliveries for change in delivery.changes]
    assert kinds.count(str) > kinds.count(int) > 0


def test_simulated_answers_are_realistic_and_some_names_are_not_ascii(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    run(sandbox, receiver, leads=40, seed=6)

    answers = [{f["name"]: f["values"] for f in lead["field_data"]} for lead in sandbox.sandbox.all_leads()]
    names = [answer["full_name"][0] for answer in answers]
    assert any(not name.isascii() for name in names)
    assert sum(name.isascii() for name in names) > len(names) / 2
    for answer in answers:
        assert "@" in answer["email"][0] and answer["phone_number"][0].startswith("+")
        assert answer.get("city") or answer.get("company_name")


def test_every_lead_answers_every_question_of_its_form_custom_ones_with_an_option(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    run(sandbox, receiver, leads=30, seed=8)

    for lead in sandbox.sandbox.all_leads():
        questions = sandbox.sandbox.form(lead["form_id"]).questions
        answers = {f["name"]: f["values"] for f in lead["field_data"]}
        assert list(answers) == [q["key"] for q in questions]
        assert all(len(values) == 1 and values[0] for values in answers.values())
        for custom in (q for q in questions if q["type"] == "CUSTOM"):
            assert answers[custom["key"]][0] in {option["value"] for option in custom["options"]}
    custom_answered = {f["name"] for lead in sandbox.sandbox.all_leads() for f in lead["field_data"]}
    assert {"what_is_your_budget?", "when_do_you_want_to_start?", "zip_code"} <= custom_answered


def test_same_seed_gives_the_same_answers(sandbox: RunningSandbox, receiver: Receiver) -> None:
    run(sandbox, receiver, leads=5, seed=7)
    first = [lead["field_data"] for lead in sandbox.sandbox.all_leads()]
    sandbox.sandbox.reset()

    run(sandbox, receiver, leads=5, seed=7)

    assert [lead["field_data"] for lead in sandbox.sandbox.all_leads()] == first


def test_leads_spread_over_two_pages_each_created_with_its_own_page_token(receiver: Receiver) -> None:
    tokens = {PAGES[0]: "page-token-one", PAGES[1]: "page-token-two"}
    with serve(SandboxGraph([], "1234567890", PAGES, page_tokens=tokens), port=0) as running:
        wait_until(lambda: port_open(running.port), what="sandbox listening")

        report = simulate(
            graph_url=running.url,
            webhook_url=receiver.url,
            app_secret=SECRET,
            access_token="not-a-token-the-sandbox-knows",
            page_ids=PAGES,
            version=VERSION,
            leads=20,
            rate=500.0,
            seed=9,
            page_tokens=tokens,
        )

        leads = running.sandbox.all_leads()
    assert set(report.leads_by_page) == set(PAGES) and sum(report.leads_by_page.values()) == 20
    assert {lead["page_id"] for lead in leads} == set(PAGES)
    assert report.statuses == {200: report.posts}
    delivered = {
        str(change["value"]["leadgen_id"]): str(entry["id"])
        for delivery in receiver.deliveries
        for entry in delivery.document["entry"]
        for change in entry["changes"]
    }
    assert delivered == {lead["id"]: lead["page_id"] for lead in leads}


def test_a_page_without_its_own_token_uses_the_global_token(receiver: Receiver) -> None:
    graph = SandboxGraph([TOKEN], "1234567890", PAGES, page_tokens={PAGES[1]: "page-token-two"})
    with serve(graph, port=0) as running:
        wait_until(lambda: port_open(running.port), what="sandbox listening")

        report = simulate(
            running.url, receiver.url, SECRET, TOKEN, PAGES, VERSION, leads=10, rate=500.0, seed=10,
            page_tokens={PAGES[1]: "page-token-two"},
        )  # fmt: skip

    assert set(report.leads_by_page) == set(PAGES)


def test_a_page_list_limits_the_pages_leads_are_created_on(sandbox: RunningSandbox, receiver: Receiver) -> None:
    report = simulate(
        sandbox.url, receiver.url, SECRET, TOKEN, [PAGES[1]], VERSION, leads=6, rate=500.0, seed=11
    )  # fmt: skip

    assert report.leads_by_page == {PAGES[1]: 6}
    assert {lead["page_id"] for lead in sandbox.sandbox.all_leads()} == {PAGES[1]}


def test_another_pages_token_is_refused_with_the_permission_error(receiver: Receiver) -> None:
    tokens = {PAGES[0]: "page-token-one", PAGES[1]: "page-token-two"}
    with serve(SandboxGraph([], "1234567890", PAGES, page_tokens=tokens), port=0) as running:
        wait_until(lambda: port_open(running.port), what="sandbox listening")

        with pytest.raises(SimulationError, match=r"code 200"):
            simulate(
                running.url, receiver.url, SECRET, "x", PAGES, VERSION, leads=1, rate=0,
                page_tokens={PAGES[0]: "page-token-one", PAGES[1]: "page-token-one"},
            )  # fmt: skip

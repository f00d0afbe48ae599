"""The leads out again: the CSV export and the JSON pages, on SQLite and on Azure SQL over the pyodbc double.

Leads are stored through `store_lead` as ingestion stores them; the CSV is read back with Python's
`csv` module and, where the bytes matter (BOM, CRLF, quoting), as bytes.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from devhost.defaults import LOCAL_DEFAULTS
from shared.ingest.transform import normalise_lead
from shared.messaging.messages import LeadMessage
from shared.models.lead import GraphLead
from shared.ops.errors import OpsRefused
from shared.ops.export import (
    FIXED_COLUMNS,
    PAGE_SIZE,
    decode_cursor,
    encode_cursor,
    export_range,
    leads_csv,
    leads_page,
)
from shared.store import Store
from shared.store.export import LeadExport, LeadRange, Position
from tests.support.stores import count_rows, mssql_available, mssql_double_store, mssql_store, sqlite_store
from wiring import get_services, reset_services

BACKENDS = [
    "sqlite",
    "mssql-double",
    pytest.param(
        "mssql",
        marks=pytest.mark.skipif(not mssql_available(), reason="TEST_MSSQL_CONNECTION_STRING not set"),
    ),
]
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
FORM = "100000000000101"
OTHER_FORM = "100000000000202"
WIDE = {"since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"}


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        with sqlite_store(tmp_path) as created:
            yield created
    elif request.param == "mssql-double":
        with mssql_double_store(tmp_path) as created:
            yield created
    else:
        with mssql_store() as created:
            yield created


class Ids:
    """Lead ids in the order they are made (digits, as Meta's are)."""

    def __init__(self) -> None:
        self.next = 1_800_000_000_000_000

    def __call__(self) -> str:
        self.next += 1
        return str(self.next)


@pytest.fixture
def new_id() -> Ids:
    return Ids()


def add(
    store: Store,
    lead_id: str,
    created: datetime = T0,
    answers: dict[str, list[str]] | None = None,
    form: str = FORM,
) -> str:
    """Store one lead as ingestion does: its Graph answer normalised, then `store_lead`."""
    given = {"full_name": ["Ada Lovelace"], "email": [f"lead{lead_id}@example.com"]} if answers is None else answers
    payload = {
        "id": lead_id,
        "created_time": created.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "form_id": form,
        "field_data": [{"name": name, "values": values} for name, values in given.items()],
        "is_organic": True,
        "platform": "fb",
        "custom_disclaimer_responses": [],
    }
    message = LeadMessage(facebook_lead_id=lead_id, page_id="1000000000001", form_id=form)  # type: ignore[arg-type]
    store.leads.store_lead(normalise_lead(GraphLead.model_validate(payload), message), None, payload)
    return lead_id


def export(store: Store, mapping: dict[str, str] | None = None, **query: str) -> bytes:
    params = {**WIDE, **query}
    return leads_csv(store, params.get("since"), params.get("until"), params.get("form_id"), mapping or {}).body


def table(body: bytes) -> list[dict[str, str]]:
    """The CSV's rows by column name (the BOM checked and removed)."""
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(body[3:].decode("utf-8"), newline="")))


def header(body: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(body[3:].decode("utf-8"), newline="")))


# --- the CSV ---------------------------------------------------------------------------------


def test_the_csv_starts_with_a_bom_then_the_fixed_columns_and_ends_lines_with_crlf(store, new_id):
    add(store, new_id())
    body = export(store)
    assert body.startswith("\ufeff".encode())
    assert header(body)[: len(FIXED_COLUMNS)] == list(FIXED_COLUMNS)
    assert body.count(b"\r\n") == 2 and body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")


def test_a_field_with_a_comma_a_quote_and_a_newline_is_quoted_as_rfc_4180(store, new_id):
    add(store, new_id(), answers={"note": ['Smith, "Jo"\nJr']})
    body = export(store)
    assert b'"Smith, ""Jo""\nJr"' in body
    [row] = table(body)
    assert row["question:note"] == 'Smith, "Jo"\nJr'


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_value_a_spreadsheet_would_run_as_a_formula_gets_a_quote_in_front(store, new_id, start):
    add(store, new_id(), answers={"note": [f"{start}HYPERLINK(1)"], "city": ["Leeds"]})
    [row] = table(export(store))
    assert row["question:note"] == f"'{start}HYPERLINK(1)"
    assert row["question:city"] == "Leeds"


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_the_fixed_columns_are_neutralised_too(store, new_id, start):
    add(store, new_id(), answers={"full_name": [f"{start}cmd|' /C calc'!A0"]})
    [row] = table(export(store))
    assert row["full_name"] == f"'{start}cmd|' /C calc'!A0"


def test_a_non_ascii_name_round_trips(store, new_id):
    name = "Zoë Åström 王小明 🙂"
    add(store, new_id(), answers={"full_name": [name], "city": ["Škofja Loka"]})
    [row] = table(export(store))
    assert row["full_name"] == name and row["question:city"] == "Škofja Loka"


def test_the_question_columns_are_the_sorted_union_over_the_range_with_answers_joined(store, new_id):
    add(store, new_id(), T0, {"zeta": ["z"], "services": ["solar", "batteries"]})
    add(store, new_id(), T0 + timedelta(hours=1), {"alpha": ["a"]})
    add(store, new_id(), T0 - timedelta(days=60), {"outside": ["x"]})
    body = export(store, since="2026-10-01T00:00:00Z")
    questions = [name for name in header(body) if name.startswith("question:")]
    assert questions == ["question:alpha", "question:services", "question:zeta"]
    first, second = table(body)
    assert first["question:services"] == "solar; batteries" and first["question:alpha"] == ""
    assert second["question:alpha"] == "a" and second["question:zeta"] == ""


def test_since_is_inclusive_until_exclusive_and_form_id_filters(store, new_id):
    at_since = add(store, new_id(), T0)
    inside = add(store, new_id(), T0 + timedelta(minutes=5))
    add(store, new_id(), T0 - timedelta(seconds=1))
    add(store, new_id(), T0 + timedelta(hours=1))  # == until
    other = add(store, new_id(), T0 + timedelta(minutes=6), form=OTHER_FORM)
    window = {"since": "2026-11-02T09:00:00Z", "until": "2026-11-02T10:00:00+00:00"}
    ids = [row["facebook_lead_id"] for row in table(export(store, **window))]
    assert ids == [at_since, inside, other]
    only_form = [row["facebook_lead_id"] for row in table(export(store, form_id=OTHER_FORM, **window))]
    assert only_form == [other]


def test_the_default_range_is_the_last_30_days(store, new_id):
    now = datetime(2026, 12, 1, tzinfo=UTC)
    recent = add(store, new_id(), now - timedelta(days=29))
    add(store, new_id(), now - timedelta(days=31))
    exported = leads_csv(store, None, None, None, {}, now=now)
    assert [row["facebook_lead_id"] for row in table(exported.body)] == [recent]
    assert exported.filename == "leads-20261101T000000Z-20261201T000000Z.csv" and exported.rows == 1


def test_mapped_columns_are_the_field_map_names_valued_as_last_leads_shows_them(store, new_id):
    add(store, new_id(), T0, {"Email": [" a@example.com "], "town": ["", "York", "Hull"]})
    add(store, new_id(), T0 + timedelta(seconds=1), {"work_email": ["b@example.com"]})
    field_map = {"email": "contact", "work_email": "contact", "town": "home", "never_asked": "budget"}
    body = export(store, field_map)
    assert [n for n in header(body) if n.startswith("mapped:")] == ["mapped:contact", "mapped:home", "mapped:budget"]
    first, second = table(body)
    assert (first["mapped:contact"], first["mapped:home"], first["mapped:budget"]) == ("a@example.com", "York", "")
    assert (second["mapped:contact"], second["mapped:home"]) == ("b@example.com", "")
    shown = leads_page(store, WIDE["since"], None, None, field_map)["leads"]
    assert [lead["mapped"].get("contact") for lead in shown] == ["a@example.com", "b@example.com"]
    assert shown[0]["mapped"]["home"] == "York"


def test_an_empty_range_is_a_header_only(store):
    body = export(store)
    assert table(body) == [] and header(body) == list(FIXED_COLUMNS)


def test_an_export_larger_than_a_page_has_every_lead_once_in_creation_order(store, new_id):
    ids = [
        add(store, new_id(), T0 + timedelta(seconds=n // 7), {f"q{n % 3}": [str(n)]}) for n in range(PAGE_SIZE * 2 + 5)
    ]
    rows = table(export(store))
    assert [row["facebook_lead_id"] for row in rows] == ids  # ties (7 a second) cut across pages
    assert [row["question:q1"] for row in rows[:3]] == ["", "1", ""]


# --- the JSON pages --------------------------------------------------------------------------


def test_the_cursor_pages_through_2500_leads_without_gaps_or_repeats_while_new_ones_arrive(store, new_id):
    stored = [add(store, new_id(), T0 + timedelta(seconds=n // 37), {}) for n in range(2_500)]
    newest = T0 + timedelta(seconds=2_500 // 37)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = leads_page(store, WIDE["since"], cursor, "100")
        seen += [lead["facebook_lead_id"] for lead in page["leads"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        if pages <= 10:  # a newer lead, and one created the same second as the page's last lead
            newest += timedelta(seconds=1)
            stored.append(add(store, new_id(), newest, {}))
            stored.append(add(store, new_id(), decode_cursor(cursor).created_time, {}))
    assert len(seen) == len(set(seen)) == len(stored) == 2_520
    assert set(seen) == set(stored)
    times = [lead.created_time for lead in LeadExport(store.db).leads_after(Position(T0, 0), LeadRange(T0), 3_000)]
    assert times == sorted(times)


def test_a_page_has_the_ops_shape_and_no_cursor_when_nothing_follows(store, new_id):
    lead_id = add(store, new_id(), T0, {"city": ["Leeds"]})
    page = leads_page(store, "2026-11-01", None, None)
    assert page["next_cursor"] is None
    [lead] = page["leads"]
    assert lead["facebook_lead_id"] == lead_id and lead["created_time"] == "2026-11-02T09:00:00Z"
    assert lead["fields"] == {"city": ["Leeds"]} and set(lead) >= {"page_id", "form_id", "source", "email"}


def test_a_full_last_page_says_so_only_when_more_follow(store, new_id):
    for n in range(4):
        add(store, new_id(), T0 + timedelta(seconds=n))
    first = leads_page(store, "2026-11-01", None, "2")
    second = leads_page(store, "2026-11-01", first["next_cursor"], "2")
    assert first["next_cursor"] is not None and second["next_cursor"] is None and len(second["leads"]) == 2


def test_the_cursor_is_opaque_base64url_of_time_and_row_id():
    position = Position(datetime(2026, 11, 2, 9, 0, 0, 123_000, tzinfo=UTC), 42)
    cursor = encode_cursor(position)
    assert cursor.isascii() and set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == position


# --- refused requests ------------------------------------------------------------------------


@pytest.mark.parametrize("cursor", ["", "not a cursor", "!!!!", "MTIz", "YWJjOjE", "OTk5OTk5OTk5OTk5OTk5OjE", "é"])
def test_a_cursor_this_route_did_not_give_is_refused(cursor):
    with pytest.raises(OpsRefused, match="cursor"):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("since", "until", "form_id", "says"),
    [
        ("yesterday", None, None, "since must be an ISO 8601 time"),
        (None, "2026-13-01", None, "until must be an ISO 8601 time"),
        ("2026-11-02", "2026-11-01", None, "since must be before until"),
        ("2026-11-01", "2026-11-01", None, "since must be before until"),
        ("1969-12-31", None, None, "since must be from 1970"),
        (None, None, "12a", "form_id must be"),
        (None, None, "\uff11\uff12\uff13", "form_id must be"),  # fullwidth digits
    ],
)
def test_a_bad_range_is_refused_with_a_clear_error(since, until, form_id, says):
    with pytest.raises(OpsRefused, match=says):
        export_range(since, until, form_id, datetime(2026, 12, 1, tzinfo=UTC))


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1", "1.5", "٣"])
def test_a_bad_limit_is_refused(store, limit):
    with pytest.raises(OpsRefused, match="limit must be a whole number from 1 to 1000"):
        leads_page(store, None, None, limit)


# --- the audit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detail:
    detail: str


def test_each_export_writes_one_audit_row_naming_range_form_format_and_count_without_lead_data(store, new_id):
    lead_id = add(store, new_id(), T0, {"full_name": ["Grace Hopper"], "email": ["grace@example.com"]})
    export(store, form_id=FORM)
    leads_page(store, WIDE["since"], None, "10")
    with store.db.read() as tx:
        details = tx.all(Detail, "SELECT detail FROM audit_log WHERE action = ? ORDER BY id", ("leads_exported",))
    rows = [json.loads(row.detail) for row in details]
    assert count_rows(store, "audit_log", "action = ? AND facebook_lead_id IS NULL", ("leads_exported",)) == 2
    csv_row, json_row = rows
    assert csv_row == {
        "format": "csv",
        "since": "2026-01-01T00:00:00Z",
        "until": "2027-01-01T00:00:00Z",
        "form_id": FORM,
        "rows": 1,
    }
    assert json_row == {
        "format": "json",
        "since": "2026-01-01T00:00:00Z",
        "until": None,
        "form_id": None,
        "rows": 1,
        "cursor": False,
    }
    text = json.dumps(rows)
    assert all(value not in text for value in (lead_id, "Grace", "grace@example.com"))


def test_a_refused_export_writes_no_audit_row(store):
    with pytest.raises(OpsRefused):
        export(store, since="never")
    assert count_rows(store, "audit_log", "action = ?", ("leads_exported",)) == 0


# --- the store's pages (the contract, on every backend) -----------------------------------------


def test_pages_follow_creation_time_then_row_id_within_the_range(store, new_id):
    late = add(store, new_id(), T0 + timedelta(seconds=1))
    tied = [add(store, new_id(), T0) for _ in range(4)]
    add(store, new_id(), T0 + timedelta(hours=2))
    reads, within = LeadExport(store.db), LeadRange(T0, T0 + timedelta(hours=1))
    found: list[str] = []
    after = within.start
    while page := reads.leads_after(after, within, 2):
        found += [lead.facebook_lead_id for lead in page]
        after = page[-1].position
    assert found == [*tied, late]


def test_answer_pages_give_the_same_positions_with_the_answers_typed(store, new_id):
    for n in range(3):
        add(store, new_id(), T0, {"q": [str(n)]}, form=OTHER_FORM if n == 1 else FORM)
    reads, within = LeadExport(store.db), LeadRange(T0, T0 + timedelta(hours=1), FORM)
    answers = reads.answers_after(within.start, within, 10)
    leads = reads.leads_after(within.start, within, 10)
    assert [a.position for a in answers] == [lead.position for lead in leads] and len(leads) == 2
    first = answers[0]
    assert first.created_time == T0 and first.created_time.tzinfo is not None
    assert type(first.row_id) is int and first.fields == {"q": ["0"]}
    assert [lead.fields["q"] for lead in leads] == [["0"], ["2"]]


def test_a_page_stops_at_the_highest_row_id_asked(store, new_id):
    first = add(store, new_id(), T0 + timedelta(seconds=5))
    add(store, new_id(), T0)
    reads = LeadExport(store.db)
    [lead] = reads.leads_after(Position(T0, 0), LeadRange(T0), 10)[1:]
    assert lead.facebook_lead_id == first
    through = LeadRange(T0, through_id=lead.row_id)
    assert [x.facebook_lead_id for x in reads.leads_after(through.start, through, 10)] == [first]


# --- the routes ------------------------------------------------------------------------------


@pytest.fixture
def app_store(monkeypatch, tmp_path, azurite) -> Iterator[Store]:
    """The app's own services on a fresh SQLite file, the rate limiter on Azurite."""
    from functions import guard
    from shared.storage.ratelimit import RateLimiter

    for name, value in LOCAL_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SQLITE_PATH", str(tmp_path / "leads.db"))
    reset_services()
    monkeypatch.setattr(guard, "limiter", lambda: RateLimiter(azurite.connection_string, table="exporttestlimits"))
    yield get_services().store
    reset_services()


@pytest.fixture(scope="module")
def functions() -> dict[str, Any]:
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    return {f.get_function_name(): f for f in module.app.get_functions()}


def call(functions: dict[str, Any], name: str, url: str, params: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest(method="GET", url=url, params=params, body=b"")
    response: func.HttpResponse = functions[name].get_user_function()(request)
    return response


def test_the_csv_route_answers_an_attachment_of_text_csv_in_utf_8(functions, app_store, new_id):
    lead_id = add(app_store, new_id(), T0)
    response = call(functions, "ops_leads_csv", "/api/ops/leads.csv", {**WIDE, "form_id": FORM})
    assert response.status_code == 200
    assert (response.mimetype, response.charset) == ("text/csv", "utf-8")  # Content-Type: text/csv; charset=utf-8
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="leads-20260101T000000Z-20270101T000000Z.csv"'
    )
    assert [row["facebook_lead_id"] for row in table(response.get_body())] == [lead_id]


def test_the_routes_answer_400_for_a_bad_request(functions, app_store):
    for name, url, params in (
        ("ops_leads_csv", "/api/ops/leads.csv", {"since": "last week"}),
        ("ops_leads_csv", "/api/ops/leads.csv", {"form_id": "x"}),
        ("ops_leads", "/api/ops/leads", {"cursor": "nope"}),
        ("ops_leads", "/api/ops/leads", {"limit": "5000"}),
    ):
        response = call(functions, name, url, params)
        assert response.status_code == 400, (url, params)
        assert json.loads(response.get_body())["error"]


def test_the_json_route_pages_with_its_cursor(functions, app_store, new_id):
    ids = [add(app_store, new_id(), T0 + timedelta(seconds=n)) for n in range(3)]
    first = json.loads(call(functions, "ops_leads", "/api/ops/leads", {"since": "2026-11-01", "limit": "2"}).get_body())
    params = {"since": "2026-11-01", "limit": "2", "cursor": first["next_cursor"]}
    second = json.loads(call(functions, "ops_leads", "/api/ops/leads", params).get_body())
    assert [lead["facebook_lead_id"] for lead in first["leads"] + second["leads"]] == ids
    assert second["next_cursor"] is None

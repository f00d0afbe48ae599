"""Simulate Meta: create test leads through a Graph API and deliver signed `leadgen` webhooks for them.

`python -m fakes.simulate --leads N --rate R [--duplicates P] [--batch B] [--pages P1,P2]
[--webhook URL] [--graph URL] [--graph-version V] [--seed S] [--ids-out FILE]` discovers the forms
and their questions on each page (every page in `FACEBOOK_PAGE_IDS` and every page with a
`FACEBOOK_PAGE_TOKEN_{page_id}`, or those of `--pages`), creates N leads spread over them with
`POST /{form-id}/test_leads` (a realistic answer to every question of the form, custom ones
included, about one name in five non-ASCII), each page's calls made with its own Page token when
it has one (`FACEBOOK_ACCESS_TOKEN` otherwise), and posts Meta's exact webhook shape to the devhost
at R leads per second: up to B changes per POST, grouped by page, ids mostly JSON strings and sometimes JSON
numbers, the body as escaped ASCII and signed with `X-Hub-Signature-256` over its exact bytes.
With `--duplicates P` each lead is delivered again, in a later POST, with probability P.
Settings come from the environment, then `local.settings.json`, then `devhost.defaults`.
Nothing printed or logged contains a lead's answers.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import sys
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from fakes.sandbox.environment import local_environment, page_ids, page_tokens
from shared.settings import SettingsError

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:7071/api/webhook/facebook/leads"
TIMEOUT = (3.05, 30.0)
NUMERIC_ID_SHARE = 0.2
NON_ASCII_SHARE = 0.2

_FIRST_NAMES = ("Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Mia", "Lucas", "Grace", "Henry", "Chloe", "Daniel")
_LAST_NAMES = ("Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Walker", "Wright", "Hughes")
_NON_ASCII_NAMES = (
    "Zoë Åström",
    "José Núñez",
    "François Lefèvre",
    "Łukasz Żółkiewski",
    "Søren Bjørnskov",
    "Nguyễn Thị Lan",
    "محمد الأحمد",
    "فاطمة الزهراء",
    "Γιώργος Παπαδόπουλος",
    "Иван Петров",
    "Ana 🌸 Silva",
    "Chloé 😊 Dubois",
)
_CITIES = ("Austin", "Leeds", "Dublin", "Toronto", "São Paulo", "Zürich", "Malmö", "Kraków", "Montréal", "القاهرة")
_SERVICES_KEY = "which_services_are_you_interested_in?"
_SERVICES = ("solar_panels", "battery_storage", "heat_pump", "ev_charger", "insulation")
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
_COMPANIES = ("Acme Ltd", "Nordlicht GmbH", "Café Olé SARL", "Blue Harbor Inc", "Żabka Studio")
_JOB_TITLES = ("Owner", "Operations Manager", "Head of Marketing", "Facilities Lead", "Procurement Officer")
_FREE_TEXT = ("As soon as possible", "Please call me in the evening", "Not sure yet", "Ça dépend du prix")


class SimulationError(RuntimeError):
    """The Graph API refused a call the simulation needs; the message names the call and Meta's error."""


@dataclass(frozen=True)
class WebhookChange:
    """One `leadgen` change; `numeric_ids` writes its ids as JSON numbers instead of strings."""

    leadgen_id: str
    page_id: str
    form_id: str
    created_time: int
    ad_id: str | None = None
    numeric_ids: bool = False

    def value(self) -> dict[str, Any]:
        """The change's `value` object exactly as Meta sends it (ad ids only for ad leads)."""

        def as_id(raw: str) -> str | int:
            return int(raw) if self.numeric_ids else raw

        value: dict[str, Any] = {
            "leadgen_id": as_id(self.leadgen_id),
            "page_id": as_id(self.page_id),
            "form_id": as_id(self.form_id),
        }
        if self.ad_id is not None:
            value["ad_id"] = as_id(self.ad_id)
            value["adgroup_id"] = as_id(self.ad_id)
        value["created_time"] = self.created_time
        return value


@dataclass
class SimulationReport:
    """What a simulation did: created lead ids, POSTs, changes delivered and HTTP statuses (0 = no answer)."""

    lead_ids: list[str] = field(default_factory=list)
    posts: int = 0
    deliveries: int = 0
    duplicate_deliveries: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    leads_by_page: dict[str, int] = field(default_factory=dict)


def sign(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` value for these exact body bytes: `sha256=<lowercase hex HMAC-SHA256>`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _page_and_value(change: WebhookChange | Mapping[str, Any]) -> tuple[str | int, dict[str, Any]]:
    if isinstance(change, WebhookChange):
        return (int(change.page_id) if change.numeric_ids else change.page_id), change.value()
    return change["page_id"], dict(change)


def build_webhook_body(changes: Iterable[WebhookChange | Mapping[str, Any]], sent_at: int | None = None) -> bytes:
    """Meta's `page` webhook body for these changes: one entry per page in first-seen order, escaped ASCII.

    A change is a `WebhookChange` or a ready `value` mapping (it must hold `page_id`, which also
    becomes the entry's `id`, keeping its JSON type). The body is compact, ASCII-only JSON, as Meta sends.
    """
    entries: dict[str, dict[str, Any]] = {}
    now = int(time.time()) if sent_at is None else sent_at
    for change in changes:
        page_id, value = _page_and_value(change)
        entry = entries.setdefault(str(page_id), {"id": page_id, "time": now, "changes": []})
        entry["changes"].append({"field": "leadgen", "value": value})
    document = {"object": "page", "entry": list(entries.values())}
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(char for char in decomposed.lower() if char.isalnum())


def _person(rng: random.Random) -> tuple[str, str, str, str]:
    if rng.random() < NON_ASCII_SHARE:
        first, _, last = rng.choice(_NON_ASCII_NAMES).partition(" ")
    else:
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    local_part = ".".join(part for part in (_ascii_fold(first), _ascii_fold(last)) if part) or "lead"
    email = f"{local_part}{rng.randrange(100)}@{rng.choice(_EMAIL_DOMAINS)}"
    phone = rng.choice((f"+1202555{rng.randrange(100, 200):04d}", f"+447700900{rng.randrange(1000):03d}"))
    return first, last, email, phone


def _answer(rng: random.Random, question: Mapping[str, Any], person: tuple[str, str, str, str]) -> list[str]:
    first, last, email, phone = person
    kind = question.get("type")
    standard = {
        "FULL_NAME": f"{first} {last}",
        "FIRST_NAME": first,
        "LAST_NAME": last,
        "EMAIL": email,
        "PHONE": phone,
    }
    if kind in standard:
        return [standard[str(kind)]]
    if kind == "CITY":
        return [rng.choice(_CITIES)]
    if kind in ("ZIP", "POST_CODE"):
        return [f"{rng.randrange(10000, 99999)}"]
    if kind == "COMPANY_NAME":
        return [rng.choice(_COMPANIES)]
    if kind == "JOB_TITLE":
        return [rng.choice(_JOB_TITLES)]
    options = [str(o["value"]) for o in question.get("options") or () if isinstance(o, dict) and "value" in o]
    return [rng.choice(options)] if options else [rng.choice(_FREE_TEXT)]


def fake_field_data(rng: random.Random, questions: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Plausible answers: one per question of the form (custom ones too), each named by the question's key.

    Without questions: a name (full or split), email, phone, city and a multi-select custom answer.
    """
    person = _person(rng)
    if questions:
        return [{"name": str(q["key"]), "values": _answer(rng, q, person)} for q in questions]
    first, last, email, phone = person
    if rng.random() < 0.5:
        names = [{"name": "full_name", "values": [f"{first} {last}"]}]
    else:
        names = [{"name": "first_name", "values": [first]}, {"name": "last_name", "values": [last]}]
    return [
        *names,
        {"name": "email", "values": [email]},
        {"name": "phone_number", "values": [phone]},
        {"name": "city", "values": [rng.choice(_CITIES)]},
        {"name": _SERVICES_KEY, "values": rng.sample(_SERVICES, k=rng.randint(2, 3))},
    ]


class _Pacer:
    """Releases the n-th event at start + n / rate on the monotonic clock (no pacing when rate <= 0)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._start = time.monotonic()
        self._released = 0

    def wait_turn(self) -> None:
        if self._rate > 0:
            delay = self._start + self._released / self._rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._released += 1


@dataclass(frozen=True)
class _Form:
    """An ACTIVE form the simulator fills: its id and its questions as Meta lists them."""

    id: str
    questions: tuple[Mapping[str, Any], ...]


class _Graph:
    """The few Graph calls the simulator makes, each with the given token in the Authorization header."""

    def __init__(self, session: requests.Session, graph_url: str, version: str) -> None:
        self._session = session
        self._base = "/".join(part for part in (graph_url.rstrip("/"), version.strip("/")) if part)

    def _call(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        response = self._session.request(method, f"{self._base}/{path}", headers=headers, timeout=TIMEOUT, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            code = "/".join(str(error[key]) for key in ("code", "error_subcode") if key in error) or "none"
            raise SimulationError(
                f"{method} /{path} failed: HTTP {response.status_code}, code {code}: {error.get('message', '')}"
            )
        return body

    def active_forms(self, page_id: str, token: str) -> list[_Form]:
        """The page's ACTIVE lead forms with their questions."""
        body = self._call("GET", f"{page_id}/leadgen_forms", token, params={"fields": "id,status,questions"})
        return [
            _Form(str(form["id"]), tuple(q for q in form.get("questions") or () if isinstance(q, dict) and "key" in q))
            for form in body.get("data", [])
            if form.get("status", "ACTIVE") == "ACTIVE"
        ]

    def create_test_lead(self, form_id: str, token: str, field_data: list[dict[str, Any]]) -> str:
        """A new test lead on the form; its id."""
        return str(self._call("POST", f"{form_id}/test_leads", token, json={"field_data": field_data})["id"])


def _deliver(session: requests.Session, url: str, body: bytes, app_secret: str) -> int:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, app_secret)}
    try:
        return session.post(url, data=body, headers=headers, timeout=TIMEOUT).status_code
    except requests.RequestException:
        return 0


def simulate(
    graph_url: str,
    webhook_url: str,
    app_secret: str,
    access_token: str,
    page_ids: Sequence[str],
    version: str,
    leads: int,
    rate: float,
    duplicates: float = 0.0,
    batch: int = 1,
    seed: int | None = None,
    page_tokens: Mapping[str, str] | None = None,
) -> SimulationReport:
    """Create `leads` leads at `rate` per second and deliver each at least once in signed POSTs of up to `batch`.

    Leads are spread at random over the pages' ACTIVE forms, each answering every question of its
    form; a page's calls use its token in `page_tokens`, else `access_token`. Every created lead id
    is delivered once as new; with probability `duplicates` it is delivered again in a later POST.
    Raises `SimulationError` when the Graph API refuses a call.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if not 0.0 <= duplicates <= 1.0:
        raise ValueError("duplicates must be a probability between 0 and 1")
    rng = random.Random(seed)
    report = SimulationReport()
    statuses: Counter[int] = Counter()
    pending: deque[tuple[WebhookChange, bool]] = deque()
    by_page: Counter[str] = Counter()
    tokens = {page: (page_tokens or {}).get(page) or access_token for page in page_ids}
    with requests.Session() as session:
        graph = _Graph(session, graph_url, version)
        forms = {page: graph.active_forms(page, tokens[page]) for page in page_ids}
        pages = [page for page, page_forms in forms.items() if page_forms]
        if leads > 0 and not pages:
            raise SimulationError("no page given has an ACTIVE lead form")

        def send(count: int) -> None:
            sent = [pending.popleft() for _ in range(min(count, len(pending)))]
            body = build_webhook_body(change for change, _ in sent)
            statuses[_deliver(session, webhook_url, body, app_secret)] += 1
            report.posts += 1
            report.deliveries += len(sent)
            report.duplicate_deliveries += sum(is_duplicate for _, is_duplicate in sent)
            pending.extend((change, True) for change, again in sent if not again and rng.random() < duplicates)

        pacer = _Pacer(rate)
        for _ in range(leads):
            pacer.wait_turn()
            page = rng.choice(pages)
            form = rng.choice(forms[page])
            lead_id = graph.create_test_lead(form.id, tokens[page], fake_field_data(rng, form.questions))
            report.lead_ids.append(lead_id)
            by_page[page] += 1
            numeric = rng.random() < NUMERIC_ID_SHARE
            change = WebhookChange(lead_id, page, form.id, int(time.time()), numeric_ids=numeric)
            pending.append((change, False))
            while len(pending) >= batch:
                send(batch)
        while pending:
            send(batch)
    report.statuses = dict(sorted(statuses.items()))
    report.leads_by_page = dict(sorted(by_page.items()))
    return report


def _parser(env: dict[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.simulate", description="Simulate Meta lead webhooks.")
    parser.add_argument("--leads", type=int, default=10, help="how many leads to create (default 10)")
    parser.add_argument("--rate", type=float, default=2.0, help="leads per second (default 2; 0 = no pacing)")
    parser.add_argument("--duplicates", type=float, default=0.0, help="chance each lead is delivered again")
    parser.add_argument("--batch", type=int, default=1, help="most changes per webhook POST (default 1)")
    parser.add_argument(
        "--pages",
        type=_page_list,
        default=None,
        help="comma-separated page ids to create leads on (default: every configured page)",
    )
    parser.add_argument("--webhook", default=DEFAULT_WEBHOOK_URL, help="the webhook URL to POST to")
    parser.add_argument("--graph", default=env["FACEBOOK_GRAPH_URL"], help="the Graph API base URL")
    parser.add_argument("--graph-version", default=env["FACEBOOK_GRAPH_VERSION"], help="e.g. v26.0")
    parser.add_argument("--seed", type=int, default=None, help="random seed for repeatable runs")
    parser.add_argument("--ids-out", type=Path, default=None, help="write the created lead ids here, one a line")
    return parser


def _page_list(text: str) -> list[str]:
    pages = [part.strip() for part in text.split(",") if part.strip()]
    if not pages or not all(page.isdigit() for page in pages):
        raise argparse.ArgumentTypeError(f"expected comma-separated numeric page ids, got {text!r}")
    return pages


def configured_pages(env: Mapping[str, str]) -> list[str]:
    """Every page in `FACEBOOK_PAGE_IDS`, then any other page with its own `FACEBOOK_PAGE_TOKEN_{page_id}`."""
    pages = page_ids(env)
    return pages + sorted(set(page_tokens(env)) - set(pages))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one simulation from the command line; 0 when every POST got a 2xx, 1 otherwise."""
    try:
        env = local_environment()
    except SettingsError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    args = _parser(env).parse_args(argv)
    try:
        report = simulate(
            graph_url=args.graph,
            webhook_url=args.webhook,
            app_secret=env["FACEBOOK_APP_SECRET"],
            access_token=env["FACEBOOK_ACCESS_TOKEN"],
            page_ids=args.pages or configured_pages(env),
            version=args.graph_version,
            leads=args.leads,
            rate=args.rate,
            duplicates=args.duplicates,
            batch=args.batch,
            seed=args.seed,
            page_tokens=page_tokens(env),
        )
    except (SimulationError, ValueError, requests.RequestException) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    print(f"leads created:        {len(report.lead_ids)}")
    per_page = ", ".join(f"{page}: {n}" for page, n in report.leads_by_page.items())
    print(f"leads per page:       {per_page or 'none'}")
    print(f"webhook POSTs sent:   {report.posts}")
    print(f"changes delivered:    {report.deliveries}")
    print(f"duplicate deliveries: {report.duplicate_deliveries}")
    by_status = ", ".join(f"{status or 'no answer'}: {n}" for status, n in report.statuses.items())
    print(f"responses by status: {by_status or 'none'}")
    if args.ids_out is not None:
        args.ids_out.write_text("".join(f"{lead_id}\n" for lead_id in report.lead_ids), encoding="utf-8")
        print(f"lead ids written to:  {args.ids_out}")
    return 0 if all(200 <= status < 300 for status in report.statuses) else 1


if __name__ == "__main__":
    raise SystemExit(main())

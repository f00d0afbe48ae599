"""Store cost at scale: `store_lead` per lead and the stats / last-leads routes with 10 k and 1 M leads in SQLite.

Each database gets the real schema (`Store.migrate`), then N leads written in bulk in one
transaction exactly as `store_lead` would have written them (a `leads` row, a `raw_leads` row with
the webhook event and Graph answer, a `stored` audit row, and the `source:webhook` running counter),
created over the last year. Then, alternating between the sizes so machine noise hits both: 500
new leads through `Store.store_lead` (with the notification outbox row, as ingestion writes
it), and 50 calls each of `shared.stats.overview` (`GET /api/stats`), `store.leads.last_leads(10)`
(`GET /api/ops/last-leads`) and `shared.stats.ingestion` (`GET /api/stats/ingestion`, for
information). For realism, the largest database is then served by a devhost and the three routes
are called over HTTP, next to `GET /api/openapi.yaml` (a static answer) as the HTTP reference.
The reference for scale is the smallest size, measured in the same run.

Run: `.venv/bin/python -m bench.store_scale [--quick] [--sizes 10000,1000000]`. Files go to a
temporary folder, deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench.stack import PAGE, local_stack, percentile
from fakes.sandbox import SandboxGraph
from fakes.simulate import WebhookChange, fake_field_data
from shared import stats
from shared.ingest.transform import normalise_lead
from shared.messaging.messages import LeadMessage
from shared.models.lead import LEAD_FIELDS, GraphLead, NormalisedLead
from shared.store import Store
from shared.store.schema import utf16_length
from shared.store.sqlite import SqliteBackend

TARGET_SCALE_RATIO = 1.3
TARGET_ROUTE_MS = 50.0
FORMS = tuple(f"{PAGE}{n:02d}" for n in range(1, 21))
TEMPLATE_ID = "1700000000000000"
YEAR = 365 * 24 * 3600


@dataclass(frozen=True)
class LeadRow:
    """What the bulk writer needs to know of one lead; the answers come from a template."""

    facebook_lead_id: str
    page_id: str
    form_id: str
    created: float


@dataclass(frozen=True)
class Template:
    """One realistic lead as `store_lead` writes it, with `TEMPLATE_ID` standing for the lead id."""

    email: str | None
    full_name: str | None
    phone_number: str | None
    fields_json: str
    raw_event: str
    raw_graph: str


def db_time(epoch: float) -> str:
    """The SQLite backend's time format: fixed-width UTC with milliseconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def realistic_leads(count: int, seed: int) -> list[tuple[NormalisedLead, dict[str, Any], dict[str, Any]]]:
    """`count` leads as ingestion hands them to `store_lead`: (normalised lead, webhook event, Graph answer)."""
    sandbox = SandboxGraph(["bench-token"], page_ids=[PAGE], forms_per_page=len(FORMS))
    rng = random.Random(seed)
    leads = []
    for _ in range(count):
        form = rng.choice(FORMS)
        lead_id = sandbox.create_lead(form, fake_field_data(rng))
        raw = sandbox.lead(lead_id).render(list(LEAD_FIELDS))
        event = WebhookChange(lead_id, PAGE, form, int(time.time())).value()
        message = LeadMessage(facebook_lead_id=lead_id, page_id=PAGE, form_id=form, event=event)
        leads.append((normalise_lead(GraphLead.model_validate(raw), message), event, raw))
    return leads


def templates(count: int = 64) -> list[Template]:
    """Answer templates made by the real normalisation, the lead id replaced by `TEMPLATE_ID`."""
    made = []
    for lead, event, raw in realistic_leads(count, seed=1):
        lead_id = lead.facebook_lead_id

        def blank(text: str, lead_id: str = lead_id) -> str:
            return text.replace(lead_id, TEMPLATE_ID)

        made.append(
            Template(
                lead.email,
                lead.full_name,
                lead.phone_number,
                json.dumps(lead.fields, ensure_ascii=False),
                blank(json.dumps(event, ensure_ascii=False)),
                blank(json.dumps(raw, ensure_ascii=False)),
            )
        )
    return made


def synthetic_rows(count: int, now: float, span_seconds: float = YEAR, first_id: int = 10**15) -> Iterator[LeadRow]:
    """`count` leads spread evenly over the `span_seconds` before `now`, oldest first, ids increasing."""
    rng = random.Random(count)
    step = span_seconds / max(count, 1)
    for n in range(count):
        yield LeadRow(str(first_id + n), PAGE, rng.choice(FORMS), now - span_seconds + n * step)


def bulk_insert(path: Path, rows: Iterable[LeadRow], source: str = "webhook", chunk: int = 20_000) -> int:
    """Write `rows` as `store_lead` would (lead, raw, audit rows and the running counter), in one transaction.

    The database must be migrated already. Returns the number of leads written.
    """
    shapes = templates()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.create_function("utf16_length", 1, utf16_length, deterministic=True)  # the schema's length checks
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB
    written = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        batch: list[LeadRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) == chunk:
                written += _write(conn, batch, shapes, source)
                batch = []
        written += _write(conn, batch, shapes, source)
        conn.execute(
            "INSERT INTO lead_counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (f"source:{source}", written),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return written


def _write(conn: sqlite3.Connection, batch: list[LeadRow], shapes: list[Template], source: str) -> int:
    leads, raws, audits = [], [], []
    for row in batch:
        shape = shapes[int(row.facebook_lead_id) % len(shapes)]
        created, stored = db_time(row.created), db_time(row.created + 2.5)
        leads.append(
            (
                row.facebook_lead_id,
                row.page_id,
                row.form_id,
                created,
                source,
                shape.email,
                shape.full_name,
                shape.phone_number,
                shape.fields_json,
                stored,
            )
        )
        raws.append(
            (
                row.facebook_lead_id,
                source,
                shape.raw_event.replace(TEMPLATE_ID, row.facebook_lead_id),
                shape.raw_graph.replace(TEMPLATE_ID, row.facebook_lead_id),
                stored,
            )
        )
        audits.append((stored, row.facebook_lead_id, source))
    conn.executemany(
        "INSERT INTO leads (facebook_lead_id, page_id, form_id, created_time, is_organic, platform, source, email,"
        " full_name, phone_number, fields_json, disclaimers_json, stored_at)"
        " VALUES (?, ?, ?, ?, 1, 'fb', ?, ?, ?, ?, ?, '[]', ?)",
        leads,
    )
    conn.executemany(
        "INSERT INTO raw_leads (facebook_lead_id, source, raw_event, raw_graph, received_at) VALUES (?, ?, ?, ?, ?)",
        raws,
    )
    conn.executemany(
        "INSERT INTO audit_log (at, action, facebook_lead_id, source, detail) VALUES (?, 'stored', ?, ?,"
        " '{\"attempt\": 0}')",
        audits,
    )
    return len(batch)


def migrated_store(path: Path) -> Store:
    store = Store(SqliteBackend(str(path)))
    store.migrate()
    return store


@dataclass
class Size:
    """One database and what was measured on it (seconds)."""

    leads: int
    path: Path
    store: Store
    build_seconds: float
    megabytes: float
    store_lead: list[float] = field(default_factory=list)
    routes: dict[str, list[float]] = field(default_factory=dict)


def build(folder: Path, leads: int, now: float) -> Size:
    path = folder / f"leads-{leads}.db"
    store = migrated_store(path)
    started = time.perf_counter()
    bulk_insert(path, synthetic_rows(leads, now))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no ANALYZE: a production file never gets one
    conn.close()
    os.sync()  # else the first checkpoint's fsync pays for flushing the whole build (~0.7 s at 1 M)
    elapsed = time.perf_counter() - started
    megabytes = sum(p.stat().st_size for p in folder.glob(f"{path.name}*")) / 1e6
    return Size(leads, path, store, elapsed, megabytes)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


ROUTES: dict[str, Callable[[Store], object]] = {
    "GET /api/stats": stats.overview,
    "GET /api/ops/last-leads": lambda store: store.leads.last_leads(10),
    "GET /api/stats/ingestion": lambda store: stats.ingestion(store, 24, lambda form: None),
}


def measure(sizes: list[Size], new_leads: int, repetitions: int) -> None:
    """Interleaved: a round of store_lead and route calls on each size in turn, until all are done."""
    rounds = 10
    fresh = realistic_leads(new_leads * len(sizes) + 20 * len(sizes), seed=2)
    for size in sizes:  # warm-up, not measured: connection, statement cache, pages
        for lead, event, raw in (fresh.pop() for _ in range(20)):
            size.store.leads.store_lead(lead, event, raw, {"attempt": 0}, notify=True)
        for route in ROUTES.values():
            route(size.store)
    for _ in range(rounds):
        for size in sizes:
            for _ in range(new_leads // rounds):
                lead, event, raw = fresh.pop()
                size.store_lead.append(
                    timed(lambda: size.store.leads.store_lead(lead, event, raw, {"attempt": 0}, notify=True))  # noqa: B023
                )
            for name, route in ROUTES.items():
                for _ in range(repetitions // rounds):
                    size.routes.setdefault(name, []).append(timed(lambda: route(size.store)))  # noqa: B023


def http_routes(size: Size, repetitions: int) -> dict[str, list[float]]:
    """The routes over HTTP through a devhost serving this database (plus a static route as reference)."""
    paths = {
        "GET /api/stats": "/api/stats",
        "GET /api/ops/last-leads": "/api/ops/last-leads?limit=10",
        "GET /api/stats/ingestion": "/api/stats/ingestion?hours=24",
        "reference: GET /api/openapi.yaml": "/api/openapi.yaml",
    }
    settings = {
        "SQLITE_PATH": str(size.path),
        "RATE_LIMIT_PER_MINUTE": "1000000",
        "AzureWebJobs.poll_leads.Disabled": "true",
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    with local_stack(**settings) as stack, requests.Session() as session:
        for path in paths.values():  # warm-up: lazily built clients, the rate-limit table
            session.get(stack.devhost.url + path, timeout=30).raise_for_status()
        for _ in range(repetitions):
            for name, path in paths.items():
                started = time.perf_counter()
                response = session.get(stack.devhost.url + path, timeout=30)
                times[name].append(time.perf_counter() - started)
                response.raise_for_status()
    return times


def ms(values: list[float], pct: float) -> float:
    return percentile([v * 1000 for v in values], pct)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_report(sizes: list[Size], http: dict[str, list[float]] | None) -> None:
    small, large = sizes[0], sizes[-1]
    print("store scale: SQLite, real schema, leads bulk-written as store_lead writes them (created over a year)")
    for size in sizes:
        print(f"  {size.leads:>9,} leads: built in {size.build_seconds:5.1f} s, {size.megabytes:7.1f} MB")
    print(f"  {'per call, ms':<34}" + "".join(f"{f'{s.leads:,} p50':>14}{'p99':>8}{'max':>8}" for s in sizes))
    rows = {"store_lead (one new lead)": [s.store_lead for s in sizes]}
    rows.update({name: [s.routes[name] for s in sizes] for name in ROUTES})
    for name, per_size in rows.items():
        cells = "".join(
            f"{ms(values, 50):>14.2f}{ms(values, 99):>8.2f}{max(values) * 1000:>8.1f}" for values in per_size
        )
        print(f"  {name:<34}{cells}")
    mean = {s.leads: statistics.fmean(s.store_lead) * 1000 for s in (small, large)}
    median = {s.leads: statistics.median(s.store_lead) * 1000 for s in (small, large)}
    ratio = mean[large.leads] / mean[small.leads]
    print(
        f"  store_lead cost (mean, WAL checkpoints included) {mean[large.leads]:.3f} ms at {large.leads:,}"
        f" vs {mean[small.leads]:.3f} ms at {small.leads:,}: ratio {ratio:.2f}"
        f" (target ≤ {TARGET_SCALE_RATIO:g}: {verdict(ratio <= TARGET_SCALE_RATIO)});"
        f" median ratio {median[large.leads] / median[small.leads]:.2f}"
    )
    for name in ("GET /api/stats", "GET /api/ops/last-leads"):
        worst = ms(large.routes[name], 99)
        print(
            f"  {name} p99 at {large.leads:,}: {worst:.2f} ms (target ≤ {TARGET_ROUTE_MS:g} ms: {verdict(worst <= 50)})"
        )
    if http:
        count = len(next(iter(http.values())))
        print(
            f"  over HTTP through the devhost at {large.leads:,} leads ({count} calls each, rate limiter on Azurite):"
        )
        for name, values in http.items():
            line = f"    {name:<36}p50 {ms(values, 50):7.1f} ms   p99 {ms(values, 99):7.1f} ms"
            if not name.startswith("reference"):
                line += f"   (target ≤ {TARGET_ROUTE_MS:g} ms: {verdict(ms(values, 99) <= TARGET_ROUTE_MS)})"
            print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 k and 100 k leads, fewer calls")
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated lead counts, smallest first")
    parser.add_argument("--new-leads", type=int, default=500, help="store_lead calls per size")
    parser.add_argument("--repetitions", type=int, default=50, help="calls of each route per size")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurement through the devhost")
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.sizes.split(","))
    if args.quick:
        counts, args.new_leads, args.repetitions = [10_000, 100_000], 100, 20
    folder = Path(tempfile.mkdtemp(prefix="bench-store-scale-"))
    try:
        now = datetime.now(UTC).timestamp()
        sizes = [build(folder, count, now) for count in counts]
        measure(sizes, args.new_leads, args.repetitions)
        http = None if args.no_http else http_routes(sizes[-1], args.repetitions)
        print_report(sizes, http)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

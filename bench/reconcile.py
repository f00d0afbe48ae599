"""Reconciliation of 10,000 leads across 20 forms against the sandbox Graph API: time and Graph calls.

The sandbox serves 10 pages with 2 forms each over HTTP; 10,000 leads are created in it over the
last 20 hours. The store (a SQLite file) already holds all but 100 of them, written in bulk as
`store_lead` would. `reconcile_window` then runs in-process over the last 24 hours with the app's
real parts (Graph client, SQLite store, `QueueSender` on Azurite) and must queue exactly the 100
missing leads. Graph calls are counted twice: by the run's report and by the sandbox's meter.

Expected calls: 1 `debug_token` + P `subscribed_apps` + P `leadgen_forms` (one page each, under
100 forms a page) + the sum over forms of max(1, ceil(leads of the form / 100)) `/{form}/leads`
pages; at most 1 + 2·P + F + L / 100. Nothing per lead.
Reference, same run: one `GET /{form-id}/leads` page of 100 leads fetched alone (median of 20)
times the number of lead pages the run needed.

Run: `.venv/bin/python -m bench.reconcile [--quick] [--leads 10000]`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.stack import SECRET, TOKEN
from bench.store_scale import LeadRow, bulk_insert, migrated_store
from fakes.sandbox import DEFAULT_APP_ID, SandboxGraph, serve
from fakes.simulate import fake_field_data
from shared.graph.client import GraphClient
from shared.graph.throttle import ThrottleGate
from shared.messaging.sender import QueueSender
from shared.models.lead import LEAD_FIELDS
from shared.monitoring.token_state import IntegrationMonitor
from shared.poller.reconcile import PollerConfig, PollerDeps, reconcile_window
from shared.storage.names import LEADS_QUEUE
from tests.support.azurite import start_azurite

PAGES = tuple(str(1_000_000_000_001 + n) for n in range(10))
FORMS_PER_PAGE = 2
MISSING = 100
WINDOW_HOURS = 24.0
SPREAD_HOURS = 20.0


def create_leads(sandbox: SandboxGraph, count: int, now: float, rng: random.Random) -> list[LeadRow]:
    """`count` leads on random forms, created over the last `SPREAD_HOURS` (the newest 10 minutes ago)."""
    forms = [(page, f"{page}{n:02d}") for page in PAGES for n in range(1, FORMS_PER_PAGE + 1)]
    rows = []
    for _ in range(count):
        page, form = rng.choice(forms)
        created = now - 600 - rng.random() * (SPREAD_HOURS * 3600 - 600)
        lead_id = sandbox.create_lead(form, fake_field_data(rng), created_time=created)
        rows.append(LeadRow(lead_id, page, form, float(int(created))))
    return rows


def expected_calls(rows: list[LeadRow]) -> tuple[int, int]:
    """(exact expected Graph calls, lead pages among them) for these leads."""
    per_form = Counter(row.form_id for row in rows)
    forms = [f"{page}{n:02d}" for page in PAGES for n in range(1, FORMS_PER_PAGE + 1)]
    lead_pages = sum(max(1, math.ceil(per_form.get(form, 0) / 100)) for form in forms)
    return 1 + 2 * len(PAGES) + lead_pages, lead_pages


def page_fetch_seconds(client: GraphClient, form_id: str, now: float, samples: int = 20) -> float:
    """Median time of one `GET /{form}/leads` page of 100 with the fields and filter the run uses."""
    since = int(now - WINDOW_HOURS * 3600)
    filters = [
        {"field": "time_created", "operator": "GREATER_THAN", "value": since},
        {"field": "time_created", "operator": "LESS_THAN", "value": int(now)},
    ]
    params = {"fields": ",".join(LEAD_FIELDS), "filtering": json.dumps(filters), "limit": "100"}
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        body = client.request("GET", f"{form_id}/leads", params).body
        times.append(time.perf_counter() - started)
        assert len(body.get("data") or []) == 100
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 leads instead of 10,000")
    parser.add_argument("--leads", type=int, default=10_000, help="leads at Meta in the window")
    args = parser.parse_args()
    leads = 2_000 if args.quick else args.leads
    rng = random.Random(17)
    folder = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    azurite = start_azurite(str(folder / "azurite"))
    sandbox = SandboxGraph([TOKEN], DEFAULT_APP_ID, PAGES, FORMS_PER_PAGE, app_secret=SECRET, subscribed=True)
    graph = serve(sandbox)
    try:
        now = time.time()
        rows = create_leads(sandbox, leads, now, rng)
        missing = set(rng.sample([row.facebook_lead_id for row in rows], MISSING))
        store = migrated_store(folder / "leads.db")
        bulk_insert(folder / "leads.db", (row for row in rows if row.facebook_lead_id not in missing))
        gate = ThrottleGate(lambda: store.coordination)
        monitor = IntegrationMonitor(lambda: store, recheck_seconds=60, refresh_seconds=0)
        client = GraphClient(graph.url, "v26.0", lambda: TOKEN, 10, gate=gate, on_token_invalid=monitor.token_invalid)
        deps = PollerDeps(
            graph=client,
            store=store,
            sender=QueueSender(azurite.connection_string),
            config=PollerConfig(page_ids=PAGES, app_id=DEFAULT_APP_ID),
            access_token=lambda: TOKEN,
            app_token=lambda: f"{DEFAULT_APP_ID}|{SECRET}",
            monitor=monitor,
        )
        before = sandbox.calls()
        started = time.perf_counter()
        report = reconcile_window(deps, hours=WINDOW_HOURS, budget_seconds=150)
        elapsed = time.perf_counter() - started
        after = sandbox.calls()
        metered = {kind: after[kind] - before.get(kind, 0) for kind in after if after[kind] != before.get(kind, 0)}
        busiest = Counter(row.form_id for row in rows).most_common(1)[0][0]
        page_seconds = page_fetch_seconds(client, busiest, now)
        queued = int(deps.sender.client(LEADS_QUEUE).get_queue_properties().approximate_message_count or 0)
    finally:
        graph.close()
        azurite.stop()
        shutil.rmtree(folder, ignore_errors=True)
    expected, lead_pages = expected_calls(rows)
    forms = len(PAGES) * FORMS_PER_PAGE
    bound = 1 + 2 * len(PAGES) + forms + leads // 100
    reference = page_seconds * lead_pages
    print(f"reconcile: {leads:,} leads over {SPREAD_HOURS:g} h on {forms} forms of {len(PAGES)} pages,", end="")
    print(f" {MISSING} missing from the store; reconcile_window({WINDOW_HOURS:g} h) in-process")
    print(
        f"  time {elapsed * 1000:.0f} ms; complete {report.complete}; leads seen {report.leads_seen:,};"
        f" missing found {report.missing_found}; enqueued {report.enqueued}; on leads-inbound {queued};"
        f" error {report.error}"
    )
    print(f"  Graph calls: report {report.graph_calls}, sandbox meter {metered.get('total', 0)} {metered}")
    print(
        f"  expected exactly 1 debug_token + {len(PAGES)} subscribed_apps + {len(PAGES)} leadgen_forms"
        f" + {lead_pages} lead pages = {expected}; bound 1 + 2·{len(PAGES)} + {forms} + {leads:,}/100 = {bound}"
    )
    ok_calls = report.graph_calls == metered.get("total", -1) <= bound and metered.get("lead", 0) == 0
    ok_found = report.missing_found == MISSING == report.enqueued == queued
    print(f"  calls within the bound, none per lead: {'ok' if ok_calls else 'MISSED'};", end="")
    print(f" exactly the missing leads queued: {'ok' if ok_found else 'MISSED'}")
    print(
        f"  reference: one /leads page of 100 alone {page_seconds * 1000:.1f} ms x {lead_pages} pages"
        f" = {reference * 1000:.0f} ms; ratio run / reference {elapsed / reference:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU per call of the app's two outbound HTTP hops per lead, in-process: the notification send and the Graph fetch.

Thread CPU time (`time.thread_time`) of the calling thread around each call, so the servers
(Azurite in its own process, the sandbox Graph API in this process's other threads) are not
counted. The variants run interleaved in rounds, so a change in the machine's load touches
them alike.

- `QueueSender.send` of a `notifications` message (the app's SDK send: azure-core pipeline,
  SharedKey signing, requests) to Azurite, the hop a queue output binding would move to the host;
- `GraphClient.fetch_lead` (requests, explicit fields, error classification) against the sandbox
  over loopback;
- references, same run: a bare `requests.Session.get` of the same URL (the HTTP library without
  our client), a bare `http.client` GET of the same URL on one kept-alive connection (both with
  `json.loads` of the answer, as the client parses it), and `store_lead` into a fresh SQLite file
  (the rest of ingestion's own work).

Run: `.venv/bin/python -m bench.client_cpu [--quick] [--calls 2000]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import urllib3

from bench.stack import PAGE, SECRET, TOKEN
from fakes.sandbox import SandboxGraph, serve
from fakes.simulate import fake_field_data
from shared.graph.client import GraphClient
from shared.http_clients import direct_session
from shared.ingest.transform import normalise_lead
from shared.messaging.messages import LeadMessage, NotificationMessage
from shared.messaging.sender import QueueSender
from shared.models.lead import LEAD_FIELDS, GraphLead
from shared.storage.names import NOTIFICATIONS_QUEUE
from shared.store import Store
from shared.store.sqlite import SqliteBackend
from tests.support.azurite import start_azurite

VERSION = "v26.0"
ROUNDS = 10
WARM_UP = 20


def measure(calls: dict[str, Callable[[int], object]], per_variant: int) -> dict[str, tuple[list[float], list[float]]]:
    """Thread CPU and wall seconds per call of each variant, `per_variant` calls each, in interleaved rounds."""
    for call in calls.values():
        for n in range(WARM_UP):
            call(n)
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in calls}
    per_round = max(1, per_variant // ROUNDS)
    for round_ in range(ROUNDS):
        for name, call in calls.items():
            cpu, wall = results[name]
            for n in range(per_round):
                index = WARM_UP + round_ * per_round + n
                started_cpu, started = time.thread_time(), time.perf_counter()
                call(index)
                cpu.append(time.thread_time() - started_cpu)
                wall.append(time.perf_counter() - started)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 calls per variant")
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant")
    args = parser.parse_args()
    if args.quick:
        args.calls = 200
    workdir = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    azurite = start_azurite(str(workdir / "azurite"))
    graph = serve(SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True))
    try:
        sandbox = graph.sandbox
        forms = [form.id for form, _, _ in sandbox.forms_of(PAGE)]
        lead_ids = [sandbox.create_lead(forms[n % len(forms)], fake_field_data(random.Random(n))) for n in range(50)]
        client = GraphClient(graph.url, VERSION, token=lambda: TOKEN, timeout_seconds=10)
        sender = QueueSender(azurite.connection_string)
        session = direct_session()
        split = urlsplit(graph.url)
        connection = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)
        query = urlencode({"fields": ",".join(LEAD_FIELDS)})
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
        store = Store(SqliteBackend(str(workdir / "leads.db")))
        store.migrate()

        def bare_get(n: int) -> object:
            connection.request("GET", f"/{VERSION}/{lead_ids[n % len(lead_ids)]}?{query}", headers=headers)
            answer = connection.getresponse()
            return json.loads(answer.read())

        pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=10, read=10), retries=False)

        def urllib3_get(n: int) -> object:
            url = f"{graph.url}/{VERSION}/{lead_ids[n % len(lead_ids)]}?{query}"
            return json.loads(pool.request("GET", url, headers=headers).data)

        def requests_get(n: int) -> object:
            url = f"{graph.url}/{VERSION}/{lead_ids[n % len(lead_ids)]}"
            answer = session.get(url, params={"fields": ",".join(LEAD_FIELDS)}, headers=headers, timeout=10)
            return answer.json()

        template = client.fetch_lead(lead_ids[0])

        def store_lead(n: int) -> object:
            lead_id = str(9_100_000_000 + n)
            raw = {**template, "id": lead_id}
            message = LeadMessage(facebook_lead_id=lead_id, page_id=PAGE, form_id=str(raw["form_id"]))
            lead = normalise_lead(GraphLead.model_validate(raw), message)
            return store.leads.store_lead(lead, {"leadgen_id": lead_id}, raw)

        calls: dict[str, Callable[[int], object]] = {
            "QueueSender.send (notification)": lambda n: sender.send(
                NOTIFICATIONS_QUEUE, NotificationMessage(kind="lead", key=str(9_000_000_000 + n)).to_text()
            ),
            "GraphClient.fetch_lead": lambda n: client.fetch_lead(lead_ids[n % len(lead_ids)]),
            "requests.Session.get + json": requests_get,
            "urllib3.PoolManager GET + json": urllib3_get,
            "http.client GET + json": bare_get,
            "store_lead (SQLite, in-process)": store_lead,
        }
        results = measure(calls, args.calls)
    finally:
        graph.close()
        azurite.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"client CPU per call, in-process, thread CPU time; {args.calls} calls per variant in {ROUNDS} rounds")
    fetch = statistics.fmean(results["GraphClient.fetch_lead"][0])
    bare = statistics.fmean(results["http.client GET + json"][0])
    print(f"  {'call':<34}{'CPU ms mean':>12}{'CPU p50':>9}{'wall p50':>10}{'CPU / fetch':>13}")
    for name, (cpu, wall) in results.items():
        mean = statistics.fmean(cpu)
        print(
            f"  {name:<34}{mean * 1000:>12.3f}{statistics.median(cpu) * 1000:>9.3f}"
            f"{statistics.median(wall) * 1000:>10.2f}{mean / fetch:>12.2f}x"
        )
    pooled = statistics.fmean(results["urllib3.PoolManager GET + json"][0])
    print(f"  urllib3 (pooling, timeouts, TLS kept) would save {1 - pooled / fetch:.0%} of the fetch's CPU")
    saving = 1 - bare / fetch
    print(
        f"  a bare http.client GET would save {saving:.0%} of the fetch's CPU"
        f" ({(fetch - bare) * 1000:.3f} ms per lead);"
        f" switch only above 30 %: {'worth a look' if saving > 0.30 else 'not worth it'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

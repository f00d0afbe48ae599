"""Webhook answer time at a fixed request rate through the devhost, with ingestion running (p50/p99/max).

Two variants on the real system (ingestion and notifications on; only the poller timer off): one
lead change per POST, and batched POSTs of several changes (as Meta sends under load). The leads
are created in the sandbox first, so ingestion fetches and stores every one. Afterwards the run
waits (bounded) for ingestion and accounts for every lead sent: stored, still on `leads-inbound`,
dead-lettered, or lost. A third, diagnostic row repeats the single-lead load on a devhost with
`ingest_lead` disabled: the webhook and the queue alone.

Reference, same run: a bare `QueueClient.send_message` of a message of the same size to the same
Azurite, sent from the load process beside the webhook requests (so under the same machine
load); and the same on the idle stack at the end.

Run: `.venv/bin/python -m bench.webhook_latency [--quick] [--rate 100] [--seconds 60] [--batch 5]`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load import Companion, LoadResult, cpu_seconds, fire_in_subprocess, sandbox_webhooks
from bench.stack import PAGE, SECRET, Stack, local_stack, summary
from fakes.simulate import WebhookChange
from shared.messaging.messages import LeadMessage
from shared.storage.names import LEADS_QUEUE, poison_queue

REFERENCE_QUEUE = "bench-reference"
REFERENCE_RATE = 10.0
TARGET_P99_MS = 20.0
TARGET_RATIO = 2.5
SENDERS = 64  # concurrent connections, under waitress' limit of 100 (more would wait unaccepted)
NO_POLLER = {"AzureWebJobs.poll_leads.Disabled": "true"}


def bare_enqueues(connection_string: str, text: str, rate: float, count: int, stop: threading.Event) -> list[float]:
    """Seconds per bare `send_message` of `text` (base64, as the app sends), `rate` a second, until stopped."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

    client = QueueClient.from_connection_string(
        connection_string,
        REFERENCE_QUEUE,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.send_message(text)  # the connection is set up outside the measurement
    times: list[float] = []
    due = time.monotonic()
    while not stop.is_set() and len(times) < count:
        started = time.perf_counter()
        client.send_message(text)
        times.append(time.perf_counter() - started)
        due += 1 / rate
        stop.wait(max(0.0, due - time.monotonic()))
    client.clear_messages()
    return times


def reference_text() -> str:
    """A `leads-inbound` message of the size the webhook writes for one change."""
    change = WebhookChange("1795783481687000", PAGE, PAGE + "01", int(time.time()))
    return LeadMessage(
        facebook_lead_id=change.leadgen_id,
        page_id=PAGE,
        form_id=change.form_id,
        created_time=change.created_time,
        event=change.value(),
    ).to_text()


def message_count(connection_string: str, queue: str) -> int:
    """Messages on `queue`, visible or not (Azurite's count is exact); 0 when the queue does not exist."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(connection_string, queue)
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:
        return 0


def stored_count(db: Path) -> int:
    """Rows in `leads` (0 while the database does not exist yet)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM leads").fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0


def stored_ids(db: Path) -> set[str]:
    """Every stored `facebook_lead_id` (empty while the database does not exist yet)."""
    if not db.exists():
        return set()
    with sqlite3.connect(db) as conn:
        try:
            return {str(row[0]) for row in conn.execute("SELECT facebook_lead_id FROM leads")}
        except sqlite3.OperationalError:  # not migrated yet
            return set()


def wait_stored(db: Path, expected: int, timeout: float) -> float:
    """Poll the lead count until it reaches `expected` or `timeout` passes; return the seconds waited."""
    started = time.monotonic()
    while stored_count(db) < expected and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return time.monotonic() - started


@dataclass
class Accounting:
    """Where the leads of every acknowledged (2xx) POST so far are: stored, still queued, dead-lettered, or lost.

    Only acknowledged leads count: a POST that got no 2xx is retried by Meta. `lost` is a lower
    bound when ingestion has not finished: acknowledged leads neither stored nor possibly on a queue.
    """

    acknowledged: int
    stored: int
    queued: int
    poison: int

    @property
    def lost(self) -> int:
        return max(0, self.acknowledged - self.stored - self.queued - self.poison)


@dataclass
class Variant:
    name: str
    result: LoadResult
    lead_ids: list[str]
    after: Accounting
    drain_seconds: float
    devhost_cpu: float
    azurite_cpu: float
    load_average: float

    @property
    def answered_rate(self) -> float:
        """2xx answers per second over the time from the first send to the last 2xx answer."""
        ok = [shot for shot in self.result.shots if 200 <= shot.status < 300]
        if len(ok) < 2:
            return 0.0
        return len(ok) / (max(s.answered for s in ok) - min(s.sent for s in self.result.shots if s.status >= 0))


class Runner:
    """Sends the variants to one stack and keeps track of every acknowledged lead id."""

    def __init__(self, stack: Stack, ingesting: bool) -> None:
        self.stack = stack
        self.ingesting = ingesting
        self.acknowledged: set[str] = set()

    def _acknowledge(self, result: LoadResult, lead_ids: list[str], batch: int) -> None:
        for shot in result.shots:
            if 200 <= shot.status < 300:
                self.acknowledged.update(lead_ids[shot.index * batch : (shot.index + 1) * batch])

    def _drain(self, timeout: float) -> float:
        """Wait until every acknowledged lead is stored, or `timeout`; the seconds waited."""
        started = time.monotonic()
        while self.ingesting and time.monotonic() - started < timeout:
            if self.acknowledged <= stored_ids(self.stack.db):
                break
            time.sleep(1.0)
        return time.monotonic() - started

    def _account(self) -> Accounting:
        storage = self.stack.azurite.connection_string
        stored = len(self.acknowledged & stored_ids(self.stack.db))
        queued = message_count(storage, LEADS_QUEUE)
        poison = message_count(storage, poison_queue(LEADS_QUEUE))
        return Accounting(len(self.acknowledged), stored, queued, poison)

    def warm_up(self) -> None:
        """Twenty single-lead POSTs (not measured), so the lazily built clients exist."""
        posts, lead_ids = sandbox_webhooks(self.stack.graph.sandbox, PAGE, SECRET, 20, 1, random.Random(0))
        result = fire_in_subprocess(self.stack.webhook, posts, 20.0, workers=4)
        self._acknowledge(result, lead_ids, 1)
        self._drain(60)

    def variant(self, name: str, batch: int, args: argparse.Namespace, companion: Companion | None = None) -> Variant:
        """`args.rate` POSTs/s of `batch` changes for `args.seconds`, then the drain (bounded) and the accounting.

        `companion` runs beside the load in the load process (default: the bare-enqueue reference).
        """
        sandbox = self.stack.graph.sandbox
        count = int(args.rate * args.seconds)
        posts, lead_ids = sandbox_webhooks(sandbox, PAGE, SECRET, count, batch, random.Random(batch))
        if companion is None:
            storage = self.stack.azurite.connection_string
            companion = functools.partial(bare_enqueues, storage, reference_text(), REFERENCE_RATE, 100_000)
        pids = (self.stack.devhost.process.pid, self.stack.azurite.process.pid)
        before = [cpu_seconds(pid) for pid in pids]
        result = fire_in_subprocess(self.stack.webhook, posts, args.rate, workers=SENDERS, companion=companion)
        devhost_cpu, azurite_cpu = (cpu_seconds(pid) - used for pid, used in zip(pids, before, strict=True))
        load_average = os.getloadavg()[0]
        self._acknowledge(result, lead_ids, batch)
        waited = self._drain(args.drain_seconds)
        return Variant(name, result, lead_ids, self._account(), waited, devhost_cpu, azurite_cpu, load_average)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def answer_summary(result: LoadResult) -> dict[str, float]:
    return summary([shot.answer_time for shot in result.shots if shot.status > 0])


def print_report(variants: list[Variant], idle: list[float], args: argparse.Namespace) -> None:
    idle_ref = summary(idle)
    print(f"webhook latency: {args.rate:g} POST/s offered for {args.seconds:g} s per variant, through the devhost")
    print(f"  answer time = POST sent → whole answer read; open-loop client ({SENDERS} connections), own process")
    print(
        f"  {'variant':<27}{'2xx/POSTs':>10}{'2xx/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'ref p50':>8}{'ref p99':>8}{'ratio':>7}"
    )
    for v in variants:
        answer, ref = answer_summary(v.result), summary(v.result.companion or [])
        print(
            f"  {v.name:<27}{f'{v.result.ok}/{len(v.result.shots)}':>10}{v.answered_rate:>7.1f}"
            f"{answer['p50']:>8.1f}{answer['p99']:>8.1f}{answer['max']:>8.1f}"
            f"{ref['p50']:>8.1f}{ref['p99']:>8.1f}{answer['p99'] / ref['p99']:>6.1f}x"
        )
    print(
        f"  reference: bare Azurite send_message of {len(reference_text())} chars, {REFERENCE_RATE:g}/s from the load"
        f" process beside the load; on the idle stack p50 {idle_ref['p50']:.1f} ms, p99 {idle_ref['p99']:.1f} ms"
    )
    for v in variants:
        answer, ref = answer_summary(v.result), summary(v.result.companion or [])
        lag = max(shot.lag for shot in v.result.shots if shot.status >= 0)
        saturated = lag > 1.0 or v.answered_rate < 0.9 * args.rate
        note = f"; SATURATED: {v.answered_rate:.0f} of {args.rate:g} POST/s answered" if saturated else ""
        print(
            f"  {v.name}: p99 ≤ {TARGET_P99_MS:g} ms {verdict(answer['p99'] <= TARGET_P99_MS)};"
            f" p99 ≤ {TARGET_RATIO:g}x ref p99 {verdict(answer['p99'] <= TARGET_RATIO * ref['p99'])};"
            f" client send lag max {lag * 1000:.0f} ms{note}"
        )
        posts = len(v.result.shots)
        print(
            f"    CPU per POST during the load: devhost {v.devhost_cpu / posts * 1000:.1f} ms,"
            f" Azurite {v.azurite_cpu / posts * 1000:.1f} ms ({v.result.seconds:.0f} s; load average"
            f" {v.load_average:.1f} on {os.cpu_count()} cores); statuses {v.result.statuses}"
        )
        a = v.after
        print(
            f"    acknowledged leads so far {a.acknowledged}, {v.drain_seconds:.0f} s after the load:"
            f" stored {a.stored}, on leads-inbound {a.queued}, dead letters {a.poison}, lost {a.lost}"
            f" → nothing lost {verdict(a.lost == 0)}"
        )
        for error in v.result.errors:
            print(f"    {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s per variant instead of 60 s")
    parser.add_argument("--rate", type=float, default=100.0, help="webhook POSTs per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each variant")
    parser.add_argument("--batch", type=int, default=5, help="changes per POST in the batched variant")
    parser.add_argument(
        "--drain-seconds", type=float, default=180.0, help="longest wait for ingestion after each variant"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.drain_seconds = 5.0, 60.0
    variants: list[Variant] = []
    with local_stack(**NO_POLLER) as stack:
        runner = Runner(stack, ingesting=True)
        runner.warm_up()
        variants.append(runner.variant("single lead", 1, args))
        variants.append(runner.variant(f"batch of {args.batch}", args.batch, args))
    with local_stack(**NO_POLLER, **{"AzureWebJobs.ingest_lead.Disabled": "true"}) as stack:
        runner = Runner(stack, ingesting=False)
        runner.warm_up()
        variants.append(runner.variant("single lead, ingestion off", 1, args))
        idle = bare_enqueues(stack.azurite.connection_string, reference_text(), 50.0, 200, threading.Event())
    print_report(variants, idle, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

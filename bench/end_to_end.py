"""Webhook received → lead row committed, and how many leads per second one devhost process stores.

Both run on the real system (ingestion and email sending on; only the poller timer off).

1. Latency: signed single-lead webhooks at a fixed rate (open loop, from a separate process) for
   leads created in the sandbox; each lead's `leads.stored_at` minus the moment its POST was sent
   (p50/p99/max). Reference beside the load: a bare Azurite round trip (send, receive, delete).
2. Capacity: N webhook-shaped `leads-inbound` messages (no carried lead, so ingestion fetches each
   one from the sandbox Graph API, as for a real webhook) are put on the queue with a visibility
   delay, so they all appear at once on an idle devhost; leads/s = N / (last `stored_at` - first).
   Measured twice, each on a fresh stack: on the whole system, and on a devhost with `send_notification` and
   `flush_outbox` disabled (capture alone; notifications stay queued). Reference, same run:
   `Store.store_lead` of the same kind of leads in-process, one thread, on a fresh SQLite file
   (the database's own insert rate).
The devhost CPU per lead comes from `/proc` (it holds on a shared machine where wall times do not).

Run: `.venv/bin/python -m bench.end_to_end [--quick] [--rate 100] [--seconds 60] [--capacity-leads 3000]`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.load import LoadResult, cpu_seconds
from bench.stack import PAGE, Stack, local_stack, summary
from bench.webhook_latency import (
    NO_POLLER,
    REFERENCE_QUEUE,
    Runner,
    Variant,
    reference_text,
    wait_stored,
)
from fakes.sandbox import SandboxGraph
from fakes.simulate import WebhookChange, fake_field_data
from shared.ingest.transform import normalise_lead
from shared.messaging.messages import LeadMessage
from shared.messaging.sender import QueueSender
from shared.models.lead import LEAD_FIELDS, GraphLead
from shared.storage.names import LEADS_QUEUE
from shared.store import Store
from shared.store.sqlite import SqliteBackend

NOTIFIER_OFF = {"AzureWebJobs.send_notification.Disabled": "true", "AzureWebJobs.flush_outbox.Disabled": "true"}
TARGET_P99_S = 1.0
TARGET_CAPACITY = 200.0
REFERENCE_RATE = 10.0


def bare_round_trips(connection_string: str, text: str, rate: float, stop: threading.Event) -> list[float]:
    """Seconds per bare send → receive → delete of `text` on a queue of its own, `rate` a second."""
    from azure.storage.queue import QueueClient

    client = QueueClient.from_connection_string(connection_string, REFERENCE_QUEUE + "-trip")
    with contextlib.suppress(Exception):
        client.create_queue()
    times: list[float] = []
    due = time.monotonic()
    while not stop.is_set() and len(times) < 100_000:
        started = time.perf_counter()
        client.send_message(text)
        for _ in range(100):
            received = list(client.receive_messages(max_messages=1))
            if received:
                client.delete_message(received[0])
                times.append(time.perf_counter() - started)
                break
        due += 1 / rate
        stop.wait(max(0.0, due - time.monotonic()))
    return times


def stored_times(db: Path, lead_ids: Sequence[str]) -> dict[str, float]:
    """`stored_at` (epoch seconds) of each of `lead_ids` that is stored."""
    wanted = set(lead_ids)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT facebook_lead_id, stored_at FROM leads").fetchall()
    return {
        str(lead_id): datetime.strptime(stored, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        for lead_id, stored in rows
        if str(lead_id) in wanted
    }


@dataclass
class Latency:
    variant: Variant
    latencies: list[float]

    @property
    def result(self) -> LoadResult:
        return self.variant.result


def measure_latency(runner: Runner, args: argparse.Namespace) -> Latency:
    """Single-lead webhooks at `args.rate`; each acknowledged lead's `stored_at` minus its POST's send time."""
    storage = runner.stack.azurite.connection_string
    companion = functools.partial(bare_round_trips, storage, reference_text(), REFERENCE_RATE)
    variant = runner.variant("single lead", 1, args, companion)
    stored = stored_times(runner.stack.db, variant.lead_ids)
    pairs = zip(variant.result.shots, variant.lead_ids, strict=True)
    latencies = [stored[lead] - shot.sent_wall for shot, lead in pairs if shot.status == 200 and lead in stored]
    return Latency(variant, latencies)


def webhook_message(lead_id: str, form_id: str) -> str:
    """The `leads-inbound` text the webhook writes for one change."""
    change = WebhookChange(lead_id, PAGE, form_id, int(time.time()))
    message = LeadMessage(
        facebook_lead_id=lead_id, page_id=PAGE, form_id=form_id, created_time=change.created_time, event=change.value()
    )
    return message.to_text()


@dataclass
class Capacity:
    name: str
    leads: int
    stored: int
    span_seconds: float
    preload_seconds: float
    preload_late: bool
    devhost_cpu: float
    azurite_cpu: float
    load_average: float

    @property
    def rate(self) -> float:
        return (self.stored - 1) / self.span_seconds if self.span_seconds > 0 else float("nan")


def measure_capacity(stack: Stack, name: str, leads: int, already: int, timeout: float) -> Capacity:
    sandbox = stack.graph.sandbox
    rng = random.Random(5)
    forms = (PAGE + "01", PAGE + "02")
    texts, lead_ids = [], []
    for _ in range(leads):
        form = rng.choice(forms)
        lead_id = sandbox.create_lead(form, fake_field_data(rng))
        lead_ids.append(lead_id)
        texts.append(webhook_message(lead_id, form))
    sender = QueueSender(stack.azurite.connection_string)
    visible_at = time.time() + 10 + leads / 60  # the preload must end before the messages appear

    def send(text: str) -> str:  # each message appears at `visible_at`, whenever it was sent
        return sender.send(LEADS_QUEUE, text, delay_seconds=visible_at - time.time())

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send, texts))
    preload_seconds = time.monotonic() - started
    preload_late = time.time() > visible_at
    pids = (stack.devhost.process.pid, stack.azurite.process.pid)
    while time.time() < visible_at:
        time.sleep(0.05)
    before = [cpu_seconds(pid) for pid in pids]
    wait_stored(stack.db, already + leads, timeout)
    devhost_cpu, azurite_cpu = (cpu_seconds(pid) - used for pid, used in zip(pids, before, strict=True))
    stored = sorted(stored_times(stack.db, lead_ids).values())
    span = stored[-1] - stored[0] if len(stored) > 1 else 0.0
    load_average = os.getloadavg()[0]
    return Capacity(
        name, leads, len(stored), span, preload_seconds, preload_late, devhost_cpu, azurite_cpu, load_average
    )


def bare_store_rate(leads: int) -> float:
    """Leads per second `Store.store_lead` commits in-process, one thread, on a fresh SQLite file."""
    sandbox = SandboxGraph(["reference-token"], page_ids=[PAGE])
    rng = random.Random(9)
    prepared = []
    for _ in range(leads):
        form = rng.choice((PAGE + "01", PAGE + "02"))
        lead_id = sandbox.create_lead(form, fake_field_data(rng))
        raw = sandbox.lead(lead_id).render(list(LEAD_FIELDS))
        message = LeadMessage.model_validate_json(webhook_message(lead_id, form))
        prepared.append((normalise_lead(GraphLead.model_validate(raw), message), message.event, raw))
    with tempfile.TemporaryDirectory(prefix="bench-store-") as folder:
        store = Store(SqliteBackend(str(Path(folder) / "leads.db")))
        store.migrate()
        started = time.perf_counter()
        for lead, event, raw in prepared:
            store.leads.store_lead(lead, event, raw, {"attempt": 0})
        return leads / (time.perf_counter() - started)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_report(latency: Latency, capacities: list[Capacity], reference_rate: float, args: argparse.Namespace) -> None:
    lat = summary(latency.latencies)
    trip = summary(latency.result.companion or [])
    variant = latency.variant
    lag = max(shot.lag for shot in latency.result.shots if shot.status >= 0)
    saturated = lag > 1.0 or variant.answered_rate < 0.9 * args.rate
    print(f"end to end: webhook sent → lead row committed, {args.rate:g} leads/s offered for {args.seconds:g} s")
    print(
        f"  {len(latency.latencies)} of {variant.result.ok} acknowledged leads stored"
        f" (waited {variant.drain_seconds:.0f} s after the load); POSTs answered {variant.answered_rate:.1f}/s,"
        f" statuses {latency.result.statuses}; client send lag max {lag * 1000:.0f} ms"
        + ("; SATURATED" if saturated else "")
    )
    print(f"  sent → committed     p50 {lat['p50']:9.1f} ms   p99 {lat['p99']:9.1f} ms   max {lat['max']:9.1f} ms")
    print(f"  reference: bare Azurite send → receive → delete beside the load: p50 {trip['p50']:.1f} ms,", end="")
    print(f" p99 {trip['p99']:.1f} ms; ratio p99 / reference p99 {lat['p99'] / trip['p99']:.1f}x")
    print(f"  target p99 ≤ {TARGET_P99_S * 1000:g} ms: {verdict(lat['p99'] <= TARGET_P99_S * 1000)}")
    for error in latency.result.errors:
        print(f"  {error}")
    leads = capacities[0].leads
    print(f"capacity: {leads} webhook messages queued, visible at once, drained by one devhost process")
    for capacity in capacities:
        note = "; preload finished late: the start overlaps it" if capacity.preload_late else ""
        print(
            f"  {capacity.name:<34} stored {capacity.stored}/{capacity.leads} in {capacity.span_seconds:5.1f} s"
            f" → {capacity.rate:5.1f} leads/s (ratio to reference {capacity.rate / reference_rate:.3f});"
            f" CPU per lead: devhost {capacity.devhost_cpu / max(capacity.stored, 1) * 1000:.1f} ms,"
            f" Azurite {capacity.azurite_cpu / max(capacity.stored, 1) * 1000:.1f} ms;"
            f" load average {capacity.load_average:.1f}{note}"
        )
    print(f"  reference: bare Store.store_lead in-process, one thread: {reference_rate:.0f} leads/s")
    print(f"  target ≥ {TARGET_CAPACITY:g} leads/s (whole system): {verdict(capacities[0].rate >= TARGET_CAPACITY)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s of load and 300 capacity leads")
    parser.add_argument("--rate", type=float, default=100.0, help="leads per second offered (one per POST)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the latency load")
    parser.add_argument("--capacity-leads", type=int, default=3000, help="messages drained in the capacity run")
    parser.add_argument("--drain-seconds", type=float, default=300.0, help="longest wait for each drain")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.capacity_leads, args.drain_seconds = 5.0, 300, 120.0
    with local_stack(**NO_POLLER) as stack:
        runner = Runner(stack, ingesting=True)
        runner.warm_up()
        latency = measure_latency(runner, args)
    # Capacity on fresh stacks: the latency load leaves thousands of emails waiting for the cap on
    # the notifications queue, and Azurite's cost per operation grows with the messages it holds.
    with local_stack(**NO_POLLER) as stack:
        capacities = [measure_capacity(stack, "whole system", args.capacity_leads, 0, args.drain_seconds)]
    with local_stack(**NO_POLLER, **NOTIFIER_OFF) as stack:
        name = "capture only (email sending off)"
        capacities.append(measure_capacity(stack, name, args.capacity_leads, 0, args.drain_seconds))
    reference = bare_store_rate(min(args.capacity_leads, 1000))
    print_report(latency, capacities, reference, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

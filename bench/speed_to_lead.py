"""Speed to lead on the multi-process devhost: the design's burst targets, measured together.

One stack (Azurite, sandbox Graph API, SMTP sink, the devhost with one worker process per group as
Flex Consumption runs the app; poller off, email caps out of reach). Two runs:

1. **Sustained:** single-lead webhook POSTs at `--rate` (100/s) for `--seconds` (60), while
   ingestion and email drain the same leads. Figures: the webhook's answer time (p50/p99), against
   a bare Azurite `send_message` of the same size sent beside the load in the same run (the
   reference); POST sent → `leads.stored_at` (p50/p99); leads committed per second; every lead
   stored once and emailed once.
2. **Burst:** `--burst` (1,000) leads at the same rate. Figure: the lead's webhook POST sent (Meta
   sends it as the person presses Submit, so this stands for the lead's creation) → the email that
   carries it handed to the SMTP sink (p50/p99).

The team's CRM endpoint is a receiver on loopback (`fakes.receiver`): each lead's signed webhook
is timed from its row's commit to the receiver accepting it (p50/p99).

CPU per lead comes from the worker processes themselves (`DEVHOST_STATS_DIR`, `devhost/worker_pool.py`):
the app's own thread CPU inside each function, and the host's work (receiving and deleting
messages, serving HTTP) apart; Azurite's from /proc.

Run: `.venv/bin/python -m bench.speed_to_lead [--quick] [--rate 100] [--seconds 60] [--burst 1000]`.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import random
import re
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import LoadResult, cpu_seconds, fire_in_subprocess, sandbox_webhooks
from bench.stack import PAGE, SECRET, Stack, local_stack, percentile
from bench.webhook_latency import REFERENCE_RATE, SENDERS, bare_enqueues, reference_text
from fakes.receiver import Receiver

TARGET_ANSWER_P99_MS = 100.0
TARGET_ANSWER_RATIO = 2.5
TARGET_STORED_P99_S = 5.0
TARGET_COMMITTED_PER_S = 100.0
TARGET_EMAIL_P99_S = 30.0
CRM_SECRET = "whsec_" + base64.b64encode(b"bench-crm-endpoint-secret-012345").decode("ascii")
DIGITS = re.compile(r"\b\d{6,20}\b")


def stored_at(db: Path) -> Counter[str]:
    """How many rows each lead id has (each must have one)."""
    with sqlite3.connect(db) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'leads'").fetchone():
            return Counter()  # the ingestion worker has not migrated the file yet
        return Counter(str(row[0]) for row in conn.execute("SELECT facebook_lead_id FROM leads"))


def stored_times(db: Path) -> dict[str, float]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT facebook_lead_id, stored_at FROM leads").fetchall()
    return {str(lead): datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp() for lead, at in rows}


def emailed(mail_dir: Path, wanted: set[str]) -> dict[str, list[float]]:
    """For each wanted lead id, the arrival time of every email that carried it (the sink names files by arrival)."""
    import email
    import email.policy

    found: dict[str, list[float]] = {}
    for path in sorted(mail_dir.glob("*.eml")):
        stamp = datetime.strptime(path.name.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp()
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        for lead_id in set(DIGITS.findall(text)) & wanted:
            found.setdefault(lead_id, []).append(stamp)
    return found


def wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate() and time.monotonic() - started < timeout:
        time.sleep(1.0)
    return time.monotonic() - started


@dataclass(frozen=True)
class WorkerRun:
    """One worker process's CPU during a run: the app's (per function: invocations, seconds) and the host's."""

    app: float
    host: float
    functions: dict[str, tuple[int, float]]


@dataclass
class Run:
    name: str
    result: LoadResult
    sent_at: dict[str, float]  # lead id → wall time its POST was sent (acknowledged POSTs only)
    rows: Counter[str]
    stored: dict[str, float]
    mails: dict[str, list[float]]
    drain_seconds: float
    azurite_cpu: float
    workers: dict[str, WorkerRun]

    def delays(self, ends: dict[str, float]) -> list[float]:
        return [ends[lead] - sent for lead, sent in self.sent_at.items() if lead in ends]


def worker_figures(stats_dir: Path) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in stats_dir.glob("*.json")}


def measure(stack: Stack, name: str, count: int, rate: float, drain: float, reference: bool) -> Run:
    sandbox = stack.graph.sandbox
    posts, lead_ids = sandbox_webhooks(sandbox, PAGE, SECRET, count, 1, random.Random(count))
    companion = None
    if reference:
        companion = functools.partial(
            bare_enqueues, stack.azurite.connection_string, reference_text(), REFERENCE_RATE, 100_000
        )
    stats_dir = stack.workdir / "stats"
    before_workers = worker_figures(stats_dir)
    azurite_before = cpu_seconds(stack.azurite.process.pid)
    result = fire_in_subprocess(stack.webhook, posts, rate, workers=SENDERS, companion=companion)
    sent_at = {lead_ids[s.index]: s.sent_wall for s in result.shots if 200 <= s.status < 300}
    wanted = set(sent_at)

    def done() -> bool:
        return wanted <= set(stored_at(stack.db)) and wanted <= set(emailed(stack.workdir / "mail", wanted))

    waited = wait_for(done, drain)
    azurite_cpu = cpu_seconds(stack.azurite.process.pid) - azurite_before
    time.sleep(1.5)  # the workers write their figures about once a second
    workers = {group: since(figures, before_workers.get(group)) for group, figures in worker_figures(stats_dir).items()}
    rows = stored_at(stack.db)
    return Run(
        name, result, sent_at, rows, stored_times(stack.db), emailed(stack.workdir / "mail", wanted), waited,
        azurite_cpu, workers,
    )  # fmt: skip


def since(after: dict[str, Any], before: dict[str, Any] | None) -> WorkerRun:
    """A worker's figures for this run only (a worker that restarted since counts from zero)."""
    old = before if before is not None and before.get("pid") == after.get("pid") else {"functions": {}}
    functions = {}
    for function, numbers in after["functions"].items():
        previous = old["functions"].get(function, {"invocations": 0, "cpu_seconds": 0.0})
        functions[function] = (
            int(numbers["invocations"]) - int(previous["invocations"]),
            float(numbers["cpu_seconds"]) - float(previous["cpu_seconds"]),
        )
    return WorkerRun(
        float(after["app_cpu_seconds"]) - float(old.get("app_cpu_seconds", 0.0)),
        float(after["host_cpu_seconds"]) - float(old.get("host_cpu_seconds", 0.0)),
        functions,
    )


def ms(values: list[float], pct: float) -> float:
    return percentile(values, pct) * 1000


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(sustained: Run, burst: Run, args: argparse.Namespace) -> None:
    nice = f"queue and timer workers at nice +{args.background_nice}" if args.background_nice else "all at one priority"
    print(f"speed to lead: devhost with one worker process per group ({nice}); {os.cpu_count()} cores;"
          f" load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    answers = [s.answer_time for s in sustained.result.shots if s.status > 0]
    reference = list(sustained.result.companion or [])
    a99, r99 = ms(answers, 99), ms(reference, 99)
    ok_rate = sustained.result.ok / max(len(sustained.result.shots), 1)
    print(f"1. sustained: {args.rate:g} single-lead POST/s for {args.seconds:g} s while ingestion and email drain them")
    print(f"   webhook answer  p50 {ms(answers, 50):.1f} ms  p99 {a99:.1f} ms  ({sustained.result.ok}/"
          f"{len(sustained.result.shots)} answered 2xx)  | bare enqueue beside it p50 {ms(reference, 50):.1f} ms"
          f" p99 {r99:.1f} ms  ratio {a99 / r99:.2f}")  # fmt: skip
    print(f"     p99 ≤ {TARGET_ANSWER_P99_MS:g} ms {verdict(a99 <= TARGET_ANSWER_P99_MS)};"
          f" ≤ {TARGET_ANSWER_RATIO:g}x reference {verdict(a99 <= TARGET_ANSWER_RATIO * r99)}")  # fmt: skip
    to_row = sustained.delays(sustained.stored)
    stamps = sorted(sustained.stored[lead] for lead in sustained.sent_at if lead in sustained.stored)
    window = (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    committed = (len(stamps) - 1) / window if window and window == window else 0.0
    print(f"   POST sent → row committed  p50 {ms(to_row, 50) / 1000:.2f} s  p99 {ms(to_row, 99) / 1000:.2f} s;"
          f" committed {committed:.1f} leads/s from first to last row")  # fmt: skip
    rate_met = committed >= TARGET_COMMITTED_PER_S and ok_rate >= 0.99
    print(f"     p99 ≤ {TARGET_STORED_P99_S:g} s {verdict(ms(to_row, 99) / 1000 <= TARGET_STORED_P99_S)};"
          f" ≥ {TARGET_COMMITTED_PER_S:g} leads/s {verdict(rate_met)}")  # fmt: skip
    for run in (sustained, burst):
        once_stored = sum(1 for lead in run.sent_at if run.rows.get(lead) == 1)
        once_mailed = sum(1 for lead in run.sent_at if len(run.mails.get(lead, [])) == 1)
        twice = sum(1 for lead in run.sent_at if len(run.mails.get(lead, [])) > 1)
        print(f"   {run.name}: {len(run.sent_at)} acknowledged; stored once {once_stored}, emailed once {once_mailed},"
              f" emailed twice {twice}; drained {run.drain_seconds:.0f} s after the load"
              f" → {verdict(once_stored == once_mailed == len(run.sent_at))}")  # fmt: skip
    to_mail = burst.delays({lead: min(times) for lead, times in burst.mails.items()})
    print(f"2. burst: {args.burst} leads at {args.rate:g}/s, POST sent (the lead's creation) → email at the SMTP sink")
    p50, p99, top = (ms(to_mail, pct) / 1000 for pct in (50, 99, 100))
    print(f"   p50 {p50:.2f} s  p99 {p99:.2f} s  max {top:.2f} s"
          f"  → p99 ≤ {TARGET_EMAIL_P99_S:g} s {verdict(ms(to_mail, 99) / 1000 <= TARGET_EMAIL_P99_S)}")  # fmt: skip
    print("3. CPU per lead (both runs), from the worker processes' own accounting:")
    for run in (sustained, burst):
        leads = max(len(run.sent_at), 1)
        app = sum(w.app for w in run.workers.values())
        host = sum(w.host for w in run.workers.values())
        parts = [
            f"{function} {seconds / leads * 1000:.2f}"
            for worker in run.workers.values()
            for function, (invocations, seconds) in sorted(worker.functions.items())
            if invocations
        ]
        print(f"   {run.name}: app {app / leads * 1000:.2f} ms ({', '.join(parts)}); host's work"
              f" {host / leads * 1000:.2f} ms; Azurite {run.azurite_cpu / leads * 1000:.2f} ms")  # fmt: skip
    for run in (sustained, burst):
        for error in run.result.errors:
            print(f"   {run.name}: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s and 100 leads instead of 60 s and 1,000")
    parser.add_argument("--rate", type=float, default=100.0, help="webhook POSTs (one lead each) per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run")
    parser.add_argument("--burst", type=int, default=1000, help="leads in the burst")
    parser.add_argument("--drain-seconds", type=float, default=300.0, help="longest wait for storing and emails")
    parser.add_argument(
        "--background-nice",
        type=int,
        default=0,
        help="run the queue and timer workers N nice levels lower (DEVHOST_BACKGROUND_NICE), standing in for "
        "Flex's separate instances on a small machine (0: off)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.burst, args.drain_seconds = 5.0, 100, 120.0
    settings = {
        "AzureWebJobs.poll_leads.Disabled": "true",
        "EMAIL_MAX_PER_MINUTE": "100000",
        "EMAIL_MAX_PER_HOUR": "1000000",
        "DEVHOST_BACKGROUND_NICE": str(args.background_nice),
    }
    with local_stack(**settings) as stack:  # the design's targets: webhook, row, email (no other destination)
        warm = measure(stack, "warm-up", 20, 20.0, 60.0, reference=False)
        if len(warm.sent_at) < 20:
            print("warm-up failed: the devhost did not acknowledge the first leads")
            return 1
        sustained = measure(stack, "sustained", int(args.rate * args.seconds), args.rate, args.drain_seconds, True)
        burst = measure(stack, "burst", args.burst, args.rate, args.drain_seconds, reference=False)
    report(sustained, burst, args)
    # Deliveries on a fresh stack with a CRM endpoint: the burst again, each lead also signed to the CRM.
    with tempfile.TemporaryDirectory(prefix="bench-crm-") as folder, Receiver(folder, secret=CRM_SECRET) as crm:
        settings |= {"LEAD_WEBHOOK_URLS": f"{crm.url}/webhook", "LEAD_WEBHOOK_SECRET": CRM_SECRET}
        with local_stack(**settings) as stack:
            measure(stack, "warm-up", 20, 20.0, 60.0, reference=False)
            with_crm = measure(stack, "burst with a CRM", args.burst, args.rate, args.drain_seconds, reference=False)
            delivered = {
                str(d.body["data"]["facebook_lead_id"]): d.received_at for d in crm.deliveries("/webhook") if d.accepted
            }
        report_deliveries([with_crm], delivered)
    return 0


def report_deliveries(runs: list[Run], delivered: dict[str, float]) -> None:
    """Row committed → the signed webhook accepted by the team's endpoint (a receiver on loopback)."""
    delays = [
        delivered[lead] - run.stored[lead]
        for run in runs
        for lead in run.sent_at
        if lead in delivered and lead in run.stored
    ]
    wanted = sum(len(run.sent_at) for run in runs)
    print(f"4. deliveries (the burst again, a CRM endpoint added): row committed → signed webhook accepted,"
          f" {len(delays)}/{wanted} leads")  # fmt: skip
    print(f"   p50 {ms(delays, 50):.0f} ms  p99 {ms(delays, 99):.0f} ms  max {ms(delays, 100):.0f} ms")


if __name__ == "__main__":
    raise SystemExit(main())

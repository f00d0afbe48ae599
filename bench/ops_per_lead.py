"""Storage operations per lead: every queue and table call of the devhost counted through a proxy, per operation.

A counting proxy (`bench/storage_proxy.py`) sits in front of Azurite's queue and table endpoints,
and the devhost's `AzureWebJobsStorage` points at it, so both the app's own SDK calls and the
host's queue polling go through it. The stack is started with the same helpers as
`bench/stack.py` (which has no hook for a proxy): Azurite, the sandbox Graph API, the SMTP sink,
the devhost; the timers are off (their storage calls are per run, not per lead), the email caps
high enough never to wait, idle mode on (`IDLE_AFTER_MINUTES`, as the Bicep sets it with a
serverless database).

Per run: a few warm-up leads (clients built, tables created), then the idle rate (the host's
empty polls with nothing queued), then N signed single-lead webhook POSTs at a steady rate, each
for a lead created in the sandbox; the run waits until every lead is stored (and, with email,
sent) and both queues are empty. The calls of the run are printed per lead by actor and
operation: `host` (the devhost's polling: GetMessages, DeleteMessage, UpdateMessage, the poison
move) and `app` (our SDK calls: PutMessage, PeekMessages, table operations). Empty polls are
counted apart (a `GetMessages` that received nothing), not per lead. Two runs: `EMAIL_SENDER=smtp`
and `EMAIL_SENDER=none`.

Who sent a call: the app's queue clients put `lead-monitoring-agent` in front of azure-core's
User-Agent (`shared/messaging/sender.py`); the devhost's clients send azure-core's alone. Table
calls are all the app's (the devhost has no table client).

Reference, same run: the minimum a lead needs (webhook PutMessage, the host's GetMessages and
DeleteMessage per hop, ingestion's PutMessage on `notifications`); the ratio measured / minimum.

Run: `.venv/bin/python -m bench.ops_per_lead [--quick] [--leads 200] [--rate 5]`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.load import fire, sandbox_webhooks
from bench.stack import PAGE, SECRET, TOKEN
from bench.storage_proxy import CountingProxy, tally
from fakes.sandbox import SandboxGraph, serve
from fakes.smtp_sink import SmtpSink
from shared.storage.connection import azurite_connection_string
from shared.storage.names import LEADS_QUEUE, NOTIFICATIONS_QUEUE
from tests.support.azurite import start_azurite
from tests.support.devhost_process import devhost_env, start_devhost

TIMERS_OFF = {
    f"AzureWebJobs.{name}.Disabled": "true"
    for name in ("poll_leads", "sweep_dead_letters", "flush_outbox", "daily_digest")
}
SETTINGS = {
    "SMTP_HOST": "127.0.0.1",
    "SMTP_STARTTLS": "false",
    "EMAIL_MAX_PER_MINUTE": "100000",
    "EMAIL_MAX_PER_HOUR": "1000000",
    "IDLE_AFTER_MINUTES": "60",
    **TIMERS_OFF,
}
WARM_UP_LEADS = 3


@dataclass
class Run:
    """The calls of one measured run, and the idle rate measured before it."""

    email: bool
    leads: int
    counts: Counter[tuple[str, str, str]]
    seconds: float
    idle: Counter[tuple[str, str, str]]
    idle_seconds: float
    received: int  # messages the host's GetMessages carried


@dataclass
class Proxied:
    queue: CountingProxy
    table: CountingProxy
    storage: str  # Azurite itself, for the bench's own (uncounted) checks

    def mark(self) -> tuple[int, int]:
        return self.queue.snapshot(), self.table.snapshot()

    def since(self, mark: tuple[int, int]) -> list:  # type: ignore[type-arg]
        return self.queue.since(mark[0]) + self.table.since(mark[1])


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0


def queue_length(storage: str, queue: str) -> int:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    try:
        props = QueueClient.from_connection_string(storage, queue).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


def wait_done(db: Path, storage: str, leads: int, email: bool, timeout: float) -> bool:
    """Until `leads` rows are stored (and as many lead emails sent) and both queues are empty (deletes done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = count(db, "SELECT COUNT(*) FROM leads")
        sent = count(db, "SELECT COUNT(*) FROM notification_outbox WHERE kind = 'lead' AND status = 'sent'")
        done = stored >= leads and (not email or sent >= leads)
        if done and all(queue_length(storage, q) == 0 for q in (LEADS_QUEUE, NOTIFICATIONS_QUEUE)):
            time.sleep(1.0)  # the last DeleteMessage answers just after the count drops
            return True
        time.sleep(0.3)
    return False


@contextmanager
def proxied_stack(email: bool) -> Iterator[tuple[Proxied, Path, str, SandboxGraph]]:
    """Azurite, proxies, sandbox, SMTP sink and devhost (its storage through the proxies); stopped at the end."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    azurite = start_azurite(str(workdir / "azurite"))
    queue_proxy = CountingProxy("queue", azurite.queue_port).start()
    table_proxy = CountingProxy("table", azurite.table_port).start()
    graph = serve(SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True))
    mail = SmtpSink(workdir / "mail", "127.0.0.1", 0)
    devhost = None
    try:
        mail.start()
        through_proxy = azurite_connection_string(
            blob=azurite.blob_port, queue=queue_proxy.port, table=table_proxy.port
        )
        env = devhost_env(
            through_proxy,
            graph.url,
            str(workdir / "leads.db"),
            SMTP_PORT=str(mail.port),
            **SETTINGS,
            EMAIL_SENDER="smtp" if email else "none",
        )
        devhost = start_devhost(env, workdir / "devhost.log")
        proxied = Proxied(queue_proxy, table_proxy, azurite.connection_string)
        yield proxied, workdir / "leads.db", devhost.url, graph.sandbox
    finally:
        if devhost is not None:
            devhost.stop()
        mail.stop()
        graph.close()
        queue_proxy.stop()
        table_proxy.stop()
        azurite.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def measure(email: bool, leads: int, rate: float, idle_seconds: float) -> Run:
    with proxied_stack(email) as (proxied, db, url, sandbox):
        webhook = f"{url}/api/webhook/facebook/leads"
        rng = random.Random(7)
        posts, _ = sandbox_webhooks(sandbox, PAGE, SECRET, WARM_UP_LEADS, 1, rng)
        fire(webhook, posts, 5.0, workers=2)
        if not wait_done(db, proxied.storage, WARM_UP_LEADS, email, 60):
            raise RuntimeError("warm-up leads were not stored and sent within 60 s")
        time.sleep(3.0)  # the host's polling backs off to its idle interval
        mark = proxied.mark()
        time.sleep(idle_seconds)
        idle = tally(proxied.since(mark))
        posts, _ = sandbox_webhooks(sandbox, PAGE, SECRET, leads, 1, rng)
        mark = proxied.mark()
        started = time.monotonic()
        result = fire(webhook, posts, rate, workers=8)
        if result.ok != leads:
            raise RuntimeError(f"only {result.ok} of {leads} webhook POSTs acknowledged: {result.statuses}")
        if not wait_done(db, proxied.storage, WARM_UP_LEADS + leads, email, 120 + leads / rate):
            raise RuntimeError("the leads were not all stored (and emailed) in time")
        seconds = time.monotonic() - started
        calls = proxied.since(mark)
        received = sum(c.messages for c in calls if c.operation == "GetMessages")
        return Run(email, leads, tally(calls), seconds, idle, idle_seconds, received)


# The minimum per lead, per (actor, service, operation): one message per hop, each put once, received
# (amortised over a batch of up to 16; alone when leads arrive one at a time) and deleted once.
def minimum(email: bool) -> dict[tuple[str, str, str], float]:
    hops = 2 if email else 1
    return {
        ("app", "queue", "PutMessage"): hops,
        ("host", "queue", "GetMessages"): hops,  # upper end: one per message; 1/16 per message in a full batch
        ("host", "queue", "DeleteMessage"): hops,
    }


def print_report(runs: list[Run], rate: float) -> None:
    print(f"storage operations per lead: single-lead webhook POSTs at {rate:g}/s through the devhost, timers off")
    for run in runs:
        label = "with email (EMAIL_SENDER=smtp)" if run.email else "without email (EMAIL_SENDER=none)"
        per_second = {k: v / run.idle_seconds for k, v in run.idle.items()}
        idle_text = ", ".join(f"{a} {op} {v:.2f}/s" for (a, _, op), v in sorted(per_second.items())) or "none"
        print(f"\n  {label}: {run.leads} leads in {run.seconds:.1f} s")
        print(f"    idle, before the run ({run.idle_seconds:g} s, nothing queued): {idle_text}")
        floor = minimum(run.email)
        keys = sorted(set(run.counts) | set(floor), key=lambda k: (k[0] != "host", k[1], k[2]))
        print(f"    {'actor':<6}{'service':<8}{'operation':<28}{'calls':>7}{'per lead':>10}{'minimum':>9}")
        total = 0.0
        for key in keys:
            actor, service, operation = key
            calls = run.counts.get(key, 0)
            if operation == "GetMessages (empty)":
                rate_text = f"{calls / run.seconds:.2f}/s"
                print(f"    {actor:<6}{service:<8}{operation:<28}{calls:>7}{rate_text:>10}{'—':>9}  (not per lead)")
                continue
            per_lead = calls / run.leads
            total += per_lead
            low = "" if key not in floor else f"{floor[key]:g}"
            print(f"    {actor:<6}{service:<8}{operation:<28}{calls:>7}{per_lead:>10.2f}{low:>9}")
        least = sum(floor.values())
        batch = run.received / max(1, run.counts.get(("host", "queue", "GetMessages"), 0))
        verdict = "ok" if total <= least + 1 else "MISSED"
        print(
            f"    total per lead (empty polls apart) {total:.2f}; minimum {least:g} (GetMessages one per message;"
            f" here {batch:.1f} messages per non-empty GetMessages); ratio {total / least:.2f}x;"
            f" within one operation of the minimum: {verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 leads and 3 s of idle per run")
    parser.add_argument("--leads", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="webhook POSTs per second")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.quick:
        args.leads, args.idle_seconds = 20, 3.0
    runs = [measure(email, args.leads, args.rate, args.idle_seconds) for email in (True, False)]
    print_report(runs, args.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak with faults: many leads through the devhost while things break, then count what was lost.

Leads are created in the sandbox Graph API and delivered as signed webhooks at a varying rate,
with duplicate deliveries and batched POSTs. On a schedule the run injects: Graph 5xx and
timeouts, a throttling episode, a token expiry and renewal, the database locked (writes fail),
the SMTP server down (421 to every transaction), the team's CRM endpoint answering 500 to a fifth
of the signed webhooks it gets, a stretch of webhooks that never arrive (the
poller must backfill), and the ingestion worker process killed with SIGKILL mid-batch (the devhost
runs one worker process per group, as Flex Consumption does, and replaces it). At the end
it prints one table and fails unless stored = created, lost = 0, no lead emailed twice, no lead left
unannounced, and the CRM accepted every lead under exactly one webhook-id.

`make soak` runs 10,000 leads; `make test` runs a 500-lead version (tests/e2e/test_soak.py).
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import random
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.stack import PAGE, SECRET, TOKEN
from fakes.receiver import Receiver
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from fakes.simulate import build_webhook_body, sign
from fakes.smtp_sink import SmtpSink
from tests.support.azurite import Azurite, start_azurite
from tests.support.devhost_process import DevhostProcess, devhost_env, start_devhost
from tests.support.waiting import free_port

FORMS = (PAGE + "01", PAGE + "02")
CRM_SECRET = "whsec_" + base64.b64encode(b"soak-crm-endpoint-secret-0123456").decode("ascii")
NAMES = ("Zoë Åström", "José Núñez", "Aoife Byrne", "李雷", "Olu Adeyemi", "Priya Nair", "Mia Müller")


@dataclass
class SoakConfig:
    """How big and how hostile; `scale` shrinks every fault's duration (1.0 = the full soak)."""

    leads: int = 10_000
    rate: float = 60.0
    duplicates: float = 0.2
    batch_max: int = 5
    scale: float = 1.0
    deadline_seconds: float = 1800.0
    seed: int = 7


@dataclass
class SoakReport:
    created: int = 0
    stored: int = 0
    duplicates_ignored: int = 0
    emailed: int = 0
    emailed_twice: int = 0
    unannounced: int = 0
    dead_letters: int = 0
    lost: int = 0
    deliveries: int = 0
    posts: int = 0
    crm_delivered: int = 0  # leads the flaky CRM endpoint accepted (a valid signature, 2xx)
    crm_twice: int = 0  # leads it accepted under two different webhook-ids (a same-id repeat is its to ignore)
    crm_attempts: int = 0
    undelivered_on_purpose: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        emails = self.stored == self.created and self.lost == 0 and self.emailed_twice == 0 and self.unannounced == 0
        return emails and self.crm_delivered == self.stored and self.crm_twice == 0

    def table(self) -> str:
        rows = [
            ("leads created", self.created),
            ("leads stored", self.stored),
            ("duplicates ignored", self.duplicates_ignored),
            ("leads emailed", self.emailed),
            ("emailed twice", self.emailed_twice),
            ("left unannounced", self.unannounced),
            ("dead letters", self.dead_letters),
            ("lost", self.lost),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value:>8}" for name, value in rows]
        lines.append(f"{'webhook POSTs / deliveries':<{width}}  {self.posts:>8} / {self.deliveries}")
        lines.append(f"{'never delivered (poller)':<{width}}  {self.undelivered_on_purpose:>8}")
        lines.append(f"{'CRM webhook: leads delivered':<{width}}  {self.crm_delivered:>8} (twice: {self.crm_twice})")
        lines.append(f"{'CRM webhook: POSTs (20 % fail)':<{width}}  {self.crm_attempts:>8}")
        lines.append(f"{'duration':<{width}}  {self.seconds:>7.0f}s")
        lines.append("faults: " + "; ".join(self.faults))
        lines.append("RESULT: " + ("PASS" if self.passed else "FAIL"))
        return "\n".join(lines)


class Stack:
    """Azurite, the sandbox, an SMTP sink on a fixed port, and a devhost that can be killed."""

    def __init__(self, workdir: Path, scale: float) -> None:
        self.workdir = workdir
        self.azurite: Azurite = start_azurite(str(workdir / "azurite"))
        self.graph: RunningSandbox = serve(SandboxGraph([TOKEN], page_ids=[PAGE], app_secret=SECRET, subscribed=True))
        self.smtp_port = free_port()
        self.mail = SmtpSink(workdir / "mail", "127.0.0.1", self.smtp_port)
        self.mail.start()
        self.db = workdir / "leads.db"
        # The team's CRM: a signed-webhook endpoint that answers 500 to a fifth of the requests.
        self.crm = Receiver(workdir / "receiver", secret=CRM_SECRET)
        self.crm.start()
        self.crm.set_faults("/webhook", fail_rate=0.2, seed=11)
        self.env = devhost_env(
            self.azurite.connection_string,
            self.graph.url,
            str(self.db),
            EMAIL_SENDER="smtp",
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=str(self.smtp_port),
            SMTP_STARTTLS="false",
            EMAIL_MAX_PER_MINUTE="600",
            EMAIL_MAX_PER_HOUR="100000",
            EMAIL_MAX_LEADS_PER_EMAIL="50",
            NOTIFY_RETRY_BASE_SECONDS="1",
            NOTIFY_RETRY_MAX_SECONDS="4",
            NOTIFY_MAX_ATTEMPTS="20",  # the SMTP outage must end in emails, not dead letters
            NOTIFY_STUCK_SECONDS="60",
            POLL_SCHEDULE="*/5 * * * * *",
            POLL_GRACE_SECONDS="20",
            POLL_OVERLAP_SECONDS="120",
            RECONCILE_EVERY_MINUTES="1",
            TOKEN_RECHECK_SECONDS="2",
            PAUSED_RETRY_SECONDS="2",
            RETRY_BASE_SECONDS="1",
            RETRY_MAX_SECONDS="5",
            STORE_TIMEOUT_SECONDS="1",
            GRAPH_TIMEOUT_SECONDS="2",
            DEVHOST_QUEUE_LEASE_SECONDS=str(max(5, int(20 * scale))),
            LEAD_WEBHOOK_URLS=f"{self.crm.url}/webhook",
            LEAD_WEBHOOK_SECRET=CRM_SECRET,
            DELIVERY_RETRY_SECONDS="1,2,4,8,16,30,60",
        )
        self.devhost: DevhostProcess = start_devhost(self.env, workdir / "devhost.log")
        self.restarts = 0

    @property
    def webhook(self) -> str:
        return f"{self.devhost.url}/api/webhook/facebook/leads"

    def kill_worker(self, group: str) -> None:
        """SIGKILL one worker process (as Azure loses an instance); the devhost starts a new one."""
        self.devhost.kill_worker(group)
        self.restarts += 1

    def close(self) -> None:
        self.devhost.stop()
        self.crm.stop()
        self.mail.stop()
        self.graph.close()
        self.azurite.stop()


def lock_database(db: Path, seconds: float) -> None:
    """Hold SQLite's write lock: every writer times out (the store is unavailable) until released."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def post(stack: Stack, body: bytes, stop_at: float) -> int:
    """Deliver like Meta: retry until the devhost answers 200 (it may be restarting)."""
    headers = {"X-Hub-Signature-256": sign(body, SECRET), "Content-Type": "application/json"}
    while time.monotonic() < stop_at:
        try:
            answer = requests.post(stack.webhook, data=body, headers=headers, timeout=10)
            if answer.status_code == 200:
                return 200
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return 0


def run_soak(
    config: SoakConfig, workdir: Path | None = None, log: Callable[[str], None] = print, keep: bool = False
) -> SoakReport:
    """Run the soak and return its report (the stack is stopped; a folder it made is removed unless `keep`)."""
    rng = random.Random(config.seed)
    owned = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    report = SoakReport()
    started = time.monotonic()
    stop_at = started + config.deadline_seconds
    stack = Stack(workdir, config.scale)
    background: list[threading.Thread] = []

    def in_background(name: str, action: Callable[[], None]) -> None:
        report.faults.append(name)
        log(f"fault: {name}")
        thread = threading.Thread(target=action, daemon=True)
        thread.start()
        background.append(thread)

    sandbox = stack.graph.sandbox
    n = config.leads
    scale = config.scale

    def graph_errors() -> None:
        report.faults.append("Graph 5xx x15")
        sandbox.add_fault("server_error", route="lead", count=15)

    def graph_timeouts() -> None:
        report.faults.append("Graph timeouts x6")
        sandbox.add_fault("slow", route="lead", delay=3, count=6)

    def token_expiry() -> None:
        sandbox.set_tokens(expired=[TOKEN])
        time.sleep(20 * scale)
        sandbox.set_tokens(valid=[TOKEN])

    def smtp_outage() -> None:
        stack.mail.refuse(True)  # every new transaction gets 421: the server is down for service
        time.sleep(60 * scale)
        stack.mail.refuse(False)

    def restart() -> None:
        report.faults.append("ingestion worker killed mid-batch (SIGKILL) and replaced")
        stack.kill_worker("queue:ingest_lead")

    def throttling() -> None:
        report.faults.append("throttled (613)")
        sandbox.add_fault("throttle", code=613, count=2, regain_minutes=1)

    schedule: dict[int, Callable[[], None]] = {
        int(n * 0.10): graph_errors,
        int(n * 0.15): graph_timeouts,
        int(n * 0.20): lambda: in_background(f"token expired {20 * scale:.0f}s", token_expiry),
        int(n * 0.40): lambda: in_background(
            f"database locked {30 * scale:.0f}s", lambda: lock_database(stack.db, 30 * scale)
        ),
        int(n * 0.50): restart,
        int(n * 0.60): lambda: in_background(f"SMTP down {60 * scale:.0f}s", smtp_outage),
        int(n * 0.70): throttling,
    }
    lost_from, lost_to = int(n * 0.30), int(n * 0.30) + max(3, n // 50)  # a stretch of webhooks never sent
    report.faults.append(f"webhooks lost for {lost_to - lost_from} leads")
    created: list[str] = []
    pending: list[dict[str, object]] = []
    redeliver: list[dict[str, object]] = []
    try:
        sent = 0
        index = 0
        while index < n and time.monotonic() < stop_at:
            for due in sorted(k for k in schedule if k <= index):
                schedule.pop(due)()
            burst = rng.randint(1, config.batch_max)
            for _ in range(burst):
                if index >= n:
                    break
                form = FORMS[index % 2]
                fields = [
                    {"name": "full_name", "values": [rng.choice(NAMES)]},
                    {"name": "email", "values": [f"soak{index}@example.com"]},
                    {"name": "phone_number", "values": [f"+4477009{index:05d}"]},
                ]
                lead_id = sandbox.create_lead(form, fields)
                created.append(lead_id)
                change = {"leadgen_id": lead_id, "page_id": PAGE, "form_id": form, "created_time": int(time.time())}
                if not lost_from <= index < lost_to:
                    pending.append(change)
                    if rng.random() < config.duplicates:
                        redeliver.append(change)
                else:
                    report.undelivered_on_purpose += 1
                index += 1
            if redeliver and rng.random() < 0.5:
                pending.append(redeliver.pop(0))
            body = build_webhook_body(pending)
            report.deliveries += len(pending)
            report.posts += 1
            post(stack, body, stop_at)
            pending = []
            sent += burst
            # a varying rate: calm stretches and bursts around the configured average
            time.sleep(burst / (config.rate * rng.uniform(0.5, 2.0)))
        for change in redeliver:
            post(stack, build_webhook_body([change]), stop_at)
            report.deliveries += 1
            report.posts += 1
        for thread in background:
            thread.join(timeout=max(0.0, stop_at - time.monotonic()))
        log(f"sent {len(created)} leads; waiting for every lead to be stored and announced")
        ids = set(created)
        mail = Announcements(stack.mail.directory)
        progress_at = time.monotonic()
        while time.monotonic() < stop_at:
            stored = _stored_ids(stack.db)
            announced = set(mail.read())
            if ids <= stored and ids <= announced and ids <= _crm_leads(stack.crm):
                break
            if time.monotonic() >= progress_at:
                log(f"stored {len(ids & stored)}/{len(ids)}, announced {len(ids & announced)}")
                progress_at = time.monotonic() + 30
            time.sleep(2)
        _fill(report, stack, ids, mail.read())
    finally:
        report.seconds = time.monotonic() - started
        stack.close()
        if owned and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif owned:
            log(f"logs, database and emails kept in {workdir}")
    return report


def _crm_leads(crm: Receiver) -> set[str]:
    return {str(d.body["data"]["facebook_lead_id"]) for d in crm.deliveries("/webhook") if d.accepted}


def _stored_ids(db: Path) -> set[str]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return {row[0] for row in conn.execute("SELECT facebook_lead_id FROM leads")}
    except sqlite3.Error:
        return set()


_LEAD_ID = re.compile(r"Lead id: (\d+)")


class Announcements:
    """Lead ids in the emails the SMTP sink wrote; each file is parsed once, however often it is read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: set[Path] = set()
        self._counts: Counter[str] = Counter()

    def read(self) -> Counter[str]:
        """How many emails named each lead id so far."""
        for path in sorted(set(self.directory.glob("*.eml")) - self._seen):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            body = message.get_body(preferencelist=("plain",))
            if body is not None:
                self._counts.update(_LEAD_ID.findall(body.get_content()))
            self._seen.add(path)
        return self._counts


def _fill(report: SoakReport, stack: Stack, ids: set[str], announced: Counter[str]) -> None:
    stored = _stored_ids(stack.db)
    report.created = len(ids)
    report.stored = len(ids & stored)
    report.lost = len(ids - stored)
    report.emailed = len(ids & set(announced))
    report.emailed_twice = sum(1 for lead in ids if announced[lead] > 1)
    report.unannounced = len(stored - set(announced))
    received = [d for d in stack.crm.deliveries("/webhook") if d.accepted]
    ids_per_lead: dict[str, set[str]] = {}
    for delivery in received:
        ids_per_lead.setdefault(str(delivery.body["data"]["facebook_lead_id"]), set()).add(str(delivery.webhook_id))
    report.crm_delivered = len(ids & set(ids_per_lead))
    report.crm_twice = sum(1 for webhook_ids in ids_per_lead.values() if len(webhook_ids) > 1)
    report.crm_attempts = len(stack.crm.deliveries("/webhook"))
    with sqlite3.connect(stack.db, timeout=5) as conn:
        counter = conn.execute("SELECT value FROM lead_counters WHERE name = 'duplicates'").fetchone()
        report.duplicates_ignored = int(counter[0]) if counter else 0
        report.dead_letters = int(
            conn.execute("SELECT COUNT(*) FROM failed_events WHERE status = 'open'").fetchone()[0]
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=60.0, help="average leads per second offered")
    parser.add_argument("--scale", type=float, default=1.0, help="fault durations times this (1 = 30 s DB, 60 s SMTP)")
    parser.add_argument("--deadline", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="keep the devhost logs, database and emails")
    args = parser.parse_args()
    config = SoakConfig(leads=args.leads, rate=args.rate, scale=args.scale, deadline_seconds=args.deadline)
    report = run_soak(config, keep=args.keep)
    print(report.table())
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Lead stored → email handed to the SMTP server, through the devhost (p50/p99).

Reference, same run: a bare `smtplib` send of a similar email to the same SMTP server.
Run: `make bench` (all benchmarks) or `.venv/bin/python -m bench.notify_latency --leads 60 --rate 1`.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import re
import smtplib
import sqlite3
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from bench.stack import PAGE, SECRET, TOKEN, local_stack, summary
from fakes.simulate import simulate


def arrival_times(mail_dir: Path, lead_ids: list[str]) -> dict[str, float]:
    """When each lead's email reached the SMTP server (the sink names files by arrival time)."""
    arrived: dict[str, float] = {}
    for path in sorted(mail_dir.glob("*.eml")):
        stamp = datetime.strptime(path.name.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC).timestamp()
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        for lead_id in lead_ids:
            if lead_id not in arrived and re.search(rf"\b{lead_id}\b", text):
                arrived[lead_id] = stamp
    return arrived


def stored_times(db: Path) -> dict[str, float]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT facebook_lead_id, stored_at FROM leads").fetchall()
    return {
        lead_id: datetime.strptime(stored, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        for lead_id, stored in rows
    }


def bare_smtp_sends(port: int, count: int) -> list[float]:
    times = []
    for n in range(count):
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = f"reference {n}", "bench@local", "sales@local"
        message.set_content("reference body")
        message.add_alternative("<p>reference body</p>", subtype="html")
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.send_message(message)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=60)
    parser.add_argument("--rate", type=float, default=2.0, help="leads per second offered")
    args = parser.parse_args()
    with local_stack(EMAIL_MAX_PER_MINUTE="1000", EMAIL_MAX_PER_HOUR="100000") as stack:
        report = simulate(
            stack.graph.url, stack.webhook, SECRET, TOKEN, [PAGE], "v26.0", leads=args.leads, rate=args.rate, seed=3
        )
        deadline = time.monotonic() + 120
        arrived: dict[str, float] = {}
        while time.monotonic() < deadline:
            arrived = arrival_times(stack.mail.directory, report.lead_ids)
            if len(arrived) == len(report.lead_ids):
                break
            time.sleep(0.5)
        stored = stored_times(stack.db)
        latencies = [arrived[i] - stored[i] for i in report.lead_ids if i in arrived and i in stored]
        reference = bare_smtp_sends(stack.mail.port, 30)
    lead = summary(latencies)
    ref = summary(reference)
    print(f"notify latency: {len(latencies)}/{len(report.lead_ids)} leads emailed, offered {args.rate}/s")
    print(f"  stored → email at SMTP   p50 {lead['p50']:8.1f} ms   p99 {lead['p99']:8.1f} ms", end="")
    print(f"   max {lead['max']:8.1f} ms")
    print(f"  reference: bare SMTP send p50 {ref['p50']:8.1f} ms   p99 {ref['p99']:8.1f} ms")
    print(f"  ratio p99 / reference p99: {lead['p99'] / ref['p99']:.1f}x", end="")
    print("   (target p99 ≤ 10 000 ms; design ≤ 30 000 ms)")
    return 0 if len(latencies) == len(report.lead_ids) else 1


if __name__ == "__main__":
    raise SystemExit(main())

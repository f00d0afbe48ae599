"""Open-loop load: POST prepared requests at a fixed rate, whatever the answers take.

The n-th request is due at start + n / rate on the monotonic clock and is handed to a thread
pool (one `requests.Session` per thread) at that moment, so a slow answer never delays the
requests behind it. Each request records when it was due, sent and answered (and the wall
clock at send, to compare with timestamps the server writes) and its HTTP status (0 = no
answer). `fire_in_subprocess` runs the sender in a fresh process, so the benchmark's own
in-process services (the sandbox Graph API) do not share its interpreter lock; a `companion`
(for example the bare-enqueue reference) runs in that process beside the load, under the same
conditions. Everything is bounded: a fixed number of requests and a deadline for the answers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests

from fakes.sandbox import SandboxGraph
from fakes.simulate import WebhookChange, build_webhook_body, fake_field_data, sign

TIMEOUT = (3.05, 30.0)


@dataclass(frozen=True)
class PreparedPost:
    """One POST ready to send: exact body bytes and headers (signature included)."""

    body: bytes
    headers: dict[str, str]

    @classmethod
    def signed_webhook(cls, body: bytes, secret: str) -> PreparedPost:
        """A Meta webhook POST: JSON body signed with `X-Hub-Signature-256`."""
        return cls(body, {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)})


@dataclass(frozen=True)
class Shot:
    """One request of an open-loop run (monotonic seconds, except `sent_wall`).

    `status` is the HTTP status, 0 when no answer came (error or deadline), -1 when the request
    was never sent (every sender was still busy when the run's deadline passed).
    """

    index: int
    due: float
    sent: float
    answered: float
    sent_wall: float
    status: int

    @property
    def answer_time(self) -> float:
        """Seconds from the request leaving the client to its full answer."""
        return self.answered - self.sent

    @property
    def lag(self) -> float:
        """How late the client sent it (a sign the client, not the server, was the bottleneck)."""
        return self.sent - self.due


@dataclass
class LoadResult:
    """The shots in send order, the companion's result, and the offered and achieved rates."""

    shots: list[Shot]
    companion: Any = None
    offered_rate: float = 0.0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for shot in self.shots:
            counts[shot.status] = counts.get(shot.status, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def ok(self) -> int:
        return sum(200 <= shot.status < 300 for shot in self.shots)


Companion = Callable[[threading.Event], Any]


def fire(
    url: str,
    posts: Sequence[PreparedPost],
    rate: float,
    workers: int = 32,
    answer_deadline: float = 60.0,
    companion: Companion | None = None,
) -> LoadResult:
    """POST every prepared request to `url` at `rate` per second (open loop); return what happened.

    `companion`, when given, runs in a thread for the duration of the load and is told to stop
    (its `threading.Event` is set) once the last request is answered; its return value is kept.
    Requests in flight `answer_deadline` seconds after the last one was due get status 0, those
    not sent by then (every sender busy) status -1; `errors` says how many of each and why.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    local = threading.local()
    shots: list[Shot | None] = [None] * len(posts)
    started = [False] * len(posts)
    failures: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    companion_result: list[Any] = []

    def shoot(index: int, due: float) -> None:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started[index] = True
        post = posts[index]
        sent_wall, sent = time.time(), time.monotonic()
        try:
            response = session.post(url, data=post.body, headers=post.headers, timeout=TIMEOUT)
            response.content  # noqa: B018 - read the whole answer before stopping the clock
            status = response.status_code
        except requests.RequestException as exc:
            status = 0
            failures.append(type(exc).__name__)
        shots[index] = Shot(index, due, sent, time.monotonic(), sent_wall, status)

    def run_companion() -> None:
        assert companion is not None
        try:
            companion_result.append(companion(stop))
        except Exception as exc:  # reported, never hidden
            errors.append(f"companion failed: {type(exc).__name__}: {exc}")

    helper = threading.Thread(target=run_companion, name="load-companion", daemon=True)
    if companion is not None:
        helper.start()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
        start = time.monotonic()
        futures = []
        for index in range(len(posts)):
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(shoot, index, due))
        wait(futures, timeout=answer_deadline)
        seconds = time.monotonic() - start
        stop.set()
        for future in futures:
            future.cancel()
    if companion is not None:
        helper.join(timeout=30)
    for name in sorted(set(failures)):
        errors.append(f"{failures.count(name)} requests failed with {name}")
    unanswered = sum(shot is None and was_started for shot, was_started in zip(shots, started, strict=True))
    if unanswered:
        errors.append(f"{unanswered} requests unanswered {answer_deadline:g} s after the last was due")
    unsent = started.count(False)
    if unsent:
        errors.append(f"{unsent} requests never sent: every sender was busy until the deadline")
    now = time.monotonic()
    done = [
        s if s is not None else Shot(i, start + i / rate, now, now, 0.0, 0 if started[i] else -1)
        for i, s in enumerate(shots)
    ]
    return LoadResult(done, companion_result[0] if companion_result else None, rate, seconds, errors)


def fire_in_subprocess(
    url: str,
    posts: Sequence[PreparedPost],
    rate: float,
    workers: int = 32,
    answer_deadline: float = 60.0,
    companion: Companion | None = None,
) -> LoadResult:
    """`fire` in a fresh interpreter (spawned), so the caller's threads do not slow the sender down.

    `companion` must be picklable (a module-level function or a `functools.partial` of one).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(fire, url, list(posts), rate, workers, answer_deadline, companion)
        limit = len(posts) / rate + answer_deadline + 120
        return future.result(timeout=limit)


def sandbox_webhooks(
    sandbox: SandboxGraph, page_id: str, secret: str, posts: int, batch: int, rng: random.Random
) -> tuple[list[PreparedPost], list[str]]:
    """`posts` signed webhook POSTs of `batch` changes each, for leads created in `sandbox` now (in-process).

    Returns the POSTs and the lead ids in delivery order. About one change in five writes its
    ids as JSON numbers, as Meta sometimes does.
    """
    forms = [form.id for form, _, _ in sandbox.forms_of(page_id)]
    prepared: list[PreparedPost] = []
    lead_ids: list[str] = []
    for _ in range(posts):
        changes = []
        for _ in range(batch):
            form = rng.choice(forms)
            lead_id = sandbox.create_lead(form, fake_field_data(rng))
            lead_ids.append(lead_id)
            changes.append(WebhookChange(lead_id, page_id, form, int(time.time()), numeric_ids=rng.random() < 0.2))
        prepared.append(PreparedPost.signed_webhook(build_webhook_body(changes), secret))
    return prepared, lead_ids


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process and its descendants have used so far, from `/proc` (Linux).

    The devhost runs a worker process per function group: they count with it, and so do workers
    that already exited and were reaped (their time is in the parent's `cutime`/`cstime`).
    """
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    stats[int(entry)] = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, fields in stats.items():
            if int(fields[1]) == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    ticks = sum(sum(int(f) for f in stats[p][11:15]) for p in tree if p in stats)
    return ticks / os.sysconf("SC_CLK_TCK")

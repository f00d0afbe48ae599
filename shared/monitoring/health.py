"""Health checks: each check has `status`, `latency_ms` and a one-line reason; no secrets.

`/api/health` (anonymous) aggregates queue, database, Facebook and email with short reasons and
no internals. Its whole answer is kept for `ANONYMOUS_ANSWER_SECONDS` (5 s; less only if
`HEALTH_CACHE_SECONDS` is less, 0 turning every cache off) per process, and one caller computes it
while concurrent callers wait for that answer: a flood of anonymous calls costs at most one queue
ping and one database ping per process every 5 s, so it cannot open database connections or keep
a serverless database awake. The Facebook and email checks call
out, so their results are cached longer, for `HEALTH_CACHE_SECONDS` (default 60; anonymous
callers cannot make us spend Meta's rate budget). The detailed routes
(`/api/health/db|facebook|email`, function key) always check live and add detail.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from shared.errors import LeadAgentError, TokenInvalid
from shared.graph.client import GraphClient
from shared.graph.throttle import ThrottleGate
from shared.messaging.sender import QueueSender
from shared.models.fields import unmatched_field_map
from shared.monitoring.meta_health import check_token
from shared.notify.base import EmailSender
from shared.poller.reconcile import FORM_QUESTIONS_STATE
from shared.secrets import SecretProvider
from shared.settings import Settings
from shared.storage.names import LEADS_QUEUE
from shared.store import Store

Check = Callable[[], dict[str, Any] | None]


class Parts(Protocol):
    """What the checks look at; the app's wiring provides them (built lazily, on first use)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def sender(self) -> QueueSender: ...
    @property
    def graph(self) -> GraphClient: ...
    @property
    def throttle(self) -> ThrottleGate: ...
    @property
    def secrets(self) -> SecretProvider: ...
    @property
    def email_sender(self) -> EmailSender: ...


@dataclass(frozen=True)
class HealthReport:
    """`ok` when every check is ok (or disabled); `down` when every one fails; `degraded` otherwise."""

    status: Literal["ok", "degraded", "down"]
    checks: dict[str, dict[str, Any]]

    @property
    def healthy(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "checks": self.checks}


Answer = HealthReport

ANONYMOUS_ANSWER_SECONDS = 5.0


def run_check(probe: Check) -> dict[str, Any]:
    """Run one probe: `ok` when it returns (its dict adds detail), `down` with the error class when it raises.

    A probe that returns `{"status": "down", "reason": …}` reports a failure it found itself.
    """
    started = time.perf_counter()
    try:
        detail = probe() or {}
    except LeadAgentError as exc:
        return _result("down", started, type(exc).__name__)
    except Exception as exc:
        return _result("down", started, f"unexpected {type(exc).__name__}")
    status = str(detail.pop("status", "ok"))
    reason = str(detail.pop("reason", "reachable"))
    return {**_result(status, started, reason), **detail}


def _result(status: str, started: float, reason: str) -> dict[str, Any]:
    return {"status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 1), "reason": reason}


def summarise(checks: Mapping[str, dict[str, Any]]) -> HealthReport:
    """`ok` when every check is ok (or disabled); `down` when all fail; `degraded` otherwise."""
    failing = [name for name, check in checks.items() if check["status"] not in ("ok", "disabled")]
    if not failing:
        return HealthReport("ok", dict(checks))
    return HealthReport("down" if len(failing) == len(checks) else "degraded", dict(checks))


def database_detail(services: Parts) -> dict[str, Any]:
    """A real query and the schema version."""
    latency = services.store.ping()
    return {"query_ms": round(latency, 1), "schema_version": services.store.schema_version()}


def facebook_detail(services: Parts) -> dict[str, Any]:
    """Each token's validity, expiry and scopes (`debug_token`), each page's subscription, the throttle state.

    `token` is the shared access token; `pages` has one entry per page: whether it has its own token
    (`FACEBOOK_PAGE_TOKEN_{page_id}`), that token's state, and its subscription.
    """
    secrets, graph = services.secrets, services.graph
    token = check_token(graph, secrets.access_token(), secrets.app_token())
    subscriptions, pages = [], []
    app_id = services.settings.facebook_app_id
    for page_id in services.settings.facebook_page_ids:
        own = secrets.token_scope(page_id) is not None
        page_token = _page_token_state(services, page_id) if own else token.as_dict()
        try:
            apps = list(graph.paged(f"{page_id}/subscribed_apps", {}, page=page_id))
        except LeadAgentError as exc:
            subscription: dict[str, Any] = {"page_id": page_id, "subscribed": False, "error": type(exc).__name__}
        else:
            ok = any(
                (not app_id or str(a.get("id")) == app_id) and "leadgen" in (a.get("subscribed_fields") or [])
                for a in apps
            )
            subscription = {"page_id": page_id, "subscribed": ok}
        subscriptions.append(subscription)
        paused = services.throttle.blocked_until(page_id)
        page_throttled = None if not paused else datetime.fromtimestamp(paused, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pages.append({**subscription, "own_token": own, "token": page_token, "throttled_until": page_throttled})
    until = services.throttle.blocked_until()
    throttled = None if not until else datetime.fromtimestamp(until, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    problems = []
    if not token.valid:
        problems.append("token invalid")
    dead = [p["page_id"] for p in pages if p["own_token"] and not p["token"].get("valid")]
    if dead:
        problems.append(f"page token invalid ({', '.join(dead)})")
    if not all(s["subscribed"] for s in subscriptions):
        problems.append("page subscription missing")
    if throttled:
        problems.append("rate limited")
    detail: dict[str, Any] = {
        "token": token.as_dict(),
        "pages": pages,
        "subscriptions": subscriptions,
        "throttled_until": throttled,
    }
    unmatched = _unmatched_field_map(services)
    if unmatched:  # a warning, not a failure: the leads are stored whole either way
        detail["warnings"] = [f"FIELD_MAP names questions no chosen form asks: {', '.join(unmatched)}"]
    if problems:
        detail.update(status="down", reason=", ".join(problems))
    else:
        detail["reason"] = "token valid, pages subscribed"
    return detail


def _unmatched_field_map(services: Parts) -> list[str]:
    """`FIELD_MAP` keys no form the poller last listed has (none while no form is known, or the store is away)."""
    field_map = services.settings.field_map
    if not field_map:
        return []
    try:
        questions = services.store.coordination.get_state(FORM_QUESTIONS_STATE) or {}
    except LeadAgentError:
        return []
    return unmatched_field_map(field_map, questions)


def _page_token_state(services: Parts, page_id: str) -> dict[str, Any]:
    """`debug_token` of a page's own token; a refusal of the call itself is an invalid token too."""
    try:
        return check_token(services.graph, services.secrets.page_token(page_id), services.secrets.app_token()).as_dict()
    except TokenInvalid as exc:
        return {"valid": False, "error": str(exc)[:300]}


def email_detail(services: Parts) -> dict[str, Any]:
    """Sender configured and reachable (SMTP connect + EHLO; ACS credential obtainable)."""
    if services.settings.email_sender == "none":
        return {"status": "disabled", "reason": "EMAIL_SENDER is none"}
    return {"reason": services.email_sender.check()}


class HealthCache:
    """Remembers the outbound checks of the anonymous route for a short time."""

    def __init__(self, ttl_seconds: float = 60.0) -> None:
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._results: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, name: str, probe: Check) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._results.get(name)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        result = run_check(probe)
        with self._lock:
            self._results[name] = (now, result)
        return result


_caches: dict[float, HealthCache] = {}


def _cache_for(seconds: float) -> HealthCache:
    if seconds not in _caches:
        _caches[seconds] = HealthCache(seconds)
    return _caches[seconds]


def _short(check: dict[str, Any]) -> dict[str, Any]:
    """What anonymous callers see: status, latency, and a reason that names no internals."""
    reason = "reachable" if check["status"] == "ok" else ("disabled" if check["status"] == "disabled" else "failing")
    return {"status": check["status"], "latency_ms": check["latency_ms"], "reason": reason}


class AnswerCache:
    """The anonymous route's whole answer, kept `ttl_seconds`; one caller computes, concurrent callers share.

    Failing answers are kept too: a flood while the database is down must not retry it per call.
    """

    def __init__(self, ttl_seconds: float = ANONYMOUS_ANSWER_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._answer: Answer | None = None
        self._at = 0.0

    def get(self, compute: Callable[[], Answer]) -> Answer:
        """The kept answer while fresh, else `compute()`'s (callers arriving meanwhile wait for it)."""
        with self._lock:
            if self._answer is not None and self._clock() - self._at < self._ttl:
                return self._answer
            answer = compute()
            self._answer, self._at = answer, self._clock()
            return answer


_answers: weakref.WeakKeyDictionary[Parts, AnswerCache] = weakref.WeakKeyDictionary()
_answers_lock = threading.Lock()


def _answers_for(services: Parts) -> AnswerCache:
    """This process's answer cache for `services`: `ANONYMOUS_ANSWER_SECONDS`, or less if `HEALTH_CACHE_SECONDS` is."""
    with _answers_lock:
        if services not in _answers:
            ttl = min(ANONYMOUS_ANSWER_SECONDS, services.settings.health_cache_seconds)
            _answers[services] = AnswerCache(ttl)
        return _answers[services]


def overall_health(services: Parts, cache: HealthCache | None = None, answers: AnswerCache | None = None) -> Answer:
    """The anonymous `/api/health`: queue, database, Facebook and email, short reasons only.

    Answered from `answers` (by default this process's `AnswerCache` for `services`): at most one
    database ping per `ANONYMOUS_ANSWER_SECONDS` whatever the number of callers.
    """
    cache = cache or _cache_for(services.settings.health_cache_seconds)
    return (answers or _answers_for(services)).get(lambda: _live_overall_health(services, cache))


def _live_overall_health(services: Parts, cache: HealthCache) -> Answer:
    checks = {
        "queue": run_check(lambda: services.sender.ping(LEADS_QUEUE)),
        "database": run_check(lambda: {"query_ms": services.store.ping()}),
        "facebook": cache.get("facebook", lambda: facebook_detail(services)),
        "email": cache.get("email", lambda: email_detail(services)),
    }
    return summarise({name: _short(check) for name, check in checks.items()})


def detailed_health(services: Parts, name: str) -> HealthReport:
    """One live check with its detail: `db`, `facebook` or `email`."""
    probes: dict[str, Check] = {
        "db": lambda: database_detail(services),
        "facebook": lambda: facebook_detail(services),
        "email": lambda: email_detail(services),
    }
    return summarise({name: run_check(probes[name])})

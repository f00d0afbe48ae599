"""The anonymous `/api/health` answers from a short cache: a flood costs one database ping, not one each.

Real parts: the app's own `Services` over a SQLite file, Azurite and the sandbox Graph API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import azure.functions as func
import pytest

from devhost.defaults import LOCAL_DEFAULTS
from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from functions import health as health_functions
from shared.monitoring.health import AnswerCache, overall_health
from shared.settings import load_settings
from wiring import Services

TOKEN = "health-cache-token"
PAGE = "1000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([TOKEN], app_id=LOCAL_DEFAULTS["FACEBOOK_APP_ID"], page_ids=[PAGE], subscribed=True)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def make_services(azurite, graph: RunningSandbox, tmp_path: Path) -> Callable[..., Services]:
    def make(**settings: str) -> Services:
        environ = {
            **LOCAL_DEFAULTS,
            "AzureWebJobsStorage": azurite.connection_string,
            "SQLITE_PATH": str(tmp_path / "leads.db"),
            "FACEBOOK_GRAPH_URL": graph.url,
            "FACEBOOK_ACCESS_TOKEN": TOKEN,
            "FACEBOOK_PAGE_IDS": PAGE,
            "EMAIL_SENDER": "none",
            **settings,
        }
        return Services(load_settings(environ))

    return make


@pytest.fixture
def services(make_services: Callable[..., Services]) -> Services:
    return make_services()


@pytest.fixture
def store_pings(services: Services, monkeypatch) -> list[float]:
    """Every database ping the health check makes."""
    pings: list[float] = []
    store = services.store
    real_ping = store.ping

    def counted() -> float:
        latency = real_ping()
        pings.append(latency)
        return latency

    monkeypatch.setattr(store, "ping", counted)
    return pings


@pytest.fixture
def anonymous_health(services: Services, monkeypatch) -> Callable[[], func.HttpResponse]:
    monkeypatch.setattr(health_functions, "get_services", lambda: services)

    def call() -> func.HttpResponse:
        request = func.HttpRequest(method="GET", url="/api/health", headers={"client-ip": "203.0.113.7:1"}, body=b"")
        return health_functions.health(request)

    return call


def test_fifty_rapid_health_calls_cost_one_store_ping(anonymous_health, store_pings):
    answers = [anonymous_health() for _ in range(50)]
    assert {answer.status_code for answer in answers} == {200}
    assert len(store_pings) == 1


def test_a_concurrent_flood_costs_one_store_ping(anonymous_health, store_pings):
    start = threading.Barrier(16)
    statuses: list[int] = []

    def caller() -> None:
        start.wait()
        statuses.append(anonymous_health().status_code)

    threads = [threading.Thread(target=caller) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [200] * 16
    assert len(store_pings) == 1


def test_the_answer_is_checked_again_once_the_cache_expires(services, store_pings):
    clock = Clock()
    answers = AnswerCache(ttl_seconds=5, clock=clock)
    overall_health(services, answers=answers)
    clock.now += 4.9
    overall_health(services, answers=answers)
    assert len(store_pings) == 1
    clock.now += 0.2
    report = overall_health(services, answers=answers)
    assert len(store_pings) == 2
    assert (report.healthy, report.checks["database"]["status"]) == (True, "ok")


def test_a_failing_answer_is_cached_too_so_a_flood_cannot_hammer_a_database_that_is_down(services, monkeypatch):
    attempts: list[int] = []

    def down() -> float:
        attempts.append(1)
        raise RuntimeError("database down")

    monkeypatch.setattr(services.store, "ping", down)
    answers = AnswerCache(ttl_seconds=5, clock=Clock())
    results = [overall_health(services, answers=answers) for _ in range(10)]
    assert len({id(report) for report in results}) == 1  # one answer, kept
    assert not any(report.healthy for report in results)
    assert len(attempts) == 1


def test_health_cache_seconds_zero_turns_the_answer_cache_off_too(make_services, monkeypatch):
    services = make_services(HEALTH_CACHE_SECONDS="0")
    pings: list[float] = []
    real_ping = services.store.ping
    monkeypatch.setattr(services.store, "ping", lambda: pings.append(real_ping()) or pings[-1])
    for _ in range(3):
        overall_health(services)
    assert len(pings) == 3

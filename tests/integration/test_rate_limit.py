"""Rate limits against real Azurite: exact shared counts per window, and the HTTP guard around functions."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable

import azure.functions as func
import pytest
from azure.functions.decorators.http import HttpTrigger

from functions import guard
from functions.guard import count_failed_auth, rate_limited
from shared.storage.connection import azurite_connection_string
from shared.storage.ratelimit import RateLimiter, RateLimitUnavailable
from tests.support.waiting import free_port

# 15 s into a window: 45 s remain until the next one.
WINDOW_START = 1_800_000_000 // 60 * 60
IP = "203.0.113.7"


class Clock:
    """A settable clock for the limiter's windows."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table(unique_suffix: str) -> str:
    return f"ratelimits{unique_suffix}"


@pytest.fixture
def clock() -> Clock:
    return Clock(WINDOW_START + 15)


@pytest.fixture
def make_limiter(azurite, table: str, clock: Clock) -> Callable[..., RateLimiter]:
    def make(**overrides: object) -> RateLimiter:
        options: dict[str, object] = {"table": table, "clock": clock, **overrides}
        return RateLimiter(azurite.connection_string, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def unreachable() -> RateLimiter:
    port = free_port()
    return RateLimiter(azurite_connection_string(blob=port, queue=port, table=port), timeout_seconds=2)


def test_the_101st_request_in_a_window_is_refused_until_the_window_ends(make_limiter):
    limiter = make_limiter()
    decisions = [limiter.hit("ops", IP) for _ in range(101)]
    assert all(d.allowed for d in decisions[:100])
    assert [d.count for d in decisions] == list(range(1, 102))
    refused = decisions[100]
    assert not refused.allowed
    assert (refused.count, refused.limit) == (101, 100)
    assert 0 < refused.retry_after <= 60
    assert refused.retry_after == 45


def test_refused_requests_keep_counting(make_limiter):
    limiter = make_limiter(limit=2)
    decisions = [limiter.hit("ops", IP) for _ in range(4)]
    assert [(d.allowed, d.count) for d in decisions] == [(True, 1), (True, 2), (False, 3), (False, 4)]


def test_a_new_window_allows_again(make_limiter, clock):
    limiter = make_limiter(limit=3)
    for _ in range(4):
        last = limiter.hit("ops", IP)
    assert not last.allowed
    clock.now = WINDOW_START + 60
    fresh = limiter.hit("ops", IP)
    assert (fresh.allowed, fresh.count, fresh.retry_after) == (True, 1, 60)


def test_two_instances_share_one_count(make_limiter):
    first, second = make_limiter(), make_limiter()
    assert all(first.hit("ops", IP).allowed for _ in range(60))
    assert all(second.hit("ops", IP).allowed for _ in range(40))
    hundred_and_first = second.hit("ops", IP)
    assert (hundred_and_first.allowed, hundred_and_first.count) == (False, 101)
    assert not first.hit("ops", IP).allowed


def test_concurrent_hits_from_eight_threads_lose_no_update(make_limiter):
    limiters = [make_limiter(limit=1000) for _ in range(2)]
    per_thread = 15
    counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(limiter: RateLimiter) -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                count = limiter.hit("ops", IP).count
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                counts.append(count)

    threads = [threading.Thread(target=worker, args=(limiters[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert sorted(counts) == list(range(1, 8 * per_thread + 1))


def test_ips_and_scopes_are_counted_independently(make_limiter):
    limiter = make_limiter(limit=2)
    for _ in range(3):
        limiter.hit("ops", IP)
    assert not limiter.hit("ops", IP).allowed
    assert limiter.hit("ops", "198.51.100.4").count == 1
    assert limiter.hit("webhook-auth", IP).count == 1
    assert limiter.hit("ops", "2001:db8::7").count == 1


def test_ipv6_addresses_of_one_64_share_one_count(make_limiter):
    limiter = make_limiter(limit=2)
    assert limiter.hit("ops", "2001:db8:1:2::1").count == 1
    assert limiter.hit("ops", "2001:db8:1:2:ffff::9").count == 2
    refused = limiter.hit("ops", "2001:db8:1:2:aaaa:bbbb:cccc:dddd")
    assert (refused.allowed, refused.count) == (False, 3)
    assert limiter.hit("ops", "2001:db8:1:3::1").count == 1


def test_unreachable_storage_raises_rate_limit_unavailable_quickly(unreachable):
    started = time.monotonic()
    with pytest.raises(RateLimitUnavailable):
        unreachable.hit("ops", IP)
    assert time.monotonic() - started < 5


# The guard around HTTP functions.


def request(client: str = f"{IP}:51234") -> func.HttpRequest:
    return func.HttpRequest(method="GET", url="/api/probe", headers={"client-ip": client}, body=b"")


def probe_app(fail_open: bool = False) -> func.FunctionApp:
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("probe")
    @bp.route(route="ops/probe", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    @rate_limited("ops", fail_open=fail_open)
    def probe(req: func.HttpRequest) -> func.HttpResponse:
        """The probe's own docstring."""
        return func.HttpResponse("ok", status_code=200)

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    return app


def probe_function(fail_open: bool = False) -> Callable[..., func.HttpResponse]:
    (function,) = probe_app(fail_open).get_functions()
    user_function: Callable[..., func.HttpResponse] = function.get_user_function()
    return user_function


@pytest.fixture
def guarded_by(monkeypatch) -> Callable[[RateLimiter], None]:
    def point(limiter: RateLimiter) -> None:
        monkeypatch.setattr(guard, "limiter", lambda: limiter)

    return point


def test_decorated_function_keeps_its_route_name_and_signature():
    (function,) = probe_app().get_functions()
    trigger = function.get_trigger()
    assert isinstance(trigger, HttpTrigger)
    assert (function.get_function_name(), trigger.route, trigger.name) == ("probe", "ops/probe", "req")
    user_function = function.get_user_function()
    assert user_function.__name__ == "probe"
    assert user_function.__doc__ == "The probe's own docstring."
    assert list(inspect.signature(user_function).parameters) == ["req"]


def test_guard_passes_through_while_allowed(make_limiter, guarded_by):
    guarded_by(make_limiter(limit=2))
    response = probe_function()(req=request())  # the worker passes the trigger by its argument name
    assert (response.status_code, response.get_body()) == (200, b"ok")


def test_guard_answers_429_with_retry_after_over_the_limit(make_limiter, guarded_by):
    guarded_by(make_limiter(limit=2))
    probe = probe_function()
    assert [probe(req=request()).status_code for _ in range(2)] == [200, 200]
    refused = probe(req=request())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "45"
    assert refused.mimetype == "application/json"
    assert json.loads(refused.get_body()) == {"error": "rate limited", "retry_after": 45}
    assert probe(req=request("198.51.100.4:1")).status_code == 200


def test_guard_fails_closed_with_503_when_the_limiter_is_unavailable(unreachable, guarded_by):
    guarded_by(unreachable)
    response = probe_function(fail_open=False)(req=request())
    assert response.status_code == 503
    assert json.loads(response.get_body()) == {"error": "rate limiter unavailable"}


def test_guard_fails_open_when_asked_and_the_limiter_is_unavailable(unreachable, guarded_by):
    guarded_by(unreachable)
    response = probe_function(fail_open=True)(req=request())
    assert (response.status_code, response.get_body()) == (200, b"ok")


def test_failed_auth_is_counted_and_refused_over_the_limit(make_limiter, guarded_by):
    guarded_by(make_limiter(limit=2))
    assert [count_failed_auth(request()) for _ in range(2)] == [None, None]
    refused = count_failed_auth(request())
    assert refused is not None
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "45"


def test_failed_auth_counting_fails_open_when_the_limiter_is_unavailable(unreachable, guarded_by):
    guarded_by(unreachable)
    assert count_failed_auth(request()) is None


# Purging ended windows (the dead-letter sweep timer calls it every 5 minutes).


def entities(azurite, table: str) -> list[tuple[str, str]]:
    from azure.data.tables import TableClient

    client = TableClient.from_connection_string(azurite.connection_string, table)
    return sorted((e["PartitionKey"], e["RowKey"]) for e in client.list_entities())


def fill_three_windows(limiter: RateLimiter, clock: Clock) -> None:
    for window in range(3):
        clock.now = WINDOW_START + 60 * window + 15
        limiter.hit("ops", IP)
        limiter.hit("webhook-auth", "2001:db8:1:2::7")


def test_purge_deletes_windows_ended_over_a_window_ago_and_keeps_the_rest(make_limiter, clock, azurite, table):
    limiter = make_limiter()
    fill_three_windows(limiter, clock)
    assert len(entities(azurite, table)) == 6
    assert limiter.purge_expired() == 2  # window 0 ended at +60, more than 60 s before +135
    assert {row for _, row in entities(azurite, table)} == {str(WINDOW_START + 60), str(WINDOW_START + 120)}
    clock.now = WINDOW_START + 240 + 15
    assert limiter.purge_expired() == 4
    assert entities(azurite, table) == []


def test_counting_goes_on_exactly_in_the_current_window_after_a_purge(make_limiter, clock):
    limiter = make_limiter()
    fill_three_windows(limiter, clock)
    limiter.purge_expired()
    assert limiter.hit("ops", IP).count == 2


def test_purge_stops_at_its_cap_and_the_next_run_goes_on(make_limiter, clock, azurite, table):
    limiter = make_limiter()
    fill_three_windows(limiter, clock)
    clock.now = WINDOW_START + 240 + 15
    assert limiter.purge_expired(max_deletes=4) == 4
    assert limiter.purge_expired(max_deletes=4) == 2
    assert entities(azurite, table) == []


def test_purge_with_storage_down_reports_nothing_and_does_not_raise(unreachable):
    started = time.monotonic()
    assert unreachable.purge_expired() == 0
    assert time.monotonic() - started < 10


def test_the_dead_letter_sweep_timer_purges_ended_windows(make_limiter, clock, azurite, table, monkeypatch):
    from types import SimpleNamespace

    from functions import poller

    limiter = make_limiter()
    fill_three_windows(limiter, clock)
    clock.now = WINDOW_START + 240 + 15
    services = SimpleNamespace(
        sweep=lambda purge=True: SimpleNamespace(as_dict=dict, moved=0, already_recorded=0),
        watch=lambda: SimpleNamespace(dead_letters_open=0),
        rate_limiter=limiter,
        idle=None,
    )
    monkeypatch.setattr(poller, "get_services", lambda: services)
    poller.sweep_dead_letters(timer=None)
    assert entities(azurite, table) == []

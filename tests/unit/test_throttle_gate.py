"""The throttle gate: once Meta says "slow down", no Graph call leaves until the regain time, on any instance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import GraphThrottled, StoreUnavailable
from shared.graph.throttle import ThrottleGate, usage_block_seconds
from shared.store import Store
from shared.store.sqlite import SqliteBackend

REFRESH = 5.0


class Clock:
    """Epoch seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    created = Store(SqliteBackend(str(tmp_path / "s.db")))
    created.migrate()
    return created


@pytest.fixture
def gate(clock: Clock) -> ThrottleGate:
    return ThrottleGate(clock=clock)


def shared_gate(store: Store, clock: Clock) -> ThrottleGate:
    return ThrottleGate(state=lambda: store.coordination, clock=clock, refresh_seconds=REFRESH)


def business_usage(minutes: float) -> str:
    return json.dumps(
        {
            "1000000000001": [
                {
                    "type": "pages",
                    "call_count": 100,
                    "total_cputime": 30,
                    "total_time": 40,
                    "estimated_time_to_regain_access": minutes,
                }
            ]
        }
    )


class TestOneGate:
    def test_an_open_gate_lets_calls_through(self, gate: ThrottleGate):
        gate.check()

        assert gate.blocked_until() == 0.0

    def test_a_blocked_gate_refuses_calls_with_the_remaining_wait(self, gate: ThrottleGate, clock: Clock):
        gate.block(120, "code 4")
        clock.advance(20)

        with pytest.raises(GraphThrottled) as raised:
            gate.check()
        assert raised.value.regain_seconds == pytest.approx(100)
        assert raised.value.min_delay_seconds == pytest.approx(100)

    def test_blocked_until_is_the_regain_time(self, gate: ThrottleGate, clock: Clock):
        start = clock.now
        gate.block(120, "code 4")

        assert gate.blocked_until() == start + 120

    def test_a_shorter_block_never_shortens_a_longer_one(self, gate: ThrottleGate, clock: Clock):
        start = clock.now
        gate.block(600, "BUC regain 10 min")
        gate.block(60, "code 613")

        assert gate.blocked_until() == start + 600

    def test_a_longer_block_extends_a_shorter_one(self, gate: ThrottleGate, clock: Clock):
        start = clock.now
        gate.block(60, "code 613")
        gate.block(600, "BUC regain 10 min")

        assert gate.blocked_until() == start + 600

    def test_the_gate_opens_again_once_the_regain_time_has_passed(self, gate: ThrottleGate, clock: Clock):
        gate.block(120, "code 4")
        clock.advance(120)

        gate.check()
        assert gate.blocked_until() == 0.0


class TestSharedThroughTheStore:
    def test_a_block_is_written_to_the_store(self, store: Store, clock: Clock):
        start = clock.now
        shared_gate(store, clock).block(120, "code 4")

        state = store.coordination.get_state("graph_throttle")
        assert state is not None
        assert state["until"] == start + 120
        assert state["reason"] == "code 4"

    def test_a_new_gate_on_the_same_store_sees_the_block(self, store: Store, clock: Clock):
        shared_gate(store, clock).block(120, "code 4")
        clock.advance(1)

        with pytest.raises(GraphThrottled) as raised:
            shared_gate(store, clock).check()
        assert raised.value.regain_seconds == pytest.approx(119)

    def test_a_gate_that_already_looked_sees_another_gates_block_after_its_refresh(self, store: Store, clock: Clock):
        first, second = shared_gate(store, clock), shared_gate(store, clock)
        second.check()
        first.block(120, "code 4")

        clock.advance(REFRESH)
        with pytest.raises(GraphThrottled):
            second.check()

    def test_a_shared_block_opens_again_once_the_regain_time_has_passed(self, store: Store, clock: Clock):
        shared_gate(store, clock).block(120, "code 4")
        second = shared_gate(store, clock)
        clock.advance(120)

        second.check()

    def test_a_shorter_block_on_another_gate_never_shortens_the_shared_block(self, store: Store, clock: Clock):
        start = clock.now
        shared_gate(store, clock).block(600, "BUC regain 10 min")
        shared_gate(store, clock).block(60, "code 613")

        assert shared_gate(store, clock).blocked_until() == start + 600

    def test_a_store_that_cannot_be_reached_keeps_the_block_in_memory(self, clock: Clock):
        def unavailable() -> Store:
            raise StoreUnavailable("database is locked")

        gate = ThrottleGate(state=unavailable, clock=clock, refresh_seconds=REFRESH)
        gate.block(120, "code 4")

        with pytest.raises(GraphThrottled):
            gate.check()


class TestUsageHeaders:
    def test_the_business_use_case_regain_time_is_read_in_minutes(self):
        assert usage_block_seconds({"X-Business-Use-Case-Usage": business_usage(7)}) == 7 * 60

    def test_app_usage_at_the_limit_blocks_for_a_minute(self):
        usage = json.dumps({"call_count": 100, "total_cputime": 12, "total_time": 20})

        assert usage_block_seconds({"X-App-Usage": usage}) == 60

    def test_app_usage_over_the_limit_on_any_measure_blocks_for_a_minute(self):
        usage = json.dumps({"call_count": 40, "total_cputime": 104, "total_time": 20})

        assert usage_block_seconds({"x-app-usage": usage}) == 60

    def test_low_usage_does_not_block(self):
        headers = {
            "X-App-Usage": json.dumps({"call_count": 12, "total_cputime": 3, "total_time": 5}),
            "X-Business-Use-Case-Usage": business_usage(0),
        }

        assert usage_block_seconds(headers) == 0

    def test_no_usage_headers_do_not_block(self):
        assert usage_block_seconds({"Content-Type": "application/json"}) == 0

    def test_an_unreadable_app_usage_header_does_not_block(self):
        assert usage_block_seconds({"X-App-Usage": "not json"}) == 0

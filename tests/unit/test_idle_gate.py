"""The idle gate's decisions over an in-memory state table (the real table: tests/integration/test_idle.py)."""

from __future__ import annotations

from typing import Any

from shared.storage.idle import IdleGate
from shared.storage.state import StateUnavailable


class MemoryState:
    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.puts = 0
        self.down = False

    def get_state(self, key: str) -> dict[str, Any] | None:
        if self.down:
            raise StateUnavailable("table down")
        return self.values.get(key)

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        if self.down:
            raise StateUnavailable("table down")
        self.puts += 1
        self.values[key] = value


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def gate(state: MemoryState, clock: Clock, idle_after: float = 900, every: float = 10_800) -> IdleGate:
    return IdleGate(state, idle_after, every, clock=clock)


def test_activity_is_written_at_most_once_a_minute_per_process():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock)
    for _ in range(100):
        g.touch()
    clock.now += 61
    g.touch()
    assert state.puts == 2


def test_idle_starts_idle_after_seconds_after_the_last_activity():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock)
    g.touch()
    clock.now += 899
    assert not g.idle()
    clock.now += 1
    assert g.idle()


def test_a_state_table_that_cannot_be_read_means_not_idle_so_the_timers_do_their_work():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock)
    state.down = True
    assert not g.idle()
    assert g.may_query("flush_outbox")


def test_a_touch_that_could_not_be_written_is_tried_again_on_the_next_message():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock)
    state.down = True
    g.touch()
    state.down = False
    g.touch()
    assert state.values["activity"] == {"at": clock.now}


def test_while_idle_each_job_queries_once_in_every_slot_of_sql_every_seconds():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock)
    assert [g.may_query("flush_outbox"), g.may_query("flush_outbox")] == [True, False]
    clock.now += 10_800
    assert [g.may_query("flush_outbox"), g.may_query("flush_outbox")] == [True, False]


def test_the_slots_are_aligned_so_the_jobs_query_in_the_same_minutes_and_the_database_can_pause():
    state, clock = MemoryState(), Clock()
    clock.now = 10_800 * 100 + 30  # 30 s into a slot
    g = gate(state, clock)
    assert g.may_query("flush_outbox")
    clock.now += 240  # the sweep and the poller run a few minutes later: still this slot's one query each
    assert g.may_query("sweep_dead_letters") and g.may_query("poll_leads")
    clock.now += 3_600  # an hour later, still in the slot: nobody queries
    assert not any(g.may_query(job) for job in ("flush_outbox", "sweep_dead_letters", "poll_leads"))


def test_with_the_mode_off_every_run_queries_and_nothing_is_written():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock, idle_after=0)
    g.touch()
    assert g.may_query("flush_outbox") and g.may_query("flush_outbox")
    assert state.puts == 0


def test_the_flush_reads_again_after_a_timer_that_may_have_written_an_alert_row():
    state, clock = MemoryState(), Clock()
    g = gate(state, clock)
    writers = ("poll_leads", "sweep_dead_letters")
    assert g.may_query("flush_outbox", after=writers)
    assert not g.may_query("flush_outbox", after=writers)
    clock.now += 30
    g.ran("sweep_dead_letters")  # its watchers may have opened an incident
    clock.now += 30
    assert g.may_query("flush_outbox", after=writers)
    assert not g.may_query("flush_outbox", after=writers)

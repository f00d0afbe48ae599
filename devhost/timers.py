"""Timer triggers: one thread per timer function, firing at each NCRONTAB occurrence (UTC).

`run_on_startup` fires once when the host starts. An invocation never overlaps the next one (the
host holds a singleton lock per timer); when an invocation overran one or more occurrences, one
late run follows with `past_due=True`, then the schedule resumes from now. A failing invocation
is logged and the schedule goes on (timers have no retries without a retry policy).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest

from devhost.invocation import HostedFunction, invoke
from devhost.ncrontab import Schedule

log = logging.getLogger("devhost.timers")

Invoker = Callable[[HostedFunction, Any, str], Any]

PAST_DUE_TOLERANCE = timedelta(seconds=1)


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class TimerRunner:
    """Fires one timer function on its schedule until stopped."""

    def __init__(
        self,
        function: HostedFunction,
        schedule: Schedule,
        run_on_startup: bool = False,
        invoker: Invoker = invoke,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.function = function
        self.schedule = schedule
        self.run_on_startup = run_on_startup
        self._invoke = invoker
        self._clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"devhost-timer-{function.name}", daemon=True)

    def start(self) -> None:
        """Start the schedule (and the startup run, if asked for)."""
        self._thread.start()

    def request_stop(self) -> None:
        """No further occurrences fire; a running invocation finishes."""
        self._stopping.set()

    def join(self, deadline: float) -> bool:
        """Wait for a running invocation to finish, until the `time.monotonic()` deadline."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _fire(self, past_due: bool, reason: str) -> None:
        try:
            self._invoke(self.function, TimerRequest(past_due=past_due), reason)
        except Exception:  # logged by invoke with its traceback; the schedule goes on
            log.info("timer %s: the next occurrence still fires", self.function.name)

    def _loop(self) -> None:
        if self.run_on_startup and not self._stopping.is_set():
            self._fire(False, "Timer fired at startup (run_on_startup)")
        due = self.schedule.next_after(self._clock())
        catching_up = False
        while not self._stopping.is_set():
            delay = (due - self._clock()).total_seconds()
            if delay > 0:
                if self._stopping.wait(delay):
                    break
                continue  # woke at the deadline: re-read the clock before firing
            past_due = self._clock() - due > PAST_DUE_TOLERANCE
            self._fire(past_due, f"Timer fired at {self._clock().isoformat(timespec='milliseconds')}")
            following = self.schedule.next_after(due)
            if following <= self._clock() and not catching_up:
                due, catching_up = following, True  # one late run for the occurrences that passed
            else:
                due, catching_up = self.schedule.next_after(self._clock()), False

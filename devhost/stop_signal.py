"""Waiting for SIGINT/SIGTERM on the main thread, with a signal handler that takes no lock.

A Python signal handler runs on the main thread between two bytecodes, wherever that thread is,
including inside `threading.Event.wait()`, which holds the event's (non-reentrant) lock around its
bookkeeping, or inside the `Event.set()` of a first handler that a second signal interrupted. A
handler that calls `Event.set()` there waits for a lock its own thread holds, forever: issue 18,
where `make run` ignored SIGTERM with its main thread in a futex wait (`make` forwards the SIGTERM
its process group got, so the supervisor gets two at once).

`StopSignal`'s handler only records the signal number. The main thread sleeps in `select` on a
non-blocking self-pipe that `signal.set_wakeup_fd` writes a byte to from C, so a signal wakes it
at once; other threads wake it with `request()`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """A stop asked for by SIGINT/SIGTERM or by `request()`, waited for with `wait()` on the main thread."""

    def __init__(self, on_repeat: Callable[[int], None] | None = None) -> None:
        """`on_repeat(signum)` runs inside the handler for every signal after the first; it must not lock."""
        self.signum: int | None = None
        self._requested = False
        self._on_repeat = on_repeat
        self._pipe: tuple[int, int] | None = None  # made on first use, so an unused instance holds no fd
        self._pipe_lock = threading.Lock()  # never taken by the handler
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived or `request()` was called."""
        return self._requested or self.signum is not None

    @property
    def signal_name(self) -> str:
        """`SIGTERM`, `SIGINT`, or `request` when no signal asked for the stop."""
        return signal.Signals(self.signum).name if self.signum is not None else "request"

    def install(self) -> bool:
        """Handle SIGINT and SIGTERM from now on; False (nothing installed) when not on the main thread."""
        if self._previous or threading.current_thread() is not threading.main_thread():
            return False
        self._previous_wakeup = signal.set_wakeup_fd(self._fds()[1], warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return True

    def restore(self) -> None:
        """Put back the handlers and wakeup fd that `install` replaced."""
        if not self._previous:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        self._previous = {}

    def request(self) -> None:
        """Ask for the stop from any thread (never from a signal handler: use `install`)."""
        self._requested = True  # before looking for a pipe: a waiter makes its pipe before it reads this
        with self._pipe_lock:
            if self._pipe is not None:
                with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending anyway
                    os.write(self._pipe[1], b"\0")

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until a stop is asked for or `timeout` seconds passed; whether it was asked for."""
        reader = self._fds()[0]
        if not self.requested:
            select.select([reader], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(reader, 512):
                pass
        return self.requested

    def close(self) -> None:
        """Restore the handlers and close the pipe (a later use makes a new one)."""
        self.restore()
        with self._pipe_lock:
            pipe, self._pipe = self._pipe, None
        for fd in pipe or ():
            os.close(fd)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No lock and no logging: this may run between any two bytecodes of the main thread.
        if self.signum is None:
            self.signum = signum
        elif self._on_repeat is not None:
            self._on_repeat(signum)

    def _fds(self) -> tuple[int, int]:
        with self._pipe_lock:
            if self._pipe is None:
                reader, writer = os.pipe()  # close-on-exec: children never inherit it
                os.set_blocking(reader, False)
                os.set_blocking(writer, False)
                self._pipe = (reader, writer)
            return self._pipe

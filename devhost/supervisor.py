"""The devhost as Flex Consumption runs the app: one worker process per group, the way it scales.

Flex Consumption scales the HTTP functions as one group and each queue-triggered function on its
own instances, each instance with its own Python worker process. `Supervisor` starts one
`python -m devhost --group G` per group (`FunctionHost.groups`: `http`, `queue:<function>` for
each queue trigger, `timers`), so no invocation shares an interpreter, a thread pool or module
state with a function of another group, as in Azure. The queue and timer workers start first and
the HTTP worker last, so once the HTTP port answers every worker is serving.

A worker reports that it is serving through a pipe (`DEVHOST_READY_FD`). A worker that dies after
that (killed, crashed) is started again, as the platform replaces an instance; its queue messages
reappear when their lease ends. A worker that exits before it is ready is a start-up error: the
others are stopped and the supervisor exits 1. SIGINT/SIGTERM go to every worker (each drains for
up to `--stop-timeout` seconds); the exit status is 0 when all stopped cleanly, 3 when one still had
work at its deadline or had to be killed. A second signal kills the workers and exits at once (130).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devhost.children import spawn_tied
from devhost.host import HTTP_GROUP
from devhost.stop_signal import StopSignal

log = logging.getLogger("devhost")

READY_FD_SETTING = "DEVHOST_READY_FD"
DEVHOST_HOME = Path(__file__).resolve().parents[1]  # the folder that holds the devhost package
READY_WITHIN_SECONDS = 60.0
KILL_GRACE_SECONDS = 5.0
RESTARTS_PER_MINUTE = 5
EXIT_STARTUP, EXIT_DRAIN_TIMEOUT, EXIT_NOW = 1, 3, 130


@dataclass
class Worker:
    """One worker process: its group, the command that starts it, and its readiness pipe."""

    group: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    ready_fd: int | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        reader, writer = os.pipe()
        os.set_blocking(reader, False)
        env = {**os.environ, READY_FD_SETTING: str(writer)}
        # `-m devhost` must resolve from the script root the supervisor moved to, whatever the caller's path.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(DEVHOST_HOME), env.get("PYTHONPATH", "")) if p)
        try:
            # Its own process group: a signal to the supervisor's group reaches the workers once, forwarded.
            self.process = spawn_tied(self.command, env=env, pass_fds=(writer,), process_group=0)
        finally:
            os.close(writer)
        self.ready, self.ready_fd = False, reader

    def poll_ready(self) -> bool:
        """Whether the worker said it is serving (reads its pipe without waiting)."""
        if not self.ready and self.ready_fd is not None:
            try:
                if os.read(self.ready_fd, 16):
                    self.ready = True
                    self._close_pipe()
            except BlockingIOError:
                pass
        return self.ready

    def _close_pipe(self) -> None:
        if self.ready_fd is not None:
            os.close(self.ready_fd)
            self.ready_fd = None

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def close(self) -> None:
        self._close_pipe()


def signal_ready() -> None:
    """In a worker: tell the supervisor this worker is serving (no-op when not started by one)."""
    raw = os.environ.pop(READY_FD_SETTING, "")
    if not raw.isdigit():
        return
    try:
        os.write(int(raw), b"1")
        os.close(int(raw))
    except OSError:
        pass


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one app."""

    def __init__(self, groups: Sequence[str], worker_command: Sequence[str], stop_timeout: float) -> None:
        order = [g for g in groups if g != HTTP_GROUP] + [g for g in groups if g == HTTP_GROUP]
        self.workers = [Worker(group, [*worker_command, "--group", group]) for group in order]
        self.stop_timeout = stop_timeout
        self._stop = StopSignal(on_repeat=self._kill_now)
        self._pids: list[int] = []  # read by the signal handler: no lock

    def run(self) -> int:
        """Start every worker, serve until SIGINT/SIGTERM, stop them; the exit status."""
        self._stop.install()
        try:
            if not self._start_all():
                self._stop_all()
                return EXIT_STARTUP
            log.info("Workers serving: %s", ", ".join(f"{w.group} (pid {_pid(w)})" for w in self._running()))
            while not self._stop.wait(0.2):
                if not self._replace_dead():
                    self._stop_all()
                    return EXIT_STARTUP
            return self._stop_all()
        finally:
            self._stop.close()
            for worker in self.workers:
                worker.close()

    def _running(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None and w.exited() is None]

    def _start_all(self) -> bool:
        return all(self._start(worker) for worker in self.workers)

    def _start(self, worker: Worker) -> bool:
        worker.start()
        assert worker.process is not None
        self._pids.append(worker.process.pid)
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while not worker.poll_ready():
            code = worker.exited()
            if code is not None:
                log.error("devhost: worker %s exited with %s before it was serving", worker.group, code)
                return False
            if self._stop.requested or time.monotonic() > deadline:
                if not self._stop.requested:
                    log.error("devhost: worker %s was not serving within %.0f s", worker.group, READY_WITHIN_SECONDS)
                return False
            self._stop.wait(0.05)
        return True

    def _replace_dead(self) -> bool:
        """Start again any worker that died while serving; False when one keeps dying or cannot start."""
        for worker in self.workers:
            code = worker.exited()
            if code is None:
                continue
            now = time.monotonic()
            worker.restarts = [t for t in worker.restarts if now - t < 60] + [now]
            if len(worker.restarts) > RESTARTS_PER_MINUTE:
                log.error("devhost: worker %s died %d times in a minute; stopping", worker.group, len(worker.restarts))
                return False
            log.warning(
                "devhost: worker %s (pid %s) exited with %s; starting it again", worker.group, _pid(worker), code
            )
            worker.close()
            if not self._start(worker):
                return False
        return True

    def _stop_all(self) -> int:
        """SIGTERM to every worker, wait for their drain, kill what is left; 0 or EXIT_DRAIN_TIMEOUT."""
        running = self._running()
        for worker in running:
            _signal(worker, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout + KILL_GRACE_SECONDS
        status = 0
        for worker in running:
            assert worker.process is not None
            try:
                code = worker.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("devhost: worker %s did not stop in time; killing it", worker.group)
                worker.process.kill()
                worker.process.wait()
                code = EXIT_DRAIN_TIMEOUT
            if code != 0:
                status = EXIT_DRAIN_TIMEOUT
        log.info("Workers stopped")
        return status

    def _kill_now(self, signum: int) -> None:
        """A second SIGINT/SIGTERM (inside the signal handler: no lock, no logging): kill the workers, exit."""
        for pid in list(self._pids):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        os.write(2, f"devhost: second {signal.Signals(signum).name}: exiting without waiting\n".encode())
        os._exit(EXIT_NOW)


def _signal(worker: Worker, signum: int) -> None:
    if worker.process is not None:
        with contextlib.suppress(OSError):
            worker.process.send_signal(signum)


def _pid(worker: Worker) -> object:
    return None if worker.process is None else worker.process.pid


def worker_command(argv: Sequence[str]) -> list[str]:
    """`python -m devhost` with this run's options, for one worker (the supervisor adds `--group`)."""
    return [sys.executable, "-m", "devhost", *argv]

"""`python -m devhost.run` (what `make run` calls): the whole local stack, one Ctrl-C to stop it.

Starts, in order and each only once the previous one accepts connections: Azurite (blob, queue,
table on 10000-10002, data in `.devdata/azurite`), the SMTP sink (1025, mail in `.devdata/mail`),
the sandbox Graph API (7072) and the devhost (7071). Every child's output goes to
`.devdata/logs/<name>.log` except the devhost's, which stays on the terminal. Then it prints
where everything is and how to send a test lead. Ctrl-C (or SIGTERM) stops the children in
reverse order and exits 0; if a child dies, the others are stopped and the exit status is 1,
naming it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

DEVDATA = Path(".devdata")
LOGS = DEVDATA / "logs"
MAIL = DEVDATA / "mail"
HOST = "127.0.0.1"


@dataclass
class Child:
    """A process of the local stack: how to start it, the ports that say it's ready, where it logs."""

    name: str
    command: list[str]
    ports: tuple[int, ...]
    ready_within: float = 30.0
    stop_within: float = 10.0
    to_terminal: bool = False
    process: subprocess.Popen[bytes] | None = None
    log_handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return LOGS / f"{self.name}.log"


class StackError(RuntimeError):
    """A child could not start, or died; the message names it."""


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def stack(python: str = sys.executable) -> list[Child]:
    """The children in start order."""
    azurite = str(Path("node_modules/.bin/azurite"))
    return [
        Child(
            "azurite",
            [
                *(azurite, "--silent", "--skipApiVersionCheck", "--disableTelemetry"),
                *("--location", str(DEVDATA / "azurite")),
                *("--blobHost", HOST, "--queueHost", HOST, "--tableHost", HOST),
                *("--blobPort", "10000", "--queuePort", "10001", "--tablePort", "10002"),
            ],
            (10000, 10001, 10002),
        ),
        Child("smtp-sink", [python, "-m", "devhost.smtp_sink", "--port", "1025", "--dir", str(MAIL)], (1025,)),
        Child("sandbox-graph", [python, "-m", "devhost.sandbox_graph", "--port", "7072", "--subscribed"], (7072,)),
        Child("devhost", [python, "-m", "devhost", "--port", "7071"], (7071,), 60.0, 75.0, to_terminal=True),
    ]


def check_ports_free(children: list[Child]) -> None:
    """Fail before starting anything when a port the stack needs is taken."""
    for child in children:
        taken = [p for p in child.ports if port_open(p)]
        if taken:
            raise StackError(
                f"port {', '.join(map(str, taken))} ({child.name}) is already in use; "
                "stop whatever listens there (another `make run`?) and try again"
            )


def start(child: Child, stopping: threading.Event) -> None:
    """Start the child and wait until all its ports accept connections (or a stop), else raise `StackError`."""
    if child.name == "azurite" and not Path(child.command[0]).exists():
        raise StackError(f"azurite: {child.command[0]} is missing; run `npm install`")
    output: IO[bytes] | None = None
    if not child.to_terminal:
        child.log_handle = output = open(child.log_path, "ab")  # noqa: SIM115 - closed in stop()
    child.process = subprocess.Popen(
        child.command, stdout=output, stderr=subprocess.STDOUT if output else None, process_group=0
    )
    deadline = time.monotonic() + child.ready_within
    where = "its output above" if child.to_terminal else str(child.log_path)
    while not all(port_open(p) for p in child.ports) and not stopping.is_set():
        if child.process.poll() is not None:
            raise StackError(f"{child.name} exited with status {child.process.returncode} while starting; see {where}")
        if time.monotonic() > deadline:
            ports = ", ".join(map(str, child.ports))
            raise StackError(f"{child.name} did not listen on {ports} within {child.ready_within:.0f}s; see {where}")
        time.sleep(0.1)


def stop(child: Child) -> None:
    """SIGTERM, wait (bounded), then SIGKILL; close its log."""
    process = child.process
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(child.stop_within)
        except subprocess.TimeoutExpired:
            print(f"{child.name} did not stop within {child.stop_within:.0f}s; killing it", file=sys.stderr)
            process.kill()
            process.wait(5)
    if child.log_handle is not None:
        child.log_handle.close()
        child.log_handle = None


def banner() -> str:
    """Where everything is and what to do next."""
    return "\n".join(
        [
            "",
            "Local stack is up:",
            "  devhost (function app)  http://127.0.0.1:7071/api/...",
            "  Azurite                 blob http://127.0.0.1:10000  queue http://127.0.0.1:10001  "
            "table http://127.0.0.1:10002  (data in .devdata/azurite)",
            "  sandbox Graph API       http://127.0.0.1:7072",
            "  SMTP sink               127.0.0.1:1025, every message saved in .devdata/mail/",
            "",
            "Send test leads:   .venv/bin/python -m devhost.simulate --leads 5 --rate 2",
            "Look at them:      curl http://127.0.0.1:7071/api/ops/last-leads?limit=5",
            "Logs:              .devdata/logs/ (the devhost logs here, in this terminal)",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def run(children: list[Child]) -> int:
    """Start the stack, wait for a signal or a dead child, stop in reverse order; the exit status."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started: list[Child] = []
    status = 0
    try:
        check_ports_free(children)
        for child in children:
            if stopping.is_set():
                break
            started.append(child)
            start(child, stopping)
        if not stopping.is_set():
            print(banner(), flush=True)
        while not stopping.wait(0.5):
            dead = next((c for c in started if c.process is not None and c.process.poll() is not None), None)
            if dead is not None:
                where = "" if dead.to_terminal else f"; see {dead.log_path}"
                raise StackError(f"{dead.name} exited with status {dead.process.returncode}{where}")  # type: ignore[union-attr]
    except StackError as exc:
        print(f"devhost.run: {exc}", file=sys.stderr)
        status = 1
    finally:
        for child in reversed(started):
            stop(child)
    return status


def main() -> int:
    """Entry point: from the repository root, create the `.devdata/` layout, then `run`."""
    os.chdir(Path(__file__).resolve().parents[1])
    for directory in (DEVDATA, LOGS, MAIL, DEVDATA / "azurite"):
        directory.mkdir(parents=True, exist_ok=True)
    return run(stack())


if __name__ == "__main__":
    sys.exit(main())

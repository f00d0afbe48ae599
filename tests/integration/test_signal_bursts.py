"""A burst of SIGTERMs stops a process of the local stack; it never wedges it.

Issue 18: `make run` sometimes ignored SIGTERM for good. Its signal handler called
`threading.Event.set()`, which takes the event's lock; a Python handler runs on the main thread
between two bytecodes, so when that thread already held the lock (inside `Event.wait()`, or inside
the `set()` of a first handler that a second signal interrupted) it waited for itself forever.
`make` forwards the SIGTERM its process group got, so the supervisor gets two at once; a burst
makes the race likely enough to catch it in a few rounds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devhost.children import spawn_tied
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
TOY_ROOT = REPO / "tests" / "fixtures" / "devhost_app"
ROUNDS = 20
BURST_SECONDS = 0.2


def burst(process: subprocess.Popen[bytes], seconds: float) -> None:
    """SIGTERM `process` as fast as possible for `seconds`, or until it has exited."""
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        os.kill(process.pid, signal.SIGTERM)  # a zombie still takes signals: poll() below ends the burst
        sent += 1
        if sent % 500 == 0 and process.poll() is not None:
            return


def wait_ready(process: subprocess.Popen[bytes], ready: str | int) -> None:
    """Until `ready` (a word) is on the process's stdout, or its port (an int) accepts connections."""
    if isinstance(ready, str):
        assert process.stdout is not None
        while ready.encode() not in process.stdout.readline() and process.poll() is None:
            pass
    else:
        wait_until(lambda: port_open(ready) or process.poll() is not None, timeout=20, what=f"port {ready}")


def stops_after_bursts(
    name: str, command: list[str], ready: str | int, tmp_path: Path, rounds: int = ROUNDS, **popen: Any
) -> None:
    """Start `command` `rounds` times; once it is ready (see `wait_ready`), burst it: it must exit each time."""
    for round_number in range(rounds):
        log = tmp_path / f"round-{round_number}.log"
        with log.open("wb") as output:
            process = spawn_tied(command, cwd=REPO, stdout=subprocess.PIPE, stderr=output, **popen)
        try:
            wait_ready(process, ready)
            assert process.poll() is None, log.read_text()
            time.sleep(random.uniform(0, 0.3))
            burst(process, BURST_SECONDS)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"round {round_number}: the {name} ignored a burst of SIGTERM and still runs")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def test_the_supervisor_stops_after_a_burst_of_sigterm(tmp_path):
    # the supervisor of `make run` with nothing to supervise: only its signal handling and its wait
    command = [sys.executable, "-c", "import sys, devhost.run as r; sys.exit(r.run([]))"]
    stops_after_bursts("supervisor", command, "stack", tmp_path)


def test_the_smtp_sink_stops_after_a_burst_of_sigterm(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "fakes.smtp_sink", "--port", str(port), "--dir", str(tmp_path / "mail")]
    stops_after_bursts("SMTP sink", command, port, tmp_path, rounds=10)


def test_the_sandbox_graph_stops_after_a_burst_of_sigterm(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "fakes.sandbox", "--port", str(port)]
    stops_after_bursts("sandbox", command, port, tmp_path, rounds=10)


def test_the_devhost_stops_after_a_burst_of_sigterm(azurite, unique_suffix, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "devhost", "--script-root", str(TOY_ROOT), "--port", str(port)]
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "TOY_QUEUE_NAME": f"burst-{unique_suffix}"}
    stops_after_bursts("devhost", command, port, tmp_path, rounds=5, env=env)

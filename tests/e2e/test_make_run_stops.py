"""`make run` stops when asked, and leaves nothing behind (issue 18).

Each test starts `make run`'s supervisor (`python -m devhost.run`) for real: Azurite, the SMTP sink,
the sandbox Graph API and the devhost, on free ports and with a temporary data folder (so neither a
developer's running `make run` nor their `.devdata` is touched). "Stopped" means every port of the
stack refuses connections and every child process is gone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devhost.children import spawn_tied
from devhost.run import Ports
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
CYCLES = 50
STOPPED_WITHIN = 40.0  # the devhost's drain (25 s) plus the kill grace, with room to spare
ORPHANS_GONE_WITHIN = 5.0


@dataclass
class Supervisor:
    """A running `python -m devhost.run`, its own process group, and where it listens."""

    process: subprocess.Popen[bytes]
    ports: Ports
    log_path: Path

    @property
    def all_ports(self) -> list[int]:
        p = self.ports
        return [p.devhost, p.graph, p.smtp, p.blob, p.queue, p.table, p.receiver]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """Pids whose parent is the supervisor."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    found.append(int(entry.name))
        return found


def alive(pid: int) -> bool:
    """Whether `pid` is a process that still runs (a zombie has finished)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children_described(pids: list[int]) -> list[str]:
    described = []
    for pid in pids:
        try:
            stat = (Path("/proc") / str(pid) / "stat").read_text()
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError as exc:
            described.append(f"{pid}: {exc}")
            continue
        described.append(f"{pid}: {stat[:60]} | {cmdline[:120]}")
    return described


def free_ports() -> Ports:
    chosen: set[int] = set()
    while len(chosen) < 7:
        chosen.add(free_port())
    return Ports(*sorted(chosen))


def health_answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
    except requests.RequestException:
        return False
    return True  # 200 or 503: the stack is up either way


def supervisor_command(data: Path, ports: Ports) -> list[str]:
    names = ("devhost", "graph", "smtp", "blob", "queue", "table", "receiver")
    return [
        *(sys.executable, "-m", "devhost.run", "--data-dir", str(data)),
        *(f"--{name}-port={getattr(ports, name)}" for name in names),
    ]


def start_supervisor(folder: Path, ports: Ports) -> Supervisor:
    """`python -m devhost.run` on `ports` with its data in `folder`; returns once /api/health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "supervisor.log"
    with log_path.open("ab") as log:
        process = spawn_tied(
            supervisor_command(folder / "devdata", ports),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,  # a group of its own, as `make run` is in a terminal
        )
    supervisor = Supervisor(process, ports, log_path)
    try:
        # its own banner first: a port picked as free may meanwhile serve someone else's /api/health
        wait_until(lambda: "stack is up" in supervisor.log() or process.poll() is not None, timeout=90, what="banner")
        assert process.poll() is None, supervisor.log()
        wait_until(lambda: health_answers(ports.devhost), timeout=30, what="/api/health")
    except BaseException:
        stop_for_good(supervisor)
        raise
    return supervisor


def stop_for_good(supervisor: Supervisor) -> None:
    """Clean-up after a failed test: kill the supervisor's group and its children."""
    for pid in supervisor.children():
        os.kill(pid, signal.SIGKILL)
    if supervisor.process.poll() is None:
        os.killpg(supervisor.process.pid, signal.SIGKILL)
        supervisor.process.wait()


def assert_stopped(supervisor: Supervisor, children: list[int], within: float) -> float:
    """Every port free and every child gone within `within` seconds; the seconds it took."""
    started = time.monotonic()

    def stopped() -> bool:
        return not any(alive(pid) for pid in children) and not any(port_open(p) for p in supervisor.all_ports)

    try:
        wait_until(stopped, timeout=within, interval=0.05, what="every child to exit and every port to be free")
    except AssertionError as exc:
        left = [p for p in supervisor.all_ports if port_open(p)]
        raise AssertionError(f"{exc}; still listening: {left}\n{supervisor.log()[-3000:]}") from None
    return time.monotonic() - started


def start_on_free_ports(folder: Path, attempts: int = 3) -> Supervisor:
    """`start_supervisor` on ports free a moment ago; again on others if one was taken meanwhile."""
    for attempt in range(1, attempts + 1):
        try:
            return start_supervisor(folder, free_ports())
        except AssertionError as exc:
            if "held by" not in str(exc) or attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def supervisor(tmp_path) -> Iterator[Supervisor]:
    running = start_on_free_ports(tmp_path)
    yield running
    stop_for_good(running)


@pytest.mark.timeout(900)  # 50 cycles took 226-426 s on 2 cores (about 4.5-8.5 s each, depending on load)
def test_sigterm_at_random_moments_stops_every_child_and_frees_every_port_each_time(tmp_path):
    rng = random.Random()
    took = []
    for cycle in range(CYCLES):
        supervisor = start_on_free_ports(tmp_path / f"cycle-{cycle}")
        try:
            children = supervisor.children()
            assert len(children) == 5, (children_described(children), supervisor.log())
            time.sleep(rng.uniform(0, 1.5))
            supervisor.process.send_signal(signal.SIGTERM)
            took.append(assert_stopped(supervisor, children, STOPPED_WITHIN))
            assert supervisor.process.wait(timeout=STOPPED_WITHIN) == 0, supervisor.log()
        finally:
            stop_for_good(supervisor)
    print(f"{CYCLES} SIGTERM cycles: stopped in {min(took):.2f}-{max(took):.2f} s (mean {sum(took) / len(took):.2f} s)")


def test_sigint_stops_the_stack_like_ctrl_c(supervisor):
    children = supervisor.children()
    supervisor.process.send_signal(signal.SIGINT)
    assert_stopped(supervisor, children, STOPPED_WITHIN)
    assert supervisor.process.wait(timeout=10) == 0, supervisor.log()


def test_sigterm_to_the_group_and_again_from_make_stops_the_stack(supervisor):
    children = supervisor.children()
    os.killpg(supervisor.process.pid, signal.SIGTERM)  # what `kill -TERM -<pgid>` does
    supervisor.process.send_signal(signal.SIGTERM)  # and make passes its own SIGTERM on to the supervisor
    assert_stopped(supervisor, children, STOPPED_WITHIN)
    assert supervisor.process.wait(timeout=10) == 0, supervisor.log()


def test_the_children_exit_when_the_supervisor_is_killed(supervisor):
    children = supervisor.children()
    assert len(children) == 5, supervisor.log()  # azurite, smtp sink, receiver, sandbox, devhost
    supervisor.process.send_signal(signal.SIGKILL)
    supervisor.process.wait(timeout=5)
    assert_stopped(supervisor, children, ORPHANS_GONE_WITHIN)


def test_a_port_still_held_is_named_with_its_process_in_one_line(tmp_path):
    ports = free_ports()
    leftover = spawn_tied(
        [sys.executable, "-m", "fakes.smtp_sink", "--port", str(ports.smtp), "--dir", str(tmp_path / "mail")],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(ports.smtp), what="the leftover sink")
        completed = subprocess.run(
            supervisor_command(tmp_path / "devdata", ports),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        leftover.terminate()
        leftover.wait(timeout=10)
    assert completed.returncode == 1
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
    line = completed.stderr.strip()
    assert f"port {ports.smtp} (smtp-sink) held by pid {leftover.pid} (" in line
    assert "fakes.smtp_sink" in line
    assert f"`kill {leftover.pid}`" in line
    assert not any(port_open(p) for p in (ports.devhost, ports.graph, ports.blob)), "nothing else was started"

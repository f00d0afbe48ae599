"""Children started through `devhost.children.spawn_tied` never outlive the process that started them.

Real processes throughout: a parent is killed with SIGKILL (no `finally` of it runs) and its
children must be gone within seconds; the stacks that tests and benchmarks start (Azurite and the
devhost, via `tests.support` and `bench.stack`) are started that way too. Also here: which process
holds a port, as `make run` reports it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devhost.children import can_tie, spawn_tied
from devhost.ports import holders
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
GONE_WITHIN = 5.0

pytestmark = pytest.mark.skipif(not can_tie(), reason="PR_SET_PDEATHSIG is Linux only")


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has finished; its new parent may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_parent_and_wait_for(script: str, timeout: float = 90) -> list[int]:
    """Run `script` in a parent Python; it prints a JSON list of child pids, then is SIGKILLed.

    Returns those pids once all are gone; fails if any still runs GONE_WITHIN seconds later.
    """
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in json.loads(parent.stdout.readline() or "[]")]
        assert pids, "the parent printed no child pids"
        assert all(alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=GONE_WITHIN, what="the children to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    return pids


def test_a_tied_child_gets_sigterm_when_its_parent_is_killed():
    kill_parent_and_wait_for(
        "import json, sys, time\n"
        "from devhost.children import spawn_tied\n"
        "child = spawn_tied([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(json.dumps([child.pid]), flush=True)\n"
        "time.sleep(600)\n"
    )


def test_the_stack_a_test_or_benchmark_starts_exits_when_its_process_is_killed():
    # Azurite (node) and the devhost, started by tests.support through bench.stack.local_stack
    kill_parent_and_wait_for(
        "import json, time\n"
        "from bench.stack import local_stack\n"
        "with local_stack() as stack:\n"
        "    print(json.dumps([stack.azurite.process.pid, stack.devhost.process.pid]), flush=True)\n"
        "    time.sleep(600)\n"
    )


def test_spawn_tied_refuses_a_thread_other_than_the_main_one():
    errors: list[BaseException] = []

    def spawn() -> None:
        try:
            spawn_tied([sys.executable, "-c", "pass"]).wait()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join()
    assert errors and "main thread" in str(errors[0])


@pytest.mark.parametrize(("family", "address"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_process_listening_on_a_port_is_found_with_its_command(family, address):
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((address, 0))
    except OSError:
        pytest.skip(f"no {address} here")
    with listener:
        listener.listen()
        port = listener.getsockname()[1]
        found = holders([port])
    assert found[port].pid == os.getpid()
    assert "pytest" in found[port].command or "python" in found[port].command


def test_a_port_nobody_listens_on_has_no_holder():
    with socket.socket() as bound_only:
        bound_only.bind(("127.0.0.1", 0))  # bound, not listening: nothing to report
        port = bound_only.getsockname()[1]
        assert holders([port]) == {}

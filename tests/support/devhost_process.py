"""Run the real function app under the devhost as a subprocess against test-owned services, tied to this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devhost.children import spawn_tied
from devhost.defaults import LOCAL_DEFAULTS
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DevhostProcess:
    """A running `python -m devhost` and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (the devhost finishes in-flight work), then kill if it overstays."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return int(self.process.returncode)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def worker_pid(self, group: str) -> int | None:
        """The pid of the worker process serving `group` (`http`, `queue:<function>`, `timers`), if one runs."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and group.encode() in argv and b"--group" in argv:
                return int(entry.name)
        return None

    def kill_worker(self, group: str, timeout: float = 60) -> int:
        """SIGKILL the worker of `group`, as the platform loses an instance; wait until its replacement runs."""
        old = self.worker_pid(group)
        if old is None:
            raise RuntimeError(f"no worker process serves {group}")
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: self.worker_pid(group) not in (None, old), timeout=timeout, what=f"a new {group} worker")
        new = self.worker_pid(group)
        assert new is not None
        return new


def devhost_env(storage: str, graph_url: str, sqlite_path: str, **overrides: str) -> dict[str, str]:
    """The local defaults pointed at test services; `overrides` win."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEBOOK_", "SQLITE_", "AzureWebJobs"))}
    env.update(LOCAL_DEFAULTS)
    env.update(
        {
            "AzureWebJobsStorage": storage,
            "FACEBOOK_GRAPH_URL": graph_url,
            "SQLITE_PATH": sqlite_path,
            "RETRY_BASE_SECONDS": "1",
            "DEVHOST_QUEUE_LEASE_SECONDS": "30",
            "PYTHONUNBUFFERED": "1",
            "EMAIL_SENDER": "none",  # tests that check emails point it at their own SMTP server
        }
    )
    env.update(overrides)
    return env


def start_devhost(env: dict[str, str], log_path: Path, port: int | None = None) -> DevhostProcess:
    """Start the devhost on a free port and wait until its HTTP port answers.

    It gets SIGTERM if this process dies without stopping it (`devhost.children.spawn_tied`).
    """
    chosen = port or free_port()
    log = log_path.open("ab")
    process = spawn_tied(
        [sys.executable, "-m", "devhost", "--port", str(chosen), "--script-root", str(REPO)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = DevhostProcess(process, chosen, env, log_path)
    try:
        wait_until(lambda: port_open(chosen) or process.poll() is not None, timeout=60, what="devhost port")
    except AssertionError:
        running.stop()
        raise
    if process.poll() is not None:
        raise RuntimeError(f"devhost exited with {process.returncode}:\n{running.log()}")
    return running

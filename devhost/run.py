"""`python -m devhost.run` (what `make run` calls): the whole local stack, one Ctrl-C to stop it.

Starts Azurite (blob, queue, table on 10000-10002, data in `.devdata/azurite`), the SMTP sink (1025,
mail in `.devdata/mail`), the receiver of deliveries (7073: signed webhooks, Slack and Teams, in
`.devdata/receiver`) and the sandbox Graph API (7072) together, then, once they all accept
connections, the devhost (7071). Every child's output goes to `.devdata/logs/<name>.log` except the
devhost's, which stays on the terminal. Then it prints where everything is and how to send a test
lead. `--data-dir` and the `--*-port` options move all of it (tests use them; the devhost is
pointed at the moved services through its environment).

Stopping: SIGINT or SIGTERM, once or many times, to the supervisor alone or to its process group,
stops the devhost first (it finishes in-flight work for up to DRAIN_SECONDS, then is killed), then
the rest together, and exits 0; if a child dies, the others are stopped and the exit status is 1,
naming it. Every child is tied to the supervisor (`devhost.children`): if the supervisor is killed
outright, they get SIGTERM from the kernel. A port still held (say by a child of an older run) is
reported in one line naming the process and how to stop it.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devhost.children import spawn_tied
from devhost.defaults import LOCAL_DEFAULTS, azurite_connection_string
from devhost.ports import holders, port_open
from devhost.stop_signal import StopSignal

REPO = Path(__file__).resolve().parents[1]
DEVDATA = Path(".devdata")
HOST = "127.0.0.1"
DRAIN_SECONDS = 25  # the devhost's in-flight work gets this long after SIGTERM
KILL_GRACE_SECONDS = 5  # past its drain (or right away for the others), a child is killed
# The local receiver's signing secret (not a secret: it signs deliveries to 127.0.0.1 only).
RECEIVER_SECRET = "whsec_" + base64.b64encode(b"local-receiver-secret-0123456789").decode("ascii")
LOCAL_DATASET_ID = "100000000000001"  # the sandbox accepts Conversions API events for any numeric dataset


@dataclass(frozen=True)
class Ports:
    """Where the stack listens; the defaults are the README's."""

    devhost: int = 7071
    graph: int = 7072
    smtp: int = 1025
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    receiver: int = 7073


@dataclass
class Child:
    """A process of the local stack: how to start it, the ports that say it's ready, where it logs.

    Children of one `wave` start together, once every child of the earlier waves is ready; they
    stop in reverse: the last wave first.
    """

    name: str
    command: list[str]
    ports: tuple[int, ...]
    log_path: Path | None = None  # None: the supervisor's terminal
    wave: int = 0
    env: dict[str, str] = field(default_factory=dict)
    ready_within: float = 30.0
    stop_within: float = KILL_GRACE_SECONDS
    process: subprocess.Popen[bytes] | None = None
    log_handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """Where to look when it fails."""
        return "its output above" if self.log_path is None else str(self.log_path)


class StackError(RuntimeError):
    """A child could not start, or died; the message names it."""


def devhost_settings(data: Path, ports: Ports) -> dict[str, str]:
    """The devhost's environment for a moved stack: only what differs from its local defaults."""
    settings = {
        "AzureWebJobsStorage": azurite_connection_string(blob=ports.blob, queue=ports.queue, table=ports.table),
        "FACEBOOK_GRAPH_URL": f"http://{HOST}:{ports.graph}",
        "SMTP_PORT": str(ports.smtp),
        "SQLITE_PATH": str(data / "leads.db"),
    }
    moved = {k: v for k, v in settings.items() if v != LOCAL_DEFAULTS[k]}
    return {**moved, **receiver_settings(ports)}


def receiver_settings(ports: Ports) -> dict[str, str]:
    """Point every delivery at the local receiver: signed webhooks, Slack and Teams; stages to the sandbox."""
    base = f"http://{HOST}:{ports.receiver}"
    return {
        "LEAD_WEBHOOK_URLS": f"{base}/webhook",
        "LEAD_WEBHOOK_SECRET": RECEIVER_SECRET,
        "SLACK_WEBHOOK_URL": f"{base}/slack",
        "TEAMS_WEBHOOK_URL": f"{base}/teams",
        "META_DATASET_ID": LOCAL_DATASET_ID,
    }


def stack(data: Path = DEVDATA, ports: Ports = Ports(), python: str = sys.executable) -> list[Child]:
    """The children in start order; `data` holds the logs, mail and Azurite's files."""
    logs = data / "logs"
    return [
        Child(
            "azurite",
            [
                *(str(Path("node_modules/.bin/azurite")), "--silent", "--skipApiVersionCheck", "--disableTelemetry"),
                *("--location", str(data / "azurite")),
                *("--blobHost", HOST, "--queueHost", HOST, "--tableHost", HOST),
                *("--blobPort", str(ports.blob), "--queuePort", str(ports.queue), "--tablePort", str(ports.table)),
            ],
            (ports.blob, ports.queue, ports.table),
            logs / "azurite.log",
        ),
        Child(
            "smtp-sink",
            [python, "-m", "fakes.smtp_sink", "--port", str(ports.smtp), "--dir", str(data / "mail")],
            (ports.smtp,),
            logs / "smtp-sink.log",
        ),
        Child(
            "receiver",
            [
                *(python, "-m", "fakes.receiver", "--port", str(ports.receiver)),
                *("--dir", str(data / "receiver"), "--secret", RECEIVER_SECRET),
            ],
            (ports.receiver,),
            logs / "receiver.log",
        ),
        Child(
            "sandbox-graph",
            [python, "-m", "fakes.sandbox", "--port", str(ports.graph), "--subscribed"],
            (ports.graph,),
            logs / "sandbox-graph.log",
        ),
        Child(
            "devhost",
            [python, "-m", "devhost", "--port", str(ports.devhost), "--stop-timeout", str(DRAIN_SECONDS)],
            (ports.devhost,),
            wave=1,
            env=devhost_settings(data, ports),
            ready_within=60.0,
            stop_within=DRAIN_SECONDS + KILL_GRACE_SECONDS,
        ),
    ]


def waves(children: Sequence[Child]) -> list[list[Child]]:
    """The children grouped by wave, in start order."""
    return [[c for c in children if c.wave == w] for w in sorted({c.wave for c in children})]


def taken_ports_message(taken: dict[str, list[int]]) -> str:
    """One line: which process holds which port (`taken`: child name -> its ports in use), how to stop it."""
    found = holders(p for ports in taken.values() for p in ports)
    parts: list[str] = []
    for name, ports in taken.items():
        for pid in dict.fromkeys(found[p].pid if p in found else None for p in ports):
            mine = [p for p in ports if (found[p].pid if p in found else None) == pid]
            listed = f"port{'s' if len(mine) > 1 else ''} {', '.join(map(str, mine))} ({name})"
            if pid is None:
                parts.append(f"{listed} held by a process this user cannot see")
            else:
                parts.append(f"{listed} held by pid {pid} ({found[mine[0]].command})")
    pids = sorted({h.pid for h in found.values()})
    advice = (
        f"stop {'it' if len(pids) == 1 else 'them'} with `kill {' '.join(map(str, pids))}`"
        if pids
        else "stop whatever listens there"
    )
    return f"{'; '.join(parts)}; {advice} (a `make run` still running, or left from one) and try again"


def check_ports_free(children: Sequence[Child]) -> None:
    """Fail before starting anything when a port the stack needs is taken, naming who holds it."""
    taken = {c.name: [p for p in c.ports if port_open(p)] for c in children}
    taken = {name: ports for name, ports in taken.items() if ports}
    if taken:
        raise StackError(taken_ports_message(taken))


def launch(child: Child) -> None:
    """Start the child, tied to this process, in its own process group (a Ctrl-C reaches only the supervisor)."""
    if child.name == "azurite" and not Path(child.command[0]).exists():
        raise StackError(f"azurite: {child.command[0]} is missing; run `npm install`")
    output: IO[bytes] | None = None
    if child.log_path is not None:
        child.log_handle = output = open(child.log_path, "ab")  # noqa: SIM115 - closed in finish()
    child.process = spawn_tied(
        child.command,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        env={**os.environ, **child.env} if child.env else None,
        process_group=0,
    )


def wait_ready(children: Sequence[Child], stop: StopSignal) -> None:
    """Wait until every child's ports accept connections, or a stop; `StackError` for a death or a timeout."""
    started = time.monotonic()
    waiting = list(children)
    while waiting and not stop.requested:
        for child in list(waiting):
            assert child.process is not None
            if all(port_open(p) for p in child.ports):
                waiting.remove(child)
            elif child.process.poll() is not None:
                code = child.process.returncode
                raise StackError(f"{child.name} exited with status {code} while starting; see {child.where}")
            elif time.monotonic() - started > child.ready_within:
                ports = ", ".join(map(str, child.ports))
                raise StackError(
                    f"{child.name} did not listen on {ports} within {child.ready_within:.0f}s; see {child.where}"
                )
        if waiting:
            stop.wait(0.1)


def stop_children(children: Sequence[Child]) -> None:
    """Stop the last wave first: SIGTERM all of a wave, wait for each (bounded), SIGKILL what overstays."""
    for wave in reversed(waves(children)):
        for child in wave:
            if child.process is not None and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + max(c.stop_within for c in wave)
        for child in wave:
            finish(child, deadline)


def finish(child: Child, deadline: float) -> None:
    """Wait for a terminated child until `deadline`, then SIGKILL it; close its log."""
    process = child.process
    if process is not None:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(
                f"devhost.run: {child.name} did not stop within {child.stop_within:.0f}s; killing it", file=sys.stderr
            )
            process.kill()
            process.wait()
    if child.log_handle is not None:
        child.log_handle.close()
        child.log_handle = None


def banner(data: Path = DEVDATA, ports: Ports = Ports()) -> str:
    """Where everything is and what to do next."""
    base = f"http://{HOST}"
    return "\n".join(
        [
            "",
            "Local stack is up:",
            f"  devhost (function app)  {base}:{ports.devhost}/api/...",
            f"  Azurite                 blob {base}:{ports.blob}  queue {base}:{ports.queue}  "
            f"table {base}:{ports.table}  (data in {data}/azurite)",
            f"  sandbox Graph API       {base}:{ports.graph}",
            f"  SMTP sink               {HOST}:{ports.smtp}, every message saved in {data}/mail/",
            f"  receiver                {base}:{ports.receiver}: signed webhooks, Slack and Teams posts, saved in"
            f" {data}/receiver/*.jsonl",
            "",
            "Send test leads:   .venv/bin/python -m fakes.simulate --leads 5 --rate 2",
            f"Look at them:      curl {base}:{ports.devhost}/api/ops/last-leads?limit=5",
            f"Logs:              {data}/logs/ (the devhost logs here, in this terminal)",
            f"Ctrl-C stops everything (in-flight work gets up to {DRAIN_SECONDS} s).",
            "",
        ]
    )


def run(children: list[Child], banner_text: str = "\nLocal stack is up.\n") -> int:
    """Start the stack, wait for SIGINT/SIGTERM or a dead child, stop it; the exit status (0, or 1 naming a child)."""
    stop = StopSignal()
    stop.install()
    started: list[Child] = []
    status = 0
    try:
        check_ports_free(children)
        for wave in waves(children):
            if stop.requested:
                break
            for child in wave:
                started.append(child)
                launch(child)
            wait_ready(wave, stop)
        if not stop.requested:
            print(banner_text, flush=True)
        while not stop.wait(0.5):
            dead = next((c for c in started if c.process is not None and c.process.poll() is not None), None)
            if dead is not None:
                where = "" if dead.log_path is None else f"; see {dead.log_path}"
                raise StackError(f"{dead.name} exited with status {dead.process.returncode}{where}")  # type: ignore[union-attr]
        print(f"devhost.run: {stop.signal_name} received; stopping the stack", file=sys.stderr, flush=True)
    except StackError as exc:
        print(f"devhost.run: {exc}", file=sys.stderr)
        status = 1
    finally:
        stop_children(started)
        stop.close()
    return status


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost.run", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="where logs, mail and data go (default .devdata)")
    defaults = Ports()
    for name in ("devhost", "graph", "smtp", "blob", "queue", "table", "receiver"):
        parser.add_argument(f"--{name}-port", type=int, default=getattr(defaults, name), metavar="PORT")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: from the repository root, create the data folder's layout, then `run`."""
    args = _parse_args(argv)
    data = args.data_dir.resolve() if args.data_dir else DEVDATA
    ports = Ports(
        args.devhost_port,
        args.graph_port,
        args.smtp_port,
        args.blob_port,
        args.queue_port,
        args.table_port,
        args.receiver_port,
    )
    os.chdir(REPO)
    for directory in (data, data / "logs", data / "mail", data / "azurite", data / "receiver"):
        directory.mkdir(parents=True, exist_ok=True)
    return run(stack(data, ports), banner(data, ports))


if __name__ == "__main__":
    sys.exit(main())

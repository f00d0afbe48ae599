"""Which ports are taken, and by which process: for a one-line "stop it with `kill <pid>`".

On Linux the kernel lists listening TCP sockets in `/proc/net/tcp` and `/proc/net/tcp6` (state
0A, with the socket's inode), and each process's open sockets as `socket:[inode]` links in
`/proc/<pid>/fd`. A process of another user, or a system without `/proc`, gives no pid: the
answer is then "unknown", never an error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Holder:
    """A process that listens on a port: its pid and a short form of its command line."""

    pid: int
    command: str


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def listening_inodes(ports: Iterable[int], proc: Path = PROC) -> dict[int, int]:
    """Socket inode -> port, for every listening TCP socket (IPv4 or IPv6) on one of `ports`."""
    wanted = set(ports)
    found: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != TCP_LISTEN:
                continue
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if port in wanted and fields[9] != "0":
                found[int(fields[9])] = port
    return found


def holders(ports: Iterable[int], proc: Path = PROC) -> dict[int, Holder]:
    """Port -> the process listening on it, for the ports whose process this user can see."""
    inodes = listening_inodes(ports, proc)
    found: dict[int, Holder] = {}
    if not inodes:
        return found
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        for link in _fd_links(entry):
            port = inodes.get(int(link[8:-1])) if link.startswith("socket:[") else None
            if port is not None and (port not in found or int(entry.name) < found[port].pid):
                found[port] = Holder(int(entry.name), command_of(entry))  # shared: lowest pid (the parent)
    return found


def _fd_links(process_dir: Path) -> list[str]:
    """Where the process's open files point; empty for another user's process or one that exited."""
    try:
        fds = list((process_dir / "fd").iterdir())
    except OSError:
        return []
    links = []
    for fd in fds:
        try:
            links.append(os.readlink(fd))
        except OSError:  # closed meanwhile (the listing's own fd, for one)
            continue
    return links


def command_of(process_dir: Path, limit: int = 60) -> str:
    """The process's command line, program by its base name, cut to `limit` characters."""
    try:
        argv = [a.decode(errors="replace") for a in (process_dir / "cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        argv = []
    if not argv:
        return "?"
    line = " ".join([os.path.basename(argv[0]), *argv[1:]])
    return line if len(line) <= limit else line[: limit - 1] + "…"

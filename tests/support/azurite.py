"""Start and stop a real Azurite (npm package in node_modules) on free loopback ports, tied to this process."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devhost.children import spawn_tied
from devhost.defaults import azurite_connection_string
from tests.support.waiting import free_port, port_open, wait_until

REPO = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite"


@dataclass
class Azurite:
    """A running Azurite process and its connection string."""

    process: subprocess.Popen[bytes]
    blob_port: int
    queue_port: int
    table_port: int
    location: str
    owns_location: bool = False

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(blob=self.blob_port, queue=self.queue_port, table=self.table_port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.owns_location:  # a folder it made for itself goes with it
            shutil.rmtree(self.location, ignore_errors=True)


def start_azurite(location: str | None = None) -> Azurite:
    """Start Azurite with blob, queue and table on free ports; wait until all three accept.

    It gets SIGTERM if this process dies without stopping it (`devhost.children.spawn_tied`).
    """
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}; run `npm install` (make test does)")
    where = location or tempfile.mkdtemp(prefix="azurite-")
    blob, queue, table = free_port(), free_port(), free_port()
    process = spawn_tied(
        [
            str(AZURITE_BIN),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--location",
            where,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    azurite = Azurite(process, blob, queue, table, where, owns_location=location is None)
    try:
        wait_until(lambda: all(port_open(p) for p in (blob, queue, table)), timeout=30, what="Azurite ports")
    except AssertionError:
        azurite.stop()
        raise
    return azurite

"""An SMTP sink for local runs: accepts every message on loopback and saves it as an `.eml` file.

Files are named `<UTC timestamp>-<counter>.eml`, so sorting by name is sorting by arrival, and
written atomically (temporary file, then rename) so a reader never sees half a message. The
envelope sender and recipients (including Bcc, which the message itself doesn't show) are added
on top as `X-Envelope-From` and `X-Envelope-To`. No TLS, no AUTH: it is a local test double.

`python -m fakes.smtp_sink [--port 1025] [--dir .devdata/mail]` runs it until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devhost.stop_signal import StopSignal

DEFAULT_PORT = 1025
DEFAULT_DIRECTORY = Path(".devdata/mail")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _SaveToDirectory:
    """aiosmtpd handler: one `.eml` file per accepted message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.refusing = False
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        """Refuse new mail while `refusing` (a server that is down for service), else accept the sender."""
        if self.refusing:
            return "421 4.3.0 Service not available"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def save(self, mail_from: str, recipients: list[str], content: bytes) -> Path:
        """Write the message atomically; the returned path exists and is complete."""
        with self._lock:
            number = next(self._counter)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.directory / f"{stamp}-{number:06d}.eml"
        envelope = f"X-Envelope-From: <{mail_from}>\r\nX-Envelope-To: {', '.join(recipients)}\r\n".encode()
        temporary = self.directory / f".{path.name}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(envelope + content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return path

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        self.save(str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos], bytes(content))
        return "250 Message accepted for delivery"


class SmtpSink:
    """A running-on-demand SMTP server saving every message into `directory`."""

    def __init__(
        self, directory: str | os.PathLike[str] = DEFAULT_DIRECTORY, host: str = "127.0.0.1", port: int = DEFAULT_PORT
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port or _free_port(host)
        self._handler = _SaveToDirectory(self.directory)
        self._controller: Controller | None = None

    def start(self) -> None:
        """Create the directory and listen; returns once the server accepts connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        controller = Controller(self._handler, hostname=self.host, port=self.port, enable_SMTPUTF8=True)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse(self, refusing: bool) -> None:
        """Answer new transactions with 421 (down for service) until called with False; none in flight is cut."""
        self._handler.refusing = refusing

    def messages(self) -> list[Path]:
        """Saved messages, oldest first."""
        return sorted(self.directory.glob("*.eml"))

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the sink until SIGINT/SIGTERM; exit 0."""
    parser = argparse.ArgumentParser(prog="python -m fakes.smtp_sink", description="Local SMTP sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dir", default=str(DEFAULT_DIRECTORY), help="where .eml files go")
    args = parser.parse_args(argv)
    stop = StopSignal()  # its handler takes no lock: a signal at any moment cannot wedge the wait below
    stop.install()
    sink = SmtpSink(args.dir, args.host, args.port)
    try:
        sink.start()
    except OSError as exc:
        print(f"smtp sink: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"SMTP sink on {args.host}:{sink.port}, saving messages to {sink.directory}/", flush=True)
    stop.wait()
    sink.stop()
    stop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m fakes.receiver`: serve the local receiver until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from devhost.stop_signal import StopSignal
from fakes.receiver.server import DEFAULT_DIRECTORY, DEFAULT_PORT, DEFAULT_SECRET, Receiver


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.receiver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--dir", default=str(DEFAULT_DIRECTORY), help="where the .jsonl journals go")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the Standard Webhooks secret (whsec_…)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the receiver; 0 on a clean stop, 1 when it cannot start (port taken, secret not base64)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = StopSignal()  # its handler takes no lock: a signal at any moment cannot wedge the wait below
    stop.install()
    try:
        receiver = Receiver(args.dir, args.host, args.port, args.secret)
        receiver.start()
    except ValueError as exc:
        print(f"receiver: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"receiver: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    routes = "POST /webhook[/<name>], /slack, /teams"
    print(f"Receiver on {receiver.url} ({routes}), journals in {receiver.directory}/", flush=True)
    try:
        stop.wait()
    finally:
        receiver.stop()
        stop.close()
    return 0

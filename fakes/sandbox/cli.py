"""`python -m fakes.sandbox`: serve the sandbox Graph API until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from devhost.stop_signal import StopSignal
from fakes.sandbox.environment import local_environment, page_ids
from fakes.sandbox.server import serve
from fakes.sandbox.state import SandboxGraph
from shared.settings import SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--subscribed", action="store_true", help="start with the app installed on every page")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox with the local settings; 0 on a clean stop, 1 when it cannot start."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        env = local_environment()
    except SettingsError as exc:
        print(f"sandbox graph: {exc}", file=sys.stderr)
        return 1
    sandbox = SandboxGraph(
        access_tokens=[env["FACEBOOK_ACCESS_TOKEN"]],
        app_id=env["FACEBOOK_APP_ID"],
        page_ids=page_ids(env),
        app_secret=env.get("FACEBOOK_APP_SECRET") or None,
        subscribed=args.subscribed,
    )
    stop = StopSignal()  # its handler takes no lock: a signal at any moment cannot wedge the wait below
    stop.install()
    try:
        running = serve(sandbox, args.host, args.port)
    except OSError as exc:
        print(f"sandbox graph: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Sandbox Graph API on {running.url} (pages {', '.join(sandbox.page_ids)})", flush=True)
    try:
        stop.wait()
    finally:
        running.close()
        stop.close()
    return 0

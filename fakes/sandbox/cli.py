"""`python -m fakes.sandbox`: serve the sandbox Graph API until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from devhost.stop_signal import StopSignal
from fakes.sandbox.environment import local_environment, page_ids, page_tokens
from fakes.sandbox.server import serve
from fakes.sandbox.state import SandboxGraph
from shared.settings import SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fakes.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--subscribed", action="store_true", help="start with the app installed on every page")
    parser.add_argument(
        "--page-token",
        action="append",
        default=[],
        type=_page_token,
        metavar="PAGE=TOKEN",
        help="a Page token that serves only that page (repeatable; adds to FACEBOOK_PAGE_TOKEN_{page_id})",
    )
    return parser


def _page_token(text: str) -> tuple[str, str]:
    page_id, _, token = text.partition("=")
    if not page_id.strip().isdigit() or not token.strip():
        raise argparse.ArgumentTypeError(f"expected PAGE=TOKEN with a numeric page id, got {text!r}")
    return page_id.strip(), token.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox with the local settings; 0 on a clean stop, 1 when it cannot start."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        env = local_environment()
    except SettingsError as exc:
        print(f"sandbox graph: {exc}", file=sys.stderr)
        return 1
    tokens = {**page_tokens(env), **dict(args.page_token)}
    pages = page_ids(env)
    pages += sorted(set(tokens) - set(pages))  # a page with its own token is served even if not listed
    sandbox = SandboxGraph(
        access_tokens=[env["FACEBOOK_ACCESS_TOKEN"]],
        app_id=env["FACEBOOK_APP_ID"],
        page_ids=pages,
        app_secret=env.get("FACEBOOK_APP_SECRET") or None,
        subscribed=args.subscribed,
        page_tokens=tokens,
    )
    stop = StopSignal()  # its handler takes no lock: a signal at any moment cannot wedge the wait below
    stop.install()
    try:
        running = serve(sandbox, args.host, args.port)
    except OSError as exc:
        print(f"sandbox graph: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    own = f"; Page tokens for {', '.join(sorted(tokens))}" if tokens else ""
    print(f"Sandbox Graph API on {running.url} (pages {', '.join(sandbox.page_ids)}{own})", flush=True)
    try:
        stop.wait()
    finally:
        running.close()
        stop.close()
    return 0

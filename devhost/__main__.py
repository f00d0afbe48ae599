"""`python -m devhost`: run the function app locally as `func start` would, without Core Tools.

By default it runs the app the way Flex Consumption scales it: one worker process for the HTTP
functions, one per queue-triggered function and one for the timers (`devhost.supervisor`), each with
the Python worker's thread pool (`devhost.worker_pool`). `--single-process` runs everything in this
process instead, which is easier to debug.

Settings are merged once, before the app is imported: process environment over
`local.settings.json` `Values` over the embedded local defaults (`devhost.defaults`), written into
`os.environ`. They are validated with the app's own settings model; a bad one prints its one-line
message and exits 2. Then the app module is imported from the script root, host.json is read, the
functions are listed and served until SIGINT/SIGTERM: exit 0 once in-flight work finished, or 3
when some was still running after `--stop-timeout` seconds (its queue messages reappear later). A
second signal exits at once (130).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.defaults import LOCAL_DEFAULTS
from devhost.host import DRAIN_SECONDS, HTTP_GROUP, FunctionHost
from devhost.invocation import StartupError
from devhost.local_settings import LocalSettingsError, read_local_settings
from devhost.supervisor import Supervisor, signal_ready, worker_command

log = logging.getLogger("devhost")

EXIT_SETTINGS = 2
EXIT_STARTUP = 1
EXIT_DRAIN_TIMEOUT = 3
BACKGROUND_NICE_SETTING = "DEVHOST_BACKGROUND_NICE"


def merge_settings(local_values: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Process environment over `local.settings.json` over the local defaults."""
    return {**LOCAL_DEFAULTS, **local_values, **environ}


def validate_settings() -> str | None:
    """The app's one-line settings error, or None when they are valid (or the app has no settings model)."""
    try:
        from shared.settings import SettingsError, load_settings
    except ModuleNotFoundError as exc:
        if exc.name in ("shared", "shared.settings"):
            log.info("no shared.settings module next to the app; settings are not validated")
            return None
        raise
    try:
        load_settings()
    except SettingsError as exc:
        return str(exc)
    return None


def find_app(module_name: str) -> func.FunctionApp:
    """The `FunctionApp` the module defines (`app`, or the only one among its globals)."""
    module = importlib.import_module(module_name)
    candidate = getattr(module, "app", None)
    if isinstance(candidate, func.FunctionApp):
        return candidate
    found = [v for v in vars(module).values() if isinstance(v, func.FunctionApp)]
    if len(found) != 1:
        raise StartupError(f"module {module_name} defines {len(found)} FunctionApp objects; expected one")
    return found[0]


def read_host_json(script_root: Path) -> dict[str, Any]:
    """host.json of the script root; an absent file means the host defaults."""
    path = script_root / "host.json"
    if not path.is_file():
        log.warning("no host.json in %s; using the host defaults", script_root)
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StartupError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(document, dict):
        raise StartupError(f"{path}: must be a JSON object")
    return document


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: LocalHttpPort or 7071)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP interface (default 127.0.0.1)")
    parser.add_argument("--app", default="function_app", help="module defining the FunctionApp")
    parser.add_argument("--script-root", default=".", help="folder with the app, host.json, local.settings.json")
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="run every function in this process (easier to debug) instead of one worker process per group",
    )
    parser.add_argument("--group", default=None, help=argparse.SUPPRESS)  # a worker of the supervisor
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DRAIN_SECONDS,
        help=f"seconds to wait for in-flight work ({DRAIN_SECONDS:.0f})",
    )
    return parser.parse_args(argv)


def _configure_logging(group: str | None) -> None:
    where = f"[{group}] " if group else ""
    logging.basicConfig(level=logging.INFO, format=f"[%(asctime)s] {where}%(message)s", stream=sys.stderr)
    for noisy in ("azure", "urllib3", "waitress.queue"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Run the devhost; the exit status is 0 after a clean stop, 2 for bad settings, 1 for startup errors."""
    args = _parse_args(argv)
    _configure_logging(args.group)
    root = Path(args.script_root).resolve()
    sys.path[:] = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    os.chdir(root)
    sys.path.insert(0, str(root))
    try:
        local_values, local_port = read_local_settings(root)
    except LocalSettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_SETTINGS
    os.environ.update(merge_settings(local_values, dict(os.environ)))
    problem = validate_settings()
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_SETTINGS
    port = args.port if args.port is not None else (local_port or 7071)
    if args.group not in (None, HTTP_GROUP):
        _lower_priority(os.environ.get(BACKGROUND_NICE_SETTING, ""))
    try:
        host = FunctionHost(find_app(args.app), read_host_json(root), os.environ, args.host, port, root, args.group)
        if args.group is None and not args.single_process and len(host.groups) > 1:
            return _supervise(host, argv if argv is not None else sys.argv[1:], args.stop_timeout)
        host.install_signal_handlers()  # a SIGTERM during start-up stops cleanly too
        host.start()
    except StartupError as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except Exception:
        traceback.print_exc()
        print(f"devhost: importing or indexing {args.app} failed (traceback above)", file=sys.stderr)
        return EXIT_STARTUP
    signal_ready()
    if args.group is None:
        _print_functions(host)
        print(f"Host listening on {host.base_url} (Ctrl-C to stop)", flush=True)
    if not host.serve_forever(args.stop_timeout):
        # An invocation still runs on a pool thread the interpreter would join at exit: do not wait for it.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_DRAIN_TIMEOUT)
    return 0


def _lower_priority(raw: str) -> None:
    """`DEVHOST_BACKGROUND_NICE=N`: run this (queue or timer) worker N nice levels lower than the HTTP worker.

    On one small machine this stands in for Flex Consumption's separate instances, where ingestion
    never takes CPU from the webhook; the benchmarks say when they use it. Off (0) by default.
    """
    if raw.strip().isdigit() and int(raw) > 0:
        os.nice(min(int(raw), 19))


def _print_functions(host: FunctionHost) -> None:
    print("\nFunctions:\n", flush=True)
    for line in host.describe():
        print(f"        {line}\n", flush=True)


def _supervise(host: FunctionHost, argv: list[str], stop_timeout: float) -> int:
    """Run one worker process per group (the default): the app as Flex Consumption scales it."""
    _print_functions(host)
    print(f"Workers: {', '.join(host.groups)} (one process each; --single-process runs them in one)", flush=True)
    return Supervisor(host.groups, worker_command(argv), stop_timeout).run()


if __name__ == "__main__":
    sys.exit(main())

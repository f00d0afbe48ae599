"""The local Functions host: reads an app's registrations once and drives its triggers.

`FunctionHost` takes the `func.FunctionApp`, the parsed host.json and the settings, calls
`app.get_functions()` exactly once, checks every function is something it can run (HTTP, queue
and timer triggers; no output bindings except the HTTP `$return`), and then serves: HTTP routes on
a real server, a receive loop per queue trigger, a thread per timer. Functions disabled with
`AzureWebJobs.<name>.Disabled` are listed but never invoked. Nothing about the app is declared
twice: routes, queues, schedules and their settings all come from the app and host.json.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import azure.functions as func

from devhost import worker_pool
from devhost.http import HttpApp, HttpRoute, HttpServer, route_prefix
from devhost.invocation import HostedFunction, StartupError, is_disabled, resolve_setting_references
from devhost.ncrontab import Schedule, ScheduleError
from devhost.queues import (
    HOST_LEASE_SECONDS,
    QueueListener,
    QueueOptions,
    connection_string,
    poison_queue_name,
    queue_client,
    validate_queue_name,
)
from devhost.stop_signal import StopSignal
from devhost.timers import TimerRunner

__all__ = ["FunctionHost", "StartupError", "group_of"]

log = logging.getLogger("devhost")

HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER = "httpTrigger", "queueTrigger", "timerTrigger"
LEASE_SETTING = "DEVHOST_QUEUE_LEASE_SECONDS"
DRAIN_SECONDS = 25.0  # after a stop request, in-flight invocations get this long by default
HTTP_GROUP, TIMERS_GROUP, QUEUE_GROUP_PREFIX = "http", "timers", "queue:"


def _hosted(function: func.Function, directory: str) -> HostedFunction:
    name = str(function.get_function_name())
    trigger = function.get_trigger()
    if trigger is None:  # pragma: no cover - get_functions() already refuses this
        raise StartupError(f"function {name}: no trigger")
    settings = dict(trigger.get_dict_repr())
    trigger_type = str(settings.get("type") or trigger.type)
    if trigger_type not in (HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER):
        raise StartupError(f"function {name}: trigger type {trigger_type!r} is not supported by the devhost")
    for binding in function.get_bindings():
        if binding is trigger:
            continue
        is_http_return = trigger_type == HTTP_TRIGGER and binding.type == "http" and binding.name == "$return"
        if not is_http_return:
            raise StartupError(
                f"function {name}: binding {binding.name!r} of type {binding.type!r} is not supported by the "
                "devhost (only HTTP, queue and timer triggers and the HTTP $return output are)"
            )
    user_function = function.get_user_function()
    arg_name = str(trigger.name)
    parameters = inspect.signature(user_function).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        if arg_name not in parameters:
            raise StartupError(f"function {name}: the trigger argument {arg_name!r} is not a parameter of the function")
        extra = [
            p.name
            for p in parameters.values()
            if p.name not in (arg_name, "context")
            and p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL,)
        ]
        if extra:
            raise StartupError(f"function {name}: parameters {extra} have no binding")
    return HostedFunction(
        name=name,
        trigger_type=trigger_type,
        trigger=settings,
        user_function=user_function,
        arg_name=arg_name,
        takes_context="context" in parameters,
        directory=directory,
    )


def group_of(function: HostedFunction) -> str:
    """The worker process a function runs in, as Flex Consumption scales them.

    Flex scales the HTTP functions as one group and each queue-triggered function on its own
    instances; the timers run together (devhost choice: Flex has no timer group, each timer is a
    singleton across instances).
    """
    if function.trigger_type == HTTP_TRIGGER:
        return HTTP_GROUP
    if function.trigger_type == QUEUE_TRIGGER:
        return f"{QUEUE_GROUP_PREFIX}{function.name}"
    return TIMERS_GROUP


def _lease_seconds(environ: Mapping[str, str]) -> int:
    raw = environ.get(LEASE_SETTING)
    if raw is None or raw == "":
        return HOST_LEASE_SECONDS
    if not raw.isdigit() or int(raw) < 1:
        raise StartupError(f"setting {LEASE_SETTING} must be a whole number of seconds (>= 1), not {raw!r}")
    return int(raw)


class FunctionHost:
    """Hosts one function app locally: HTTP routes, queue triggers and timers, with clean shutdown."""

    def __init__(
        self,
        app: func.FunctionApp,
        host_json: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 7071,
        script_root: str | os.PathLike[str] = ".",
        group: str | None = None,
    ) -> None:
        """Read the app's functions (calls `app.get_functions()` once) and validate everything.

        Raises `StartupError` naming the function for anything the devhost cannot run exactly
        as Azure would: unsupported triggers or bindings, reserved routes, bad queue names,
        missing connection settings, malformed schedules or host.json values, a bad
        `PYTHON_THREADPOOL_THREAD_COUNT`. With `group` (one of `groups`) it serves only that
        group's functions, as one worker process of a Flex Consumption app; without, all of them.
        """
        self.host_json: Mapping[str, Any] = host_json or {}
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.host = host
        self._requested_port = port
        directory = os.fspath(os.path.abspath(script_root))
        self.functions = tuple(_hosted(f, directory) for f in app.get_functions())
        self.disabled = frozenset(f.name for f in self.functions if is_disabled(f.name, self.environ))
        self.prefix = route_prefix(self.host_json)
        self.queue_options = QueueOptions.from_host_json(self.host_json)
        self._lease = _lease_seconds(self.environ)
        self._active = [f for f in self.functions if f.name not in self.disabled]
        self.groups = list(dict.fromkeys(group_of(f) for f in self._active))
        if group is not None:
            if group not in self.groups:
                raise StartupError(f"no enabled function runs in worker group {group!r} (groups: {self.groups})")
            self._active = [f for f in self._active if group_of(f) == group]
        self.group = group
        try:
            self.pool = worker_pool.configure(self.environ, group or "all")
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.routes = [HttpRoute.of(f) for f in self.functions if f.trigger_type == HTTP_TRIGGER]
        # Like the host, a disabled function's listener settings (connection, schedule) are not read.
        self._queues = {f.name: self._queue_plan(f) for f in self._active if f.trigger_type == QUEUE_TRIGGER}
        self._schedules = {f.name: self._schedule(f) for f in self._active if f.trigger_type == TIMER_TRIGGER}
        self._http_app = HttpApp([r for r in self.routes if r.function.name not in self.disabled], self.prefix)
        self._server: HttpServer | None = None
        self._listeners: list[QueueListener] = []
        self._timers: list[TimerRunner] = []
        self._started = False
        self._stopped = False
        self._stop = StopSignal(on_repeat=_exit_now)

    # -- reading the registrations -------------------------------------------------------------

    def _queue_plan(self, function: HostedFunction) -> tuple[str, str]:
        raw_name = str(function.setting("queueName", ""))
        queue_name = resolve_setting_references(raw_name, self.environ, f"function {function.name}: queue name")
        validate_queue_name(queue_name, function.name)
        return queue_name, connection_string(function.setting("connection"), self.environ, function.name)

    def _schedule(self, function: HostedFunction) -> Schedule:
        try:
            return Schedule.parse(str(function.setting("schedule", "")), self.environ)
        except ScheduleError as exc:
            raise StartupError(f"function {function.name}: {exc}") from None

    # -- what is served ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound HTTP port (the real one when constructed with port 0); only after `start()`."""
        if self._server is None:
            raise RuntimeError("the host is not started")
        return self._server.port

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running HTTP server."""
        return f"http://{self.host}:{self.port}"

    def route_url(self, route: HttpRoute) -> str:
        """The full URL template of an HTTP route, as `func start` prints it."""
        port = self._server.port if self._server else self._requested_port
        path = "/".join(p for p in (self.prefix, route.template.template.strip("/")) if p)
        return f"http://{self.host}:{port}/{path}"

    def describe(self) -> list[str]:
        """One line per function, like the list `func start` prints."""
        routes = {r.function.name: r for r in self.routes}
        lines = []
        for function in self.functions:
            if function.name in self.disabled:
                what = "(disabled)"
            elif function.name in routes:
                route = routes[function.name]
                what = f"{route.describe_methods()} {self.route_url(route)}"
            elif function.name in self._queues:
                queue_name, _ = self._queues[function.name]
                what = f"queue trigger on {queue_name}"
            else:
                schedule = self._schedules[function.name]
                startup = ", also at startup" if function.setting("runOnStartup", False) else ""
                what = f"timer on {schedule}{startup}"
            lines.append(f"{function.name}: {what}")
        return lines

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Create missing queues, then serve HTTP, poll queues and run timers.

        Raises `StartupError` (after undoing what was started) when the HTTP port is taken or a
        queue's storage cannot be reached.
        """
        if self._started:
            raise RuntimeError("the host was already started")
        self._started = True
        try:
            self._start()
        except Exception:
            self.stop(timeout=5)
            raise

    def _start(self) -> None:
        for function in self._active:
            if function.trigger_type != QUEUE_TRIGGER:
                continue
            queue_name, conn_str = self._queues[function.name]
            poison_name = poison_queue_name(queue_name)
            listener = QueueListener(
                function,
                queue_client(conn_str, queue_name),
                queue_client(conn_str, poison_name) if poison_name else None,
                self.queue_options,
                self._lease,
            )
            try:
                listener.prepare()
            except Exception as exc:
                hint = " (is Azurite running? `make run` starts it)" if "127.0.0.1" in conn_str else ""
                problem = f"function {function.name}: queue {queue_name} is not reachable{hint}: {exc}"
                raise StartupError(problem) from None
            self._listeners.append(listener)
        if self.group in (None, HTTP_GROUP):
            # The front end accepts more than the worker runs at once; the worker pool is the narrower limit.
            threads = max(8, self.pool.size)
            self._server = HttpServer(self._http_app, self.host, self._requested_port, threads)
            self._server.start()
            self._log_auth_levels()
        for listener in self._listeners:
            listener.start()
        for function in self._active:
            if function.trigger_type == TIMER_TRIGGER:
                runner = TimerRunner(function, self._schedules[function.name], bool(function.setting("runOnStartup")))
                self._timers.append(runner)
                runner.start()
        served = len(self._active) if self.group else len(self.functions)
        where = f" in worker {self.group}" if self.group else ""
        log.info("Host started%s: %d function(s), %d disabled", where, served, len(self.disabled))

    def _log_auth_levels(self) -> None:
        keyed = [r for r in self.routes if r.function.name not in self.disabled and r.auth_level != "anonymous"]
        if keyed:
            listed = ", ".join(f"{r.function.name} ({r.auth_level})" for r in keyed)
            log.info("Auth levels are not enforced locally (as with Core Tools); in Azure these need a key: %s", listed)

    def stop(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Stop accepting HTTP and receiving messages, then wait up to `timeout` s for running invocations.

        Returns True when everything finished in time. A queue message still running at the
        deadline is not lost: it stays on its queue and reappears when its lease ends.
        """
        if self._stopped:
            return True
        self._stopped = True
        self._stop.request()
        deadline = time.monotonic() + timeout
        if self._server is not None:
            self._server.stop_accepting()
        for listener in self._listeners:
            listener.request_stop()
        for runner in self._timers:
            runner.request_stop()
        finished = True
        in_flight = sum(listener.in_flight for listener in self._listeners)
        for listener in self._listeners:
            finished = listener.join(deadline) and finished
        for runner in self._timers:
            finished = runner.join(deadline) and finished
        if self._server is not None:
            finished = self._server.close(deadline) and finished
        try:
            self.pool.write()
        except OSError:
            log.warning("worker figures not written to %s", self.pool.stats_file)
        if not finished:
            log.warning("Stopped with invocations still running; unfinished queue messages will reappear")
        if finished:
            log.info("Queue drained: %d in-flight invocation(s) finished, nothing left running", in_flight)
        log.info("Host stopped")
        return finished

    def serve_forever(self, timeout: float = DRAIN_SECONDS) -> bool:
        """Start (if needed) and serve until SIGINT/SIGTERM or `request_stop()`, then `stop(timeout)`.

        On the main thread, SIGINT/SIGTERM are handled here (see `install_signal_handlers`) and
        the handlers are put back on return.
        """
        self.install_signal_handlers()
        try:
            if not self._started and not self._stop.requested:
                self.start()
            self._stop.wait()
            if self._stop.signum is not None:
                log.info(
                    "%s received: stopping (in-flight invocations get up to %.0f s to finish)",
                    self._stop.signal_name,
                    timeout,
                )
            return self.stop(timeout)
        finally:
            self._stop.close()

    def install_signal_handlers(self) -> bool:
        """SIGINT/SIGTERM request a clean stop; install before `start()` so no signal arrives unhandled.

        A second signal exits at once without waiting. The handler only records the signal (see
        `devhost.stop_signal`). Returns False when already installed or not on the main thread.
        """
        return self._stop.install()

    def request_stop(self) -> None:
        """Make `serve_forever` return (after a clean stop); safe from any thread."""
        self._stop.request()

    def __enter__(self) -> FunctionHost:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _exit_now(signum: int) -> None:
    """A second SIGINT/SIGTERM: exit without waiting (from the signal handler: no lock, no logging)."""
    os.write(2, f"devhost: second {signal.Signals(signum).name}: exiting without waiting\n".encode())
    os._exit(130)

"""One registered function as the devhost runs it, and the single way every trigger invokes it.

`HostedFunction` is read once from a `azure.functions` `Function` (name, trigger settings as the
trigger's own dict, the user callable). `invoke` calls it the way the Python worker does: the
trigger value passed by the trigger's argument name, a `func.Context` when the function asks for
`context`, `async def` functions run to completion, and Core Tools style "Executing/Executed" log
lines around it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

from devhost import worker_pool

log = logging.getLogger("devhost")

_SETTING = re.compile(r"%([^%\s]+)%")


class StartupError(RuntimeError):
    """The app cannot be hosted as registered (unsupported binding, bad setting, bad host.json)."""


@dataclass(frozen=True)
class HostedFunction:
    """A registered function: its name, trigger type, trigger settings, callable and argument name."""

    name: str
    trigger_type: str
    trigger: Mapping[str, Any]
    user_function: Callable[..., Any]
    arg_name: str
    takes_context: bool
    directory: str = "."

    def setting(self, key: str, default: Any = None) -> Any:
        """A trigger setting by its function.json (camelCase) key."""
        value = self.trigger.get(key)
        return default if value is None else value


class _TraceContext(TraceContext):
    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The `context` argument: invocation id, function name and directory, empty trace/retry data."""

    _thread_local = threading.local

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return _TraceContext()

    @property
    def retry_context(self) -> RetryContext:
        return _RetryContext()


def invoke(function: HostedFunction, trigger_value: Any, reason: str) -> Any:
    """Call the user function once with `trigger_value`; return its result or re-raise its exception.

    The exception is logged here with its traceback (once), so callers only add their own context.
    """
    invocation_id = str(uuid.uuid4())
    kwargs: dict[str, Any] = {function.arg_name: trigger_value}
    if function.takes_context:
        kwargs["context"] = InvocationContext(invocation_id, function.name, function.directory)
    log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id)
    started = time.monotonic()
    try:
        with worker_pool.current().slot(function.name):  # the worker's thread pool: beyond it, invocations wait
            result = function.user_function(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
    except BaseException:
        elapsed = round((time.monotonic() - started) * 1000)
        log.exception("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", function.name, invocation_id, elapsed)
        raise
    elapsed = round((time.monotonic() - started) * 1000)
    log.info("Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", function.name, invocation_id, elapsed)
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def resolve_setting_references(text: str, environ: Mapping[str, str], what: str) -> str:
    """Replace each `%NAME%` in a binding value with the setting's value; a missing one is a `StartupError`."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise StartupError(f"{what} {text!r} refers to setting {name}, which is not set")
        return environ[name]

    return _SETTING.sub(lookup, text)


def is_disabled(function_name: str, environ: Mapping[str, str]) -> bool:
    """Whether `AzureWebJobs.<name>.Disabled` (or its `_`-separated form) is `true` or `1`."""
    for key in (f"AzureWebJobs.{function_name}.Disabled", f"AzureWebJobs_{function_name}_Disabled"):
        if environ.get(key, "").strip().lower() in ("true", "1"):
            return True
    return False

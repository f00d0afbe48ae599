"""OpenTelemetry to Application Insights: switched on by two app settings, imported only then.

On when `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY` is `true` and
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set; otherwise nothing here imports OpenTelemetry or
the Azure Monitor distro, and every helper is a no-op. The same switch tells Azure's Python
worker to configure the distro (`configure_azure_monitor`) before it imports the app, and to
make each invocation's span (from the host, in `"telemetryMode": "OpenTelemetry"`) the current
one. `setup_telemetry` then only adds what the distro lacks: spans for SQL statements (DB-API
instrumentation of pyodbc, or sqlite3 locally). Where nothing configured it (the devhost), it
calls `configure_azure_monitor` itself, once. The distro's own instrumentations make Graph
calls (`requests`) and Storage calls (azure-core) dependencies, and turn log records into
traces whose `extra` dimensions are customDimensions.

Storage queue messages carry no trace context of their own (the host starts a new operation
for each queue-triggered invocation), so our messages carry it: `current_traceparent` is the
W3C `traceparent` to put on a message, and `continue_trace` runs a queue-triggered function in
a span whose parent is the message's trace, linked to the host's invocation. One lead's
webhook, ingestion and email are then one operation.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

ENABLE_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# Read from the environment at import (before the settings are loaded), hence not in shared/settings.py.
SETTINGS = (ENABLE_SETTING, CONNECTION_SETTING)
TRACER_NAME = "lead-monitoring-agent"
TRACEPARENT = "traceparent"
QUIET_LOGGERS = ("azure", "urllib3")

log = logging.getLogger(__name__)
_active = {"on": False}


def telemetry_requested(values: Mapping[str, str]) -> bool:
    """True when the settings switch OpenTelemetry on: the flag is `true` and a connection string is set."""
    return values.get(ENABLE_SETTING, "").strip().lower() == "true" and bool(values.get(CONNECTION_SETTING, "").strip())


def telemetry_on() -> bool:
    """True once `setup_telemetry` switched OpenTelemetry on in this process."""
    return _active["on"]


def setup_telemetry(
    environ: Mapping[str, str] | None = None,
    span_processors: Sequence[Any] = (),
    log_record_processors: Sequence[Any] = (),
    **distro_options: Any,
) -> bool:
    """Switch OpenTelemetry on when the settings ask for it; return whether it is on.

    Idempotent, and never raises: a telemetry problem is logged and the app runs without it.
    `span_processors`, `log_record_processors` and `distro_options` (keywords of
    `configure_azure_monitor`) apply only when it configures the distro itself (tests pass
    in-memory exporters); a provider the worker configured is left as it is.
    """
    values = os.environ if environ is None else environ
    if _active["on"] or not telemetry_requested(values):
        return _active["on"]
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        if not isinstance(trace.get_tracer_provider(), TracerProvider):  # the worker did not configure it
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(
                connection_string=values[CONNECTION_SETTING],
                span_processors=list(span_processors),
                log_record_processors=list(log_record_processors),
                **distro_options,
            )
        _instrument_sql(values)
    except Exception as exc:  # no telemetry is better than no app
        log.warning("OpenTelemetry not switched on: %s: %s", type(exc).__name__, exc)
        return False
    _quiet_sdk_loggers()
    _active["on"] = True
    return True


def _quiet_sdk_loggers() -> None:
    """The Azure SDKs and urllib3 log every HTTP request and response at INFO: two traces per call.

    With the worker exporting logs itself, host.json's log levels no longer filter them, so
    those loggers go to WARNING here unless something set their level already.
    """
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _instrument_sql(values: Mapping[str, str]) -> None:
    """Every statement through the store's DB-API driver becomes a span (db.system mssql or sqlite).

    Statement text only, never parameters (`capture_parameters` stays off), so no lead data.
    pyodbc is imported here only when the store is Azure SQL.
    """
    from opentelemetry.instrumentation.dbapi import trace_integration

    driver, system = ("pyodbc", "mssql") if values.get("STORE_BACKEND", "sqlite") == "mssql" else ("sqlite3", "sqlite")
    module: Any = importlib.import_module(driver)
    trace_integration(module, "connect", system)  # wraps module.connect, so every new connection is traced


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, for a queue message; None when telemetry is off."""
    if not _active["on"]:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get(TRACEPARENT)


def message_traceparent(body: bytes) -> str | None:
    """The `traceparent` a queue message body (JSON object) carries, if any."""
    try:
        value = json.loads(body).get(TRACEPARENT)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) else None


@contextmanager
def continue_trace(body: bytes, name: str, queue: str) -> Iterator[None]:
    """Run a queue-triggered function's work in the trace its message carries.

    A consumer span named `name`: its parent is the message's `traceparent`, and it links the
    host's invocation span (a message without one gets the invocation as parent). Logs, SQL,
    Graph and Storage calls inside are its children. Does nothing when telemetry is off.
    """
    if not _active["on"]:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract
    from opentelemetry.trace import Link, SpanKind

    invocation = trace.get_current_span().get_span_context()
    traceparent = message_traceparent(body)
    parent = extract({TRACEPARENT: traceparent}) if traceparent else None
    with trace.get_tracer(TRACER_NAME).start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(invocation)] if parent is not None and invocation.is_valid else [],
        attributes={"messaging.operation": "process", "messaging.destination.name": queue},
    ):
        yield

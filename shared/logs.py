"""Structured, PII-free logging: every record carries its dimensions in the message and as `extra`.

Application Insights gets the message text of every trace (with or without OpenTelemetry), so
the dimensions are appended as JSON (`… | {"stage": "ingest", "outcome": "stored", …}`) and
also set as attributes of the log record (`extra`): with OpenTelemetry on (shared/telemetry.py)
each one becomes a key of the trace's customDimensions (`customDimensions.stage`, …). Only the
names in `DIMENSIONS` pass: ids, stages, outcomes and counts, never lead data or secrets. The
invocation id and queue message id come from `log_context`, set by each trigger.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

DIMENSIONS = frozenset(
    {
        "invocation_id",
        "function",
        "queue_message_id",
        "dequeue_count",
        "facebook_lead_id",
        "page_id",
        "form_id",
        "stage",
        "outcome",
        "attempt",
        "delay_seconds",
        "error_type",
        "kind",
        "count",
        "queued",
        "ignored",
        "leads",
        "slot",
        "moved",
        "already_recorded",
        "purged",
        "dead_letters_open",
        "forms_checked",
        "leads_seen",
        "missing_found",
        "enqueued",
        "already_queued",
        "held_back_seconds",
        "graph_calls",
        "checkpoints",
        "pages",
        "store_backend",
        "email_sender",
        "graph_version",
        "source",
        "latency_ms",
        "created_to_stored_ms",
        "speed_to_lead_ms",
        "token_expires_at",
        "webhook_to_stored_ms",
    }
)
_context: ContextVar[dict[str, Any]] = ContextVar("log_context", default={})  # noqa: B039 - never mutated


@contextmanager
def log_context(**dimensions: Any) -> Iterator[None]:
    """Add dimensions (invocation id, queue message id …) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in dimensions.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class StructuredLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose `extra` dimensions (allow-listed) and context end up in the message and the record."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        given = kwargs.pop("extra", None) or {}
        dimensions = {k: v for k, v in {**_context.get(), **given}.items() if k in DIMENSIONS and v is not None}
        if dimensions:
            msg = f"{msg} | {json.dumps(dimensions, sort_keys=True, default=str)}"
        kwargs["extra"] = dimensions
        return msg, kwargs


def get_logger(name: str) -> StructuredLogger:
    """The module logger to use everywhere in `shared/` and `functions/`."""
    return StructuredLogger(logging.getLogger(name), {})

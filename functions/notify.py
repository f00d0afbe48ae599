"""Notifications: the `notifications` queue trigger, the outbox flush and the daily digest timer."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func

from shared.logs import get_logger, log_context
from shared.notify.consumer import handle_notification
from shared.notify.types import Sent
from shared.ops.outbox import flush, queue_daily_digest
from shared.storage.names import NOTIFICATIONS_QUEUE
from shared.telemetry import continue_trace
from wiring import get_services

bp = func.Blueprint()
log = get_logger(__name__)


@bp.function_name("send_notification")
@bp.queue_trigger(arg_name="msg", queue_name=NOTIFICATIONS_QUEUE, connection="AzureWebJobsStorage")
def send_notification(msg: func.QueueMessage, context: func.Context) -> None:
    """Send one lead email, alert or digest: exactly once, within the caps, or dead-lettered."""
    with (
        log_context(invocation_id=context.invocation_id, queue_message_id=msg.id, dequeue_count=msg.dequeue_count),
        continue_trace(msg.get_body(), "send_notification", NOTIFICATIONS_QUEUE),
    ):
        services = get_services()
        services.idle.touch()  # a notification moved: the outbox flush queries again (idle mode)
        outcome = handle_notification(msg.get_body(), services.notify_deps())
        leads = outcome.result.leads if isinstance(outcome.result, Sent) else 0
        log.info("notify: %s", outcome.outcome, extra={"stage": "notify", "outcome": outcome.outcome, "leads": leads})


@bp.function_name("flush_outbox")
@bp.timer_trigger(arg_name="timer", schedule="15 * * * * *", run_on_startup=False, use_monitor=False)
def flush_outbox_timer(timer: func.TimerRequest) -> None:
    """Queue outbox rows that never got their message (alerts, and leads after a crash)."""
    queued = flush(get_services().outbox(), datetime.now(UTC))
    if queued:
        log.warning("outbox: queued %d notifications", queued, extra={"stage": "notify", "outcome": "flushed"})


@bp.function_name("daily_digest")
@bp.timer_trigger(arg_name="timer", schedule="%DIGEST_SCHEDULE%", run_on_startup=False, use_monitor=True)
def daily_digest(timer: func.TimerRequest) -> None:
    """Queue today's digest once (the outbox key is the UTC date)."""
    queue_daily_digest(get_services().outbox(), datetime.now(UTC))

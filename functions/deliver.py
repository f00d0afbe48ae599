"""Queue trigger on `deliveries`: send one lead, alert or stage to a webhook, Slack, Teams or the Conversions API."""

from __future__ import annotations

import azure.functions as func

from shared.deliver.consumer import handle_delivery
from shared.logs import get_logger, log_context
from shared.storage.names import DELIVERIES_QUEUE
from shared.telemetry import continue_trace
from wiring import get_services

bp = func.Blueprint()
log = get_logger(__name__)


@bp.function_name("deliver")
@bp.queue_trigger(arg_name="msg", queue_name=DELIVERIES_QUEUE, connection="AzureWebJobsStorage")
def deliver(msg: func.QueueMessage, context: func.Context) -> None:
    """Each delivery ends delivered once, waiting for its next attempt, or failed with its reason (replayable)."""
    with (
        log_context(invocation_id=context.invocation_id, queue_message_id=msg.id, dequeue_count=msg.dequeue_count),
        continue_trace(msg.get_body(), "deliver", DELIVERIES_QUEUE),
    ):
        outcome = handle_delivery(msg.get_body(), get_services().deliver_deps())
        log.info("deliver: %s", outcome.outcome, extra={"stage": "deliver", "outcome": outcome.outcome})

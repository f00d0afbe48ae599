"""Queue trigger on `leads-inbound`: run the ingestion pipeline for one lead change."""

from __future__ import annotations

import azure.functions as func

from shared.ingest.consumer import ingest_lead_message
from shared.ingest.pipeline import Ingested
from shared.logs import get_logger, log_context
from shared.storage.names import LEADS_QUEUE
from shared.telemetry import continue_trace
from wiring import get_services

bp = func.Blueprint()
log = get_logger(__name__)


@bp.function_name("ingest_lead")
@bp.queue_trigger(arg_name="msg", queue_name=LEADS_QUEUE, connection="AzureWebJobsStorage")
def ingest_lead(msg: func.QueueMessage, context: func.Context) -> None:
    """Each message ends stored, duplicate, re-queued with a delay, or dead-lettered with its reason."""
    with (
        log_context(invocation_id=context.invocation_id, queue_message_id=msg.id, dequeue_count=msg.dequeue_count),
        continue_trace(msg.get_body(), "ingest_lead", LEADS_QUEUE),
    ):
        services = get_services()
        services.idle.touch()  # a lead moved: the timers query the database again (idle mode)
        outcome = ingest_lead_message(msg.get_body(), services.ingest_deps())
        message = outcome.message
        extra = {
            "stage": "ingest",
            "outcome": outcome.outcome,
            "facebook_lead_id": message.facebook_lead_id if message else None,
            "source": message.source if message else None,
        }
        timings = outcome.result.dimensions() if isinstance(outcome.result, Ingested) else {}
        log.info("ingest: %s", outcome.outcome, extra={**extra, "attempt": outcome.attempt, **timings})

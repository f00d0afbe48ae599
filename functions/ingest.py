"""Queue trigger on `leads-inbound`: run the ingestion pipeline for one lead change."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.ingest.pipeline import ingest_lead_message
from shared.queues.names import LEADS_QUEUE
from shared.services import get_services

bp = func.Blueprint()
log = logging.getLogger(__name__)


@bp.function_name("ingest_lead")
@bp.queue_trigger(arg_name="msg", queue_name=LEADS_QUEUE, connection="AzureWebJobsStorage")
def ingest_lead(msg: func.QueueMessage) -> None:
    """Each message ends stored, duplicate, re-queued with a delay, or dead-lettered with its reason."""
    result = ingest_lead_message(msg.get_body(), get_services().ingest_deps())
    log.info(
        "ingest: %s",
        result.outcome,
        extra={
            "stage": "ingest",
            "outcome": result.outcome,
            "facebook_lead_id": result.facebook_lead_id,
            "queue_message_id": msg.id,
            "dequeue_count": msg.dequeue_count,
            "attempt": result.attempt,
        },
    )

"""The `leads-inbound` consumer: one message body in, one outcome out (stored, duplicate, retrying, dead-lettered).

The queue trigger calls `ingest_lead_message`; the message processor parses the body at the edge
and gives every failure its outcome; `shared/ingest/pipeline.py` holds the domain steps. As in
Powertools' batch utilities, the record handler and the processor meet here, once.
"""

from __future__ import annotations

from functools import partial

from shared.ingest.pipeline import IngestDeps, ingest_lead
from shared.messaging.messages import LeadMessage
from shared.messaging.processor import Consumer, Handled, Outcome, process
from shared.storage.names import LEADS_QUEUE


def ingest_lead_message(body: bytes, deps: IngestDeps) -> Outcome[LeadMessage, Handled]:
    """Ingest one queue message body (already base64-decoded by the host); at most one row per lead id.

    Only `QueueUnavailable` escapes (while re-queuing or dead-lettering): the host retries the message.
    """
    consumer = Consumer(LEADS_QUEUE, "ingest", "lead message", deps.policy, deps.sender, deps.store, deps.rng)
    return process(body, LeadMessage, partial(ingest_lead, deps=deps), consumer)

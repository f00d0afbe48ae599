"""The dead-letter sweep: move every poison-queue message into `failed_events`, purge old rows.

Poison messages expire after 7 days and the host's own copies carry no reason, so the sweep
keeps each one as a `failed_events` row (reason, attempts, payload, first/last failure) for
`FAILED_EVENTS_RETENTION_DAYS`, and deletes the queue message only after its row is committed.
Our own dead letters are recorded once even if the pipeline already wrote their row.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import QueueUnavailable, TransientError
from shared.logs import get_logger
from shared.storage.connection import StorageTarget, storage_target
from shared.storage.names import DELIVERIES_QUEUE, LEADS_QUEUE, NOTIFICATIONS_QUEUE, poison_queue
from shared.store import Store
from shared.store.failed_events import FailedEvent

log = get_logger(__name__)

STAGES = {LEADS_QUEUE: "ingest", NOTIFICATIONS_QUEUE: "notify", DELIVERIES_QUEUE: "deliver"}
HOST_MOVE_REASON = "failed every invocation the host allowed (moved to the poison queue by the Functions host)"


@dataclass
class SweepReport:
    """What one sweep did."""

    moved: int = 0
    already_recorded: int = 0
    purged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"moved": self.moved, "already_recorded": self.already_recorded, "purged": self.purged}


def decode_message_text(content: str) -> str:
    """Queue text is base64 (as the host writes it); plain text is accepted too."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return content


def failed_event_from_poison(queue: str, message_id: str, text: str, dequeue_count: int | None) -> FailedEvent:
    """The `failed_events` row for one poison message: our envelope, or the host's bare copy."""
    document: Any
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    poison = poison_queue(queue)
    if isinstance(document, dict) and isinstance(document.get("dead_letter"), dict):
        info = document["dead_letter"]
        replay = document.get("message")
        payload = json.dumps(replay) if isinstance(replay, dict) and "facebook_lead_id" in replay else text
        return FailedEvent(
            queue=poison,
            stage=str(info.get("stage", STAGES.get(queue, "ingest"))),
            error=str(info.get("reason", "dead letter"))[:1000],
            attempts=int(info.get("attempts") or 0),
            payload=payload,
            facebook_lead_id=info.get("facebook_lead_id"),
            failed_at=_time(info.get("failed_at")),
            dead_letter_id=str(info.get("id") or f"poison-{message_id}"),
        )
    lead_id = document.get("facebook_lead_id") if isinstance(document, dict) else None
    return FailedEvent(
        queue=poison,
        stage=STAGES.get(queue, "ingest"),
        error=HOST_MOVE_REASON,
        attempts=int(dequeue_count or 0),
        payload=text,
        facebook_lead_id=str(lead_id) if lead_id else None,
        dead_letter_id=f"poison-{message_id}",
    )


def sweep_poison_queues(
    storage: str | StorageTarget,
    store: Store,
    queues: Sequence[str] = (LEADS_QUEUE, NOTIFICATIONS_QUEUE, DELIVERIES_QUEUE),
    retention_days: int = 30,
    timeout_seconds: float = 5.0,
    max_messages: int = 1000,
    purge: bool = True,
) -> SweepReport:
    """Move up to `max_messages` poison messages into `failed_events`, then purge expired rows (if `purge`).

    Empty poison queues cost no database query; the purge is one.
    """
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    report = SweepReport()
    target = storage_target(storage)
    for queue in queues:
        client = target.queue_client(
            poison_queue(queue), connection_timeout=timeout_seconds, read_timeout=timeout_seconds
        )
        try:
            while report.moved + report.already_recorded < max_messages:
                batch = list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=60))
                if not batch:
                    break
                for message in batch:
                    text = decode_message_text(str(message.content))
                    event = failed_event_from_poison(queue, str(message.id), text, message.dequeue_count)
                    if store.failed_events.record_failed_event(event):
                        report.moved += 1
                    else:
                        report.already_recorded += 1
                    client.delete_message(message)
        except ResourceNotFoundError:
            continue
        except AzureError as exc:
            raise QueueUnavailable(f"poison queue {poison_queue(queue)} unavailable: {type(exc).__name__}") from exc
    if not purge:
        return report
    try:
        report.purged = store.failed_events.purge_failed_events(datetime.now(UTC) - timedelta(days=retention_days))
    except TransientError:
        log.warning("sweep: purge skipped (store unavailable)")
    if report.moved or report.purged:
        log.warning("sweep: dead letters recorded", extra={"stage": "sweep", **report.as_dict()})
    return report


def _time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)

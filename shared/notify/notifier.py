"""Send what the outbox holds, exactly once, within the sender's limits: the `notifications` record handler.

Each `notifications` message names one thing to announce (a lead, an alert, a digest). The
notifier reserves a sending slot and claims the notification (`compose.prepare`: the unique key
decides; a second claim fails), and for a lead also every other pending lead for the same
recipients, so a burst becomes a few grouped emails. Failures: the sender's 429 / Retry-After →
wait; transient → retry with exponential backoff, `NOTIFY_MAX_ATTEMPTS` in all; permanent or
exhausted → dead letter on `notifications-poison` and a `failed_events` row, while the lead stays
stored.

The claim turns `sending` right before the provider call, and only while this caller still holds
every key it claimed (a claim that went stale and was taken over sends nothing: `superseded`). The
claim id is the send's idempotency key, so a provider that supports it (ACS) recognises its own
repeats. After the provider accepted an email, the `sent` record is written (`outbox.record_sent`),
so a database outage never causes a second email. When the provider may have the email but its
outcome is unknown (a status poll timed out), the claim stays `sending` and the message looks again
later; a claim stuck in `sending` is settled by `stuck.settle_stuck`.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime

from shared.errors import LeadAgentError, PermanentError, StoreUnavailable, TransientError
from shared.logs import get_logger
from shared.messaging.messages import NotificationMessage
from shared.messaging.processor import Handled, LookAgain
from shared.notify.base import SenderThrottled, SendOutcomeUnknown
from shared.notify.compose import Prepared, give_back_slot, prepare, release_quietly
from shared.notify.outbox import mark_sent, record_sent
from shared.notify.stuck import outcome_unknown, settle_stuck
from shared.notify.types import IN_PROGRESS_RECHECK_SECONDS, STORE_RECHECK_SECONDS, NotifyDeps, Sent, StoreAway
from shared.store.leads import StoredLead
from shared.store.outbox import STALE_CLAIM

log = get_logger(__name__)


def handle(message: NotificationMessage, deps: NotifyDeps) -> Handled | LookAgain:
    """The record handler of the `notifications` consumer (`shared/notify/consumer.py`): one notification.

    The outcome's word: `sent`, `recorded` (a stuck send had gone out), `duplicate`, `skipped`;
    looked at again later: `waiting` (cap, database away), `throttled`, `in_progress`, `superseded`.
    """
    try:
        return _handle(message, deps)
    except StoreUnavailable as exc:  # the database is away: wait without using an attempt
        return StoreAway("waiting", STORE_RECHECK_SECONDS, f"StoreUnavailable: {exc}"[:300])


def _handle(message: NotificationMessage, deps: NotifyDeps) -> Handled | LookAgain:
    if message.receipt is not None:
        receipt = message.receipt
        mark_sent(deps, message, receipt.claim_id, receipt.keys, receipt.provider_id)
        return Sent("sent", reason="receipt recorded")
    channel = deps.sender.name
    state = deps.store.outbox.notification_state(message.key, message.kind, channel)
    if state is not None:
        status, claim_id, claimed_at = state.status, state.claim_id, state.claimed_at
        if status == "sent":
            return Handled("duplicate")
        if status == "claimed" and deps.clock() - claimed_at <= STALE_CLAIM:
            return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS)
        if status == "sending":
            if deps.clock() - claimed_at <= deps.stuck_after:
                return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS)
            settled = settle_stuck(message, deps, claim_id)
            if not isinstance(settled, NotificationMessage):
                return settled
            message = settled
    announced: list[StoredLead] = []  # the leads the email carries, as rendered
    prepared = prepare(message, deps, channel, announced)
    if not isinstance(prepared, Prepared):
        return prepared
    email, keys, claim_id, slot = prepared.email, prepared.keys, prepared.claim_id, prepared.slot
    try:
        held = set(deps.store.outbox.begin_send(claim_id)) == set(keys)
    except StoreUnavailable:
        release_quietly(deps, claim_id)
        raise
    if not held:
        return _superseded(message, deps, claim_id, slot)
    try:
        provider_id = deps.sender.send(email)
    except SenderThrottled as exc:
        deps.store.outbox.release_claim(claim_id)
        return LookAgain("throttled", max(exc.retry_after, 1.0), str(exc))
    except SendOutcomeUnknown as exc:
        return outcome_unknown(message, deps, exc)
    except (TransientError, PermanentError) as exc:
        _give_back(message, deps, channel, claim_id, exc)
        raise
    record_sent(deps, message, claim_id, keys, provider_id)
    now = datetime.now(UTC)
    latency = None if not announced else round((now - min(row.stored_at for row in announced)).total_seconds() * 1000)
    # Per lead, Meta's created_time to the provider's acceptance: docs/queries.kql 13 (no lead data, durations only).
    speed = [round((now - row.created_time).total_seconds() * 1000) for row in announced]
    dims = {"stage": "notify", "outcome": "sent", "kind": message.kind, "leads": len(keys), "latency_ms": latency}
    if speed:
        dims["speed_to_lead_ms"] = speed
    log.info("notify: sent", extra=dims)
    return Sent("sent", emails=1, leads=len(keys) if message.kind == "lead" else 0)


def _give_back(
    message: NotificationMessage, deps: NotifyDeps, channel: str, claim_id: str, exc: LeadAgentError
) -> None:
    """A send failed: give the claim back; when no retry follows, keep the notification as `failed` first."""
    if isinstance(exc, PermanentError) or deps.policy.exhausted(message.attempt):
        reason = f"{type(exc).__name__}: {exc}"[:500]
        deps.store.outbox.mark_notification_failed(
            claim_id, message.key, message.kind, channel, reason, message.attempt + 1
        )
    deps.store.outbox.release_claim(claim_id)  # the rest of the group goes back to pending; a failed row stays


def _superseded(message: NotificationMessage, deps: NotifyDeps, claim_id: str, slot: str) -> LookAgain:
    """The claim went stale and another instance took it (or one of its leads) before the send began.

    Nothing is sent: what this claim still holds and its sending slot are given back, and the message
    looks again later (by then sent by the other holder, or claimable again).
    """
    give_back_slot(deps, claim_id, slot)
    with suppress(LeadAgentError):
        deps.store.audit("notification_superseded", None, {"kind": message.kind, "key": message.key})
    log.warning("notify: claim taken over before the send", extra={"stage": "notify", "outcome": "superseded"})
    return LookAgain("superseded", IN_PROGRESS_RECHECK_SECONDS, "claim taken over before the send")

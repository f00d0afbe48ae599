"""Send what the outbox holds, exactly once, within the sender's limits.

Each `notifications` message names one thing to announce (a lead, an alert, a digest). The
notifier reserves a sending slot (per-minute and per-hour caps shared by every instance), claims
the notification in `notification_log` (the unique key decides; a second claim fails), and for
a lead also claims every other pending lead for the same recipients, so a burst becomes a few
grouped emails. Failures: the sender's 429 / Retry-After → wait; transient → retry with
exponential backoff, `NOTIFY_MAX_ATTEMPTS` in all; permanent or exhausted → dead letter on
`notifications-poison` and a `failed_events` row, while the lead stays stored.

The claim turns `sending` right before the provider call, and only while this caller still holds
every key it claimed (a claim that went stale and was taken over sends nothing: `superseded`). The
claim id is the send's idempotency key, so a provider that supports it (ACS) recognises its own
repeats. After the provider accepted an email, the `sent` record is written with a few quick
retries; if the database is still away, a receipt message on the queue writes it later, so a
database outage never causes a second email. When the provider may have the email but its outcome
is unknown (a status poll timed out), the claim stays `sending` and the message looks again later.

A claim left in `sending` past `stuck_after` (its process died, or the outcome was unknown) is
settled by asking the sender what became of it, when it can tell (ACS): sent → recorded, nothing
sent again; still running → wait; never had it or failed → sent again. A sender that cannot tell
(SMTP) sends again marked "(resent)" in the subject: a lead is never left unannounced, at the
price of a rare, labelled repeat.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from shared.errors import LeadAgentError, PermanentError, StoreUnavailable, TransientError
from shared.logs import get_logger
from shared.messaging.messages import NotificationKind, NotificationMessage, Receipt
from shared.messaging.processor import Consumer, Handled, LookAgain, Outcome, process
from shared.messaging.retry import RetryPolicy
from shared.messaging.sender import QueueSender
from shared.notify.base import EmailSender, OutcomeLookup, OutgoingEmail, SenderThrottled, SendOutcomeUnknown
from shared.notify.models import AlertData, LeadSummary
from shared.notify.recipients import Recipients
from shared.notify.templates import RenderedEmail, render_alert, render_lead_email
from shared.storage.names import NOTIFICATIONS_QUEUE
from shared.store import Store
from shared.store.leads import StoredLead
from shared.store.outbox import STALE_CLAIM, PendingLead

log = get_logger(__name__)

IN_PROGRESS_RECHECK_SECONDS = 30.0
STORE_RECHECK_SECONDS = 15.0
STUCK_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class NotifyPolicy(RetryPolicy):
    """The retry ladder of sends plus the sending caps (from settings)."""

    max_attempts: int = 4
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 900.0
    per_minute: int = 5
    per_hour: int = 10
    max_group: int = 50


@dataclass
class NotifyDeps:
    """What the notifier needs; tests pass a real SQLite store, Azurite and an SMTP server."""

    store: Store
    sender: EmailSender
    queues: QueueSender
    recipients: Recipients
    tz: tzinfo
    policy: NotifyPolicy
    form_name: Callable[[str], str | None] = lambda form_id: None
    build_digest: Callable[[str], RenderedEmail] | None = None
    stuck_after: timedelta = STUCK_AFTER
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    rng: random.Random | None = None


@dataclass(frozen=True)
class Sent(Handled):
    """A notification that is done, with what went out (emails) and how many leads it announced."""

    emails: int = 0
    leads: int = 0


@dataclass(frozen=True)
class StoreAway(LookAgain):
    """The database is away: look again shortly, without using an attempt."""


def enqueue_notification(queues: QueueSender, store: Store, kind: NotificationKind, key: str, delay: float = 0) -> None:
    """Queue a notification and mark its outbox row `queued` (the outbox flush covers a crash between)."""
    queues.send(NOTIFICATIONS_QUEUE, NotificationMessage(kind=kind, key=key).to_text(), delay_seconds=delay)
    store.outbox.mark_outbox_queued(kind, key)


def flush_outbox(queues: QueueSender, store: Store, now: datetime, grace: timedelta = timedelta(minutes=1)) -> int:
    """Queue every outbox row that never got its message, and again any whose message is 30+ minutes overdue."""
    due = store.outbox.outbox_due(now - grace, now - timedelta(minutes=30))
    for kind, key in due:
        enqueue_notification(queues, store, kind, key)  # type: ignore[arg-type]
    return len(due)


def handle_notification(body: bytes, deps: NotifyDeps) -> Outcome[NotificationMessage, Handled]:
    """Process one `notifications` message; at most one email per notification. Only `QueueUnavailable` escapes.

    The outcome's word: `sent`, `recorded` (a stuck send had gone out), `duplicate`, `skipped`;
    looked at again later: `waiting` (cap, database away), `throttled`, `in_progress`, `superseded`;
    or the processor's `retrying` / `dead_lettered`.
    """
    consumer = Consumer(NOTIFICATIONS_QUEUE, "notify", "notification", deps.policy, deps.queues, deps.store, deps.rng)
    outcome = process(body, NotificationMessage, lambda message: _handle_or_wait(message, deps), consumer)
    message = outcome.message
    if message is not None and outcome.delay_seconds is not None and not isinstance(outcome.result, StoreAway):
        # The outbox row learns when its message is due, so the flush does not copy a message that waits.
        # Best effort: without it the flush makes one harmless extra copy (the claim stops a second email).
        due = deps.clock() + timedelta(seconds=outcome.delay_seconds)
        with suppress(StoreUnavailable):
            deps.store.outbox.mark_outbox_queued(message.kind, message.key, due)
    return outcome


def _handle_or_wait(message: NotificationMessage, deps: NotifyDeps) -> Handled | LookAgain:
    try:
        return _handle(message, deps)
    except StoreUnavailable as exc:  # the database is away: wait without using an attempt
        return StoreAway("waiting", STORE_RECHECK_SECONDS, f"StoreUnavailable: {exc}"[:300])


def _handle(message: NotificationMessage, deps: NotifyDeps) -> Handled | LookAgain:
    if message.receipt is not None:
        receipt = message.receipt
        _mark_sent(deps, message, receipt.claim_id, receipt.keys, receipt.provider_id)
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
            settled = _settle_stuck(message, deps, claim_id)
            if not isinstance(settled, NotificationMessage):
                return settled
            message = settled
    stored: list[datetime] = []
    prepared = _prepare(message, deps, channel, stored)
    if not isinstance(prepared, _Prepared):
        return prepared
    email, keys, claim_id, slot = prepared.email, prepared.keys, prepared.claim_id, prepared.slot
    try:
        held = deps.store.outbox.begin_send(claim_id) and set(deps.store.outbox.claimed_keys(claim_id)) == set(keys)
    except StoreUnavailable:
        _release_quietly(deps, claim_id)
        raise
    if not held:
        return _superseded(message, deps, claim_id, slot)
    try:
        provider_id = deps.sender.send(email)
    except SenderThrottled as exc:
        deps.store.outbox.release_claim(claim_id)
        return LookAgain("throttled", max(exc.retry_after, 1.0), str(exc))
    except SendOutcomeUnknown as exc:
        return _outcome_unknown(message, deps, exc)
    except (TransientError, PermanentError) as exc:
        _give_back(message, deps, channel, claim_id, exc)
        raise
    _record_sent(deps, message, claim_id, keys, provider_id)
    latency = None if not stored else round((datetime.now(UTC) - min(stored)).total_seconds() * 1000)
    dims = {"stage": "notify", "outcome": "sent", "kind": message.kind, "leads": len(keys), "latency_ms": latency}
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


def _record_sent(
    deps: NotifyDeps, message: NotificationMessage, claim_id: str, keys: list[str], provider_id: str
) -> None:
    """The email is out: record it now, or leave a receipt on the queue to record it when the database is back."""
    for attempt in range(3):
        try:
            _mark_sent(deps, message, claim_id, keys, provider_id)
            return
        except StoreUnavailable:
            time.sleep(0.5 * 2**attempt)
    receipt = message.model_copy(update={"receipt": Receipt(claim_id=claim_id, keys=keys, provider_id=provider_id)})
    deps.queues.send(NOTIFICATIONS_QUEUE, receipt.to_text(), delay_seconds=STORE_RECHECK_SECONDS)


def _mark_sent(
    deps: NotifyDeps, message: NotificationMessage, claim_id: str, keys: list[str], provider_id: str
) -> None:
    """Record a send under its claim (the outbox rows close either way).

    When the claim is no longer `sending` under `claim_id` and was not already recorded under it (a
    repeated receipt, or a look-up that found the send done), the email went out after its claim was
    taken over as stuck, and the taker may send a labelled copy: that is logged and audited.
    """
    if deps.store.outbox.mark_claim_sent(claim_id, message.kind, keys, provider_id):
        return
    state = deps.store.outbox.notification_state(message.key, message.kind, deps.sender.name)
    if state is not None and state.claim_id == claim_id and state.status == "sent":
        return
    log.warning(
        "notify: an email went out after its claim was taken over",
        extra={"stage": "notify", "outcome": "sent_late", "kind": message.kind},
    )
    with suppress(LeadAgentError):
        deps.store.audit("notification_sent_late", None, {"kind": message.kind, "key": message.key})


def _settle_stuck(
    message: NotificationMessage, deps: NotifyDeps, claim_id: str
) -> Handled | LookAgain | NotificationMessage:
    """Settle a claim stuck in `sending`: ask the sender what became of its send before sending again.

    Sent → recorded under the stuck claim, nothing sent (`recorded`). Still running → look again
    later. Never accepted, or failed → the claim is taken over and the email sent again, unlabelled.
    When nobody can tell (a sender that cannot look, or a look that kept failing) → taken over and
    sent again with "(resent)" in the subject. Returns the message to send, or the result.
    """
    went_out: bool | None = None  # None: nobody can tell
    if isinstance(deps.sender, OutcomeLookup):
        try:
            provider_id = deps.sender.outcome(claim_id)
        except SendOutcomeUnknown as exc:
            return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS, str(exc)[:300])
        except SenderThrottled as exc:
            return LookAgain("throttled", max(exc.retry_after, 1.0), str(exc))
        except TransientError:
            if not deps.policy.exhausted(message.attempt):
                raise  # look again after the backoff, using one attempt
        except PermanentError:
            pass
        else:
            if provider_id is not None:
                return _confirm_sent(message, deps, claim_id, provider_id)
            went_out = False
    if not deps.store.outbox.take_over_stuck(claim_id):
        return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS)
    labelled = went_out is None
    action = "notification_resent" if labelled else "notification_taken_over"
    deps.store.audit(action, None, {"kind": message.kind, "key": message.key})
    return message.model_copy(update={"resend": labelled})


def _confirm_sent(message: NotificationMessage, deps: NotifyDeps, claim_id: str, provider_id: str) -> Sent:
    """The stuck send did go out: record it, for every lead its claim holds, and send nothing."""
    keys = deps.store.outbox.claimed_keys(claim_id)
    _mark_sent(deps, message, claim_id, keys, provider_id)
    with suppress(LeadAgentError):
        deps.store.audit("notification_confirmed", None, {"kind": message.kind, "key": message.key})
    log.info("notify: a stuck send had gone out; recorded", extra={"stage": "notify", "outcome": "recorded"})
    return Sent("recorded", leads=len(keys) if message.kind == "lead" else 0)


def _superseded(message: NotificationMessage, deps: NotifyDeps, claim_id: str, slot: str) -> LookAgain:
    """The claim went stale and another instance took it (or one of its leads) before the send began.

    Nothing is sent: what this claim still holds and its sending slot are given back, and the message
    looks again later (by then sent by the other holder, or claimable again).
    """
    _give_back_slot(deps, claim_id, slot)
    with suppress(LeadAgentError):
        deps.store.audit("notification_superseded", None, {"kind": message.kind, "key": message.key})
    log.warning("notify: claim taken over before the send", extra={"stage": "notify", "outcome": "superseded"})
    return LookAgain("superseded", IN_PROGRESS_RECHECK_SECONDS, "claim taken over before the send")


def _outcome_unknown(message: NotificationMessage, deps: NotifyDeps, exc: SendOutcomeUnknown) -> LookAgain:
    """The provider may have the email: keep the claim `sending`, and look again once it counts as stuck."""
    log.warning("notify: send outcome unknown, claim kept", extra={"stage": "notify", "outcome": "in_progress"})
    with suppress(LeadAgentError):
        deps.store.audit("notify_outcome_unknown", None, {"kind": message.kind, "key": message.key})
    delay = max(IN_PROGRESS_RECHECK_SECONDS, deps.stuck_after.total_seconds())
    return LookAgain("in_progress", delay, f"SendOutcomeUnknown: {exc}"[:300])


def _release_quietly(deps: NotifyDeps, claim_id: str) -> None:
    """Give a claim back if the database lets us; a stale `claimed` row is reclaimable anyway."""
    with suppress(StoreUnavailable):
        deps.store.outbox.release_claim(claim_id)


@dataclass(frozen=True)
class _Prepared:
    """An email ready to go: what it carries (`keys`) under `claim_id`, in the sending slot `slot`."""

    email: OutgoingEmail
    keys: list[str]
    claim_id: str
    slot: str


def _prepare(
    message: NotificationMessage, deps: NotifyDeps, channel: str, stored: list[datetime]
) -> _Prepared | Handled | LookAgain:
    """Reserve a slot and claim what this email will carry; the result instead when there is nothing to send now."""
    recipients = _recipients(message, deps)
    if not recipients:
        deps.store.outbox.mark_outbox(message.kind, message.key, "skipped")
        return Handled("skipped", "no recipients configured")
    now = deps.clock()
    policy = deps.policy
    slot, claim_id = uuid.uuid4().hex, uuid.uuid4().hex
    claim = deps.store.outbox.claim_email(
        message.key, message.kind, channel, claim_id, slot, now, policy.per_minute, policy.per_hour
    )
    if claim == "cap_reached":
        return LookAgain("waiting", _cap_wait(message, deps, now), "email cap reached")
    if claim == "taken":
        return LookAgain("in_progress", IN_PROGRESS_RECHECK_SECONDS)
    keys = [message.key]
    try:
        rendered = _render(message, deps, recipients, channel, claim_id, keys, stored)
    except BaseException:
        _give_back_slot(deps, claim_id, slot)
        raise
    if isinstance(rendered, Handled):
        _give_back_slot(deps, claim_id, slot)
        return rendered
    subject = f"(resent) {rendered.subject}" if message.resend else rendered.subject
    if message.kind == "digest":
        email = OutgoingEmail(subject, rendered.text, rendered.html, bcc=recipients, idempotency_key=claim_id)
    else:
        email = OutgoingEmail(subject, rendered.text, rendered.html, to=recipients, idempotency_key=claim_id)
    return _Prepared(email, keys, claim_id, slot)


def _render(
    message: NotificationMessage,
    deps: NotifyDeps,
    recipients: tuple[str, ...],
    channel: str,
    claim_id: str,
    keys: list[str],
    stored: list[datetime],
) -> RenderedEmail | Handled:
    """The email's content; for a lead, first claim the other pending leads it will carry (into `keys`)."""
    if message.kind == "lead":
        keys += _claim_group(message.key, recipients, deps, channel, claim_id)
        return _render_leads(keys, deps, stored)
    if message.kind == "alert":
        return _render_alert(message.key, deps)
    if deps.build_digest is None:
        return Handled("skipped", "digest not configured")
    return deps.build_digest(message.key)


def _give_back_slot(deps: NotifyDeps, claim_id: str, slot: str) -> None:
    """Give back a claim and its sending slot when nothing is sent under them (best effort)."""
    _release_quietly(deps, claim_id)
    with suppress(StoreUnavailable):
        deps.store.outbox.release_email_slot(slot)


def _cap_wait(message: NotificationMessage, deps: NotifyDeps, now: datetime) -> float:
    """Seconds to wait for a sending slot, spread over the backlog so waiting messages do not all wake at once.

    The next slot frees at `free_at`; after it, one email per slot interval carries up to
    `max_group` leads, so a backlog of B leads needs about B / max_group slots. A lead message
    waits for the next slot plus a random share of that horizon: roughly a group's worth of
    messages wakes per slot (one sends, the rest find their lead announced) instead of all of them.
    """
    policy = deps.policy
    free_at = deps.store.outbox.next_email_slot(now, policy.per_minute, policy.per_hour)
    delay = max(1.0, (free_at - now).total_seconds() + 1)
    if message.kind != "lead":
        return delay
    slot_interval = max(60.0 / max(policy.per_minute, 1), 3600.0 / max(policy.per_hour, 1))
    emails_needed = math.ceil(deps.store.outbox.count_pending_lead_notifications() / max(policy.max_group, 1))
    horizon = max(emails_needed - 1, 0) * slot_interval
    return delay + (deps.rng or random).uniform(0, horizon)


def _recipients(message: NotificationMessage, deps: NotifyDeps) -> tuple[str, ...]:
    if message.kind == "alert":
        return deps.recipients.for_alerts()
    if message.kind == "digest":
        return deps.recipients.for_digest()
    rows = deps.store.leads.leads([message.key])
    if not rows:
        return deps.recipients.default
    return deps.recipients.for_lead(rows[0].page_id, rows[0].form_id)


def _claim_group(first: str, recipients: tuple[str, ...], deps: NotifyDeps, channel: str, claim_id: str) -> list[str]:
    """Claim other pending leads for the same recipients, up to the per-email maximum."""

    def same_recipients(pending: PendingLead) -> bool:
        return deps.recipients.for_lead(pending.page_id, pending.form_id) == recipients

    return deps.store.outbox.claim_group(first, channel, claim_id, deps.policy.max_group, same_recipients)


def _render_leads(keys: list[str], deps: NotifyDeps, stored: list[datetime]) -> RenderedEmail | Handled:
    rows = {row.facebook_lead_id: row for row in deps.store.leads.leads(keys)}
    summaries = []
    for key in keys:
        row = rows.get(key)
        if row is None:
            continue
        stored.append(row.stored_at)
        summaries.append(lead_summary(row, deps.form_name(row.form_id) if row.form_id else None))
    if not summaries:
        return Handled("skipped", "lead not stored")
    return render_lead_email(summaries, deps.tz)


def lead_summary(row: StoredLead, form_name: str | None) -> LeadSummary:
    """A stored lead as the instant email shows it."""
    return LeadSummary(
        facebook_lead_id=row.facebook_lead_id,
        created_time=row.created_time,
        source=row.source,
        page_id=row.page_id,
        form_id=row.form_id,
        form_name=form_name,
        ad_id=row.ad_id,
        ad_name=row.ad_name,
        adset_name=row.adset_name,
        campaign_id=row.campaign_id,
        campaign_name=row.campaign_name,
        full_name=row.full_name,
        email=row.email,
        phone_number=row.phone_number,
        fields=row.fields,
        is_organic=row.is_organic,
        platform=row.platform,
    )


def _render_alert(key: str, deps: NotifyDeps) -> RenderedEmail | Handled:
    payload = deps.store.outbox.outbox_payload("alert", key)
    if payload is None:
        return Handled("skipped", "alert not in the outbox")
    at = datetime.fromisoformat(str(payload["at"]).replace("Z", "+00:00"))
    return render_alert(
        AlertData(payload["kind"], bool(payload["opened"]), at, dict(payload.get("detail") or {})), deps.tz
    )

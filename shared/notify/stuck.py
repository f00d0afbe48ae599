"""Claims stuck in `sending`: a send whose process died, or whose outcome the provider could not tell.

A claim left in `sending` past `stuck_after` is settled by asking the sender what became of it,
when it can tell (ACS): sent → recorded, nothing sent again; still running → wait; never had it
or failed → sent again. A sender that cannot tell (SMTP) sends again marked "(resent)" in the
subject: a lead is never left unannounced, at the price of a rare, labelled repeat.
"""

from __future__ import annotations

from contextlib import suppress

from shared.errors import LeadAgentError, PermanentError, TransientError
from shared.logs import get_logger
from shared.messaging.messages import NotificationMessage
from shared.messaging.processor import Handled, LookAgain
from shared.notify.base import OutcomeLookup, SenderThrottled, SendOutcomeUnknown
from shared.notify.outbox import mark_sent
from shared.notify.types import IN_PROGRESS_RECHECK_SECONDS, NotifyDeps, Sent

log = get_logger(__name__)


def settle_stuck(
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


def outcome_unknown(message: NotificationMessage, deps: NotifyDeps, exc: SendOutcomeUnknown) -> LookAgain:
    """The provider may have the email: keep the claim `sending`, and look again once it counts as stuck."""
    log.warning("notify: send outcome unknown, claim kept", extra={"stage": "notify", "outcome": "in_progress"})
    with suppress(LeadAgentError):
        deps.store.audit("notify_outcome_unknown", None, {"kind": message.kind, "key": message.key})
    delay = max(IN_PROGRESS_RECHECK_SECONDS, deps.stuck_after.total_seconds())
    return LookAgain("in_progress", delay, f"SendOutcomeUnknown: {exc}"[:300])


def _confirm_sent(message: NotificationMessage, deps: NotifyDeps, claim_id: str, provider_id: str) -> Sent:
    """The stuck send did go out: record it, for every lead its claim holds, and send nothing."""
    keys = deps.store.outbox.claimed_keys(claim_id)
    mark_sent(deps, message, claim_id, keys, provider_id)
    with suppress(LeadAgentError):
        deps.store.audit("notification_confirmed", None, {"kind": message.kind, "key": message.key})
    log.info("notify: a stuck send had gone out; recorded", extra={"stage": "notify", "outcome": "recorded"})
    return Sent("recorded", leads=len(keys) if message.kind == "lead" else 0)

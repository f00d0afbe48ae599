"""The email sender interface and what every sender raises.

A sender takes one `OutgoingEmail` and returns the provider's message id once the provider has
accepted it. Failures are classified once: `SenderThrottled` (429 / Retry-After: wait, not a
failure), `SendFailed` (transient: nothing went out, retry with backoff), `SendOutcomeUnknown`
(the provider may have the email: keep the claim and ask later, never send again blindly),
`SendRejected` (permanent: dead letter). A sender that can tell what became of an earlier send
(`OutcomeLookup`) is asked before a send stuck by a crash is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from shared.errors import PermanentError, TransientError


@dataclass(frozen=True)
class OutgoingEmail:
    """One email: HTML and plain-text parts; `bcc` is used for digests so recipients stay private."""

    subject: str
    text: str
    html: str
    to: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""  # the same for every hand-over of this one email (the notifier's claim id)

    @property
    def recipient_count(self) -> int:
        return len(self.to) + len(self.bcc)


class SendFailed(TransientError):
    """The sender could not hand the email over right now (connection, 5xx, timeout): nothing went out, as far
    as it can tell."""


class SendOutcomeUnknown(TransientError):
    """The provider took the email, or may have, but its outcome is not known yet (a poll timed out,
    the answer to the send was lost). Sending again could make a second email: ask later instead."""


class SenderThrottled(TransientError):
    """The sender said "too many" (HTTP 429, SMTP 421/451 rate limits): wait `retry_after` seconds."""

    counts_attempt = False

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.min_delay_seconds = retry_after


class SendRejected(PermanentError):
    """The sender refused this email for good (bad recipient, authentication, content)."""


class EmailSender(Protocol):
    """What the notifier needs from a sender; `name` is the channel recorded in `notification_log`."""

    name: str

    def send(self, email: OutgoingEmail) -> str:
        """Hand `email` to the provider; return its message id. Raises the errors above."""
        ...

    def check(self) -> str:
        """Verify the sender is configured and reachable without sending; return a one-line status."""
        ...


@runtime_checkable
class OutcomeLookup(Protocol):
    """A sender that can tell what became of an earlier send, by the `idempotency_key` it was sent with."""

    def outcome(self, idempotency_key: str) -> str | None:
        """The provider's message id when that send went out; None when the provider never had it or it
        failed (nothing went out). Raises `SendOutcomeUnknown` while it is still running, and the errors
        above when the provider cannot be asked."""
        ...

"""The agent's small exception hierarchy; each class maps once to an outcome.

`TransientError` → the message is re-queued with an exponential delay (the queue's dequeue count
is not burnt). `PermanentError` → dead letter with its reason. `SignatureInvalid` → HTTP 401.
"""

from __future__ import annotations


class LeadAgentError(Exception):
    """Base of every error the agent raises on purpose."""


class SignatureInvalid(LeadAgentError):
    """The webhook's `X-Hub-Signature-256` is missing or matches no active app secret."""


class TransientError(LeadAgentError):
    """Worth retrying later: the cause is expected to go away by itself or by an operator's fix.

    `counts_attempt` is False for causes an operator must fix (token, permission): leads then
    wait for the fix however long it takes instead of running out of attempts.
    """

    min_delay_seconds: float = 0.0
    counts_attempt: bool = True


class GraphUnavailable(TransientError):
    """Graph answered 5xx, a temporary error code (1, 2), or did not answer in time."""


class GraphThrottled(TransientError):
    """Graph rate limit (codes 4, 17, 32, 613, 80001, 80005 …): stop calling until the regain time."""

    def __init__(self, message: str, regain_seconds: float, code: int | None = None) -> None:
        super().__init__(message)
        self.regain_seconds = regain_seconds
        self.min_delay_seconds = regain_seconds
        self.code = code  # Meta's code; a page's own limits (32, 80001, 80005 …) block that page only


class TokenInvalid(TransientError):
    """The access token is expired, revoked or lost its page role (190 and its subcodes)."""

    counts_attempt = False

    def __init__(self, message: str, code: int = 190, subcode: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.subcode = subcode


class GraphPermissionDenied(TransientError):
    """A permission is missing (codes 10, 200-299): an operator must re-grant it; leads wait."""

    counts_attempt = False


class IntegrationPaused(TransientError):
    """Lead fetches are paused while the integration's token is known to be invalid."""

    counts_attempt = False


class StoreUnavailable(TransientError):
    """The database cannot be reached or written right now."""


class QueueUnavailable(TransientError):
    """Azure Storage queues cannot be reached right now."""


class PermanentError(LeadAgentError):
    """Retrying cannot help: the event becomes a dead letter with this reason."""


class StoreRefused(PermanentError):
    """The database will never take this (a value too long or of the wrong type; a statement it rejects).

    The message names the table and column, constraint or error numbers only, never a value (lead data).
    """


class LeadNotFetchable(PermanentError):
    """Graph says the lead does not exist or cannot be read (100/33): bad id, Leads Access, expiry."""


class InvalidLead(PermanentError):
    """Graph returned a lead that does not validate."""


class MalformedMessage(PermanentError):
    """A queue message that is not a lead message this version understands."""

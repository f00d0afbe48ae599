"""What an operations request can be refused for; the HTTP edge maps each class to its status once."""

from __future__ import annotations

from typing import Any

from shared.errors import LeadAgentError


class OpsRefused(LeadAgentError):
    """An operation that cannot be done as asked; `detail` adds facts to the message (ids, reasons)."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class NotFound(OpsRefused):
    """The id names nothing the agent holds."""


class NotReplayable(OpsRefused):
    """The thing exists but cannot be done again (a dead letter that holds no message to re-queue)."""

"""Parse a queue body at the edge, in two stages: the envelope, then the message model.

Stage one reads the body as our queue envelope: one JSON object carrying a message version. Stage
two validates that object as the consumer's message model (`LeadMessage`, `NotificationMessage`).
Either stage failing is a `MalformedMessage` naming the first problem; past this point the
consumers handle typed messages only.
"""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import MalformedMessage


class MessageModel(Protocol):
    """A message model stage two validates into (a pydantic model)."""

    @classmethod
    def model_validate(cls, obj: Any, /) -> Self: ...


T = TypeVar("T", bound=MessageModel)


class QueueEnvelope(BaseModel):
    """What every message on our queues is: a JSON object with a message version; the rest is the model's."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    v: int = 1


def parse_message(body: bytes, model: type[T], what: str) -> T:
    """The message `body` holds, as `model`; `MalformedMessage("malformed <what>: …")` when it is not one."""
    try:
        envelope = QueueEnvelope.model_validate_json(body)
        return model.model_validate(envelope.model_dump())
    except ValidationError as exc:
        raise MalformedMessage(f"malformed {what}: {exc.errors()[0]['msg']}") from None

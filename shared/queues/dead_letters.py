"""Dead letters: a reason-carrying envelope on `<queue>-poison`, the design's dead-letter store.

Queue messages are at most 64 KiB (about 48 KiB of text once base64-encoded). A raw body that
does not fit is zlib-compressed; if it still does not fit it is truncated, and its size and
SHA-256 are kept so the original can be matched.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Any

from shared.models.messages import DeadLetter, DeadLetterInfo
from shared.queues.names import poison_queue
from shared.queues.sender import QueueSender

MAX_TEXT_CHARS = 46_000


def dead_letter_raw_body(info: DeadLetterInfo, body: bytes) -> DeadLetter:
    """A dead letter keeping `body` whole when it fits a queue message, else as much as fits."""
    letter = DeadLetter(dead_letter=info, raw_body_size=len(body), raw_body_sha256=hashlib.sha256(body).hexdigest())
    text = body.decode("utf-8", errors="replace")
    if len(letter.to_text()) + len(text) * 2 < MAX_TEXT_CHARS:
        letter.raw_body, letter.raw_body_encoding = text, "utf-8"
        return letter
    budget = MAX_TEXT_CHARS - len(letter.to_text()) - 200
    keep = len(body)
    packed = base64.b64encode(zlib.compress(body, 9)).decode("ascii")
    while len(packed) > budget and keep > 0:
        keep //= 2
        packed = base64.b64encode(zlib.compress(body[:keep], 9)).decode("ascii")
        letter.raw_body_truncated = True
    letter.raw_body, letter.raw_body_encoding = packed, "zlib+base64"
    return letter


def dead_letter_message(info: DeadLetterInfo, message: dict[str, Any]) -> DeadLetter:
    """A dead letter carrying the failed queue message itself."""
    return DeadLetter(dead_letter=info, message=message)


def send_dead_letter(sender: QueueSender, queue: str, letter: DeadLetter) -> str:
    """Put `letter` on `queue`'s poison twin; durable when this returns (else `QueueUnavailable`)."""
    return sender.send(poison_queue(queue), letter.to_text())

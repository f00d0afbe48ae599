"""Dead letters: a reason-carrying envelope on `<queue>-poison`, the design's dead-letter store.

Queue messages are at most 64 KiB once base64-encoded (`encoded_size`: about 48 KiB of UTF-8,
16,384 CJK characters). A raw body, or a failed message, that does not fit is zlib-compressed; if it
still does not fit it is truncated, and its size and SHA-256 are kept so the original can be matched.
Every dead letter built here fits one queue message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from typing import Any

from shared.messaging.messages import DeadLetter, DeadLetterInfo
from shared.messaging.sender import MAX_MESSAGE_BYTES, QueueSender, encoded_size
from shared.storage.names import poison_queue

HEADROOM_BYTES = 512  # JSON quoting and the encoding fields around a packed body


def fits(letter: DeadLetter) -> bool:
    """True when `letter` fits one queue message as the service counts it."""
    return encoded_size(letter.to_text()) <= MAX_MESSAGE_BYTES


def dead_letter_raw_body(info: DeadLetterInfo, body: bytes) -> DeadLetter:
    """A dead letter keeping `body` whole when it fits a queue message, else compressed, else as much as fits."""
    letter = DeadLetter(dead_letter=info, raw_body_size=len(body), raw_body_sha256=hashlib.sha256(body).hexdigest())
    whole = letter.model_copy(update={"raw_body": body.decode("utf-8", errors="replace"), "raw_body_encoding": "utf-8"})
    if fits(whole):
        return whole
    # base64 text is ASCII: its bytes are its characters, counted once more by the queue's own base64
    budget = (MAX_MESSAGE_BYTES // 4) * 3 - len(letter.to_text().encode("utf-8")) - HEADROOM_BYTES
    keep = len(body)
    packed = base64.b64encode(zlib.compress(body, 9)).decode("ascii")
    while len(packed) > budget and keep > 0:
        keep //= 2
        packed = base64.b64encode(zlib.compress(body[:keep], 9)).decode("ascii")
        letter.raw_body_truncated = True
    letter.raw_body, letter.raw_body_encoding = packed, "zlib+base64"
    return letter


def dead_letter_message(info: DeadLetterInfo, message: dict[str, Any]) -> DeadLetter:
    """A dead letter carrying the failed queue message itself; as a packed raw body when it is too big."""
    letter = DeadLetter(dead_letter=info, message=message)
    if fits(letter):
        return letter
    return dead_letter_raw_body(info, json.dumps(message, ensure_ascii=False, default=str).encode("utf-8"))


def send_dead_letter(sender: QueueSender, queue: str, letter: DeadLetter) -> str:
    """Put `letter` on `queue`'s poison twin; durable when this returns (else `QueueUnavailable`)."""
    return sender.send(poison_queue(queue), letter.to_text())

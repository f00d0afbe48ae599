"""The subscription handshake (GET): echo `hub.challenge` unchanged when the verify token matches."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


def answer_handshake(params: Mapping[str, str], verify_token: str) -> str | None:
    """The challenge to echo as a `text/plain` 200, or None for a 403.

    Requires `hub.mode=subscribe` and `hub.verify_token` equal (constant-time) to ours.
    """
    mode = params.get("hub.mode")
    token = params.get("hub.verify_token") or ""
    challenge = params.get("hub.challenge")
    if mode != "subscribe" or challenge is None or not verify_token:
        return None
    if not hmac.compare_digest(token.encode("utf-8"), verify_token.encode("utf-8")):
        return None
    return challenge

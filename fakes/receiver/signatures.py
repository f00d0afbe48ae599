"""Standard Webhooks signatures, checked independently of the agent's signer.

`webhook-signature` is a space-separated list of `v1,<base64 HMAC-SHA256>`, each over
`{webhook-id}.{webhook-timestamp}.{raw body}` with the key the base64 after `whsec_`; one match is
enough (a sender rotating its secret signs with both). `webhook-timestamp` is epoch seconds and must
be within 5 minutes of now, which stops replays. Signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

TOLERANCE_SECONDS = 5 * 60


def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret (base64 after the prefix); `ValueError` when it is not base64."""
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise ValueError("the secret must be base64, optionally after 'whsec_'") from None


def signature_problem(key: bytes, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """None when the headers (lower-case names) sign `body` with `key` within the tolerance; else what is wrong."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if not timestamp.isdigit():
        return "webhook-timestamp is not epoch seconds"
    if abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        return "webhook-timestamp is more than 5 minutes from now"
    signed = webhook_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(expected, signature.encode()):
            return None
    return "no v1 signature matches"

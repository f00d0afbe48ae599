"""`X-Hub-Signature-256` verification: HMAC-SHA256 over the raw body bytes, constant-time compare."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from shared.errors import SignatureInvalid

PREFIX = "sha256="


def sign_body(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body` signed with `secret`."""
    return PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secrets: Iterable[str]) -> None:
    """Return when `header` is a valid signature of the exact `body` bytes under any active secret.

    Every secret is checked (no early exit on the first mismatch) so timing does not tell which
    one matched. Raises `SignatureInvalid` for a missing, malformed or wrong signature.
    """
    if not header or not header.startswith(PREFIX):
        raise SignatureInvalid("missing or malformed X-Hub-Signature-256")
    received = header[len(PREFIX) :].strip().lower().encode("ascii", "replace")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, received)
    if not matched:
        raise SignatureInvalid("X-Hub-Signature-256 matches no active app secret")

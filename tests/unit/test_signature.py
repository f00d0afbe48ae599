"""X-Hub-Signature-256 is HMAC-SHA256 over the exact raw body bytes, with two secrets during rotation."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.errors import SignatureInvalid
from shared.webhook.signature import sign_body, verify_signature

SECRET = "current-app-secret"
PREVIOUS = "previous-app-secret"


def header_for(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_valid_signature_is_accepted():
    body = b'{"object":"page","entry":[]}'
    verify_signature(body, header_for(body, SECRET), [SECRET])


def test_signature_with_wrong_secret_is_rejected():
    body = b'{"object":"page","entry":[]}'
    with pytest.raises(SignatureInvalid):
        verify_signature(body, header_for(body, "someone-else"), [SECRET])


@pytest.mark.parametrize("header", [None, "", "sha1=abc", "sha256=", "sha256=zz"])
def test_missing_or_malformed_header_is_rejected(header):
    with pytest.raises(SignatureInvalid):
        verify_signature(b"{}", header, [SECRET])


def test_previous_secret_is_accepted_during_rotation():
    body = b'{"object":"page"}'
    verify_signature(body, header_for(body, PREVIOUS), [SECRET, PREVIOUS])


def test_previous_secret_is_rejected_once_rotation_is_over():
    body = b'{"object":"page"}'
    with pytest.raises(SignatureInvalid):
        verify_signature(body, header_for(body, PREVIOUS), [SECRET])


def test_non_ascii_body_with_unicode_escapes_is_verified_over_raw_bytes():
    # Meta sends escaped ASCII; re-serialising the parsed JSON would change the bytes and the HMAC.
    raw = b'{"name":"Zo\\u00eb \\u00c5str\\u00f6m","city":"M\\u00fcnchen \xe2\x9c\x93"}'
    verify_signature(raw, header_for(raw, SECRET), [SECRET])
    import json

    reserialised = json.dumps(json.loads(raw), ensure_ascii=False).encode()
    with pytest.raises(SignatureInvalid):
        verify_signature(reserialised, header_for(raw, SECRET), [SECRET])


def test_uppercase_hex_digest_is_accepted():
    body = b"{}"
    verify_signature(body, header_for(body, SECRET).upper().replace("SHA256=", "sha256="), [SECRET])


def test_sign_body_produces_the_header_meta_sends():
    body = b'{"a":1}'
    assert sign_body(body, SECRET) == header_for(body, SECRET)

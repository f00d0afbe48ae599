"""The ACS Email sender through a real `EmailClient`: GA message shape, signing, and every failure class.

Only the HTTP hop is faked (`tests.support.acs.FakeAcsEmail`); the SDK's signing, retry policy and
long-running-operation polling run unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.notify.acs import AcsSender
from shared.notify.base import OutgoingEmail, SenderThrottled, SendFailed, SendRejected
from tests.support.acs import (
    ACCESS_KEY,
    ACS_SCOPE,
    BEARER_TOKEN,
    CONNECTION_STRING,
    ENDPOINT,
    SENDER_ADDRESS,
    FakeAcsEmail,
)
from tests.support.keyvault import FakeCredential

EMAIL = OutgoingEmail(
    subject="Nouveau lead : Zoë Müller",
    text="Zoë Müller wants a quote.",
    html="<p>Zoë Müller wants a quote.</p>",
    to=("sales@example.com", "owner@example.com"),
    bcc=("audit@example.com",),
    headers={"X-Lead-Id": "1234567890"},
)
DIGEST = OutgoingEmail(subject="Daily digest", text="3 leads", html="<p>3 leads</p>", bcc=("a@example.com",))


class RefusingCredential:
    """A `TokenCredential` whose identity is not configured."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError("no managed identity is assigned")


@pytest.fixture
def acs() -> FakeAcsEmail:
    return FakeAcsEmail()


def sender_for(acs: FakeAcsEmail, **options: Any) -> AcsSender:
    options.setdefault("connection_string", CONNECTION_STRING)
    return AcsSender(SENDER_ADDRESS, transport=acs.transport(), **options)


def test_send_returns_the_operation_id_once_acs_reports_succeeded(acs: FakeAcsEmail) -> None:
    message_id = sender_for(acs).send(EMAIL)

    assert [r.status for r in acs.requests] == [202, 200]
    assert acs.requests[1].path == f"/emails/operations/{message_id}"


def test_request_body_has_the_ga_shape_with_recipients_content_and_headers(acs: FakeAcsEmail) -> None:
    sender_for(acs).send(EMAIL)

    assert acs.sent == [
        {
            "senderAddress": SENDER_ADDRESS,
            "recipients": {
                "to": [{"address": "sales@example.com"}, {"address": "owner@example.com"}],
                "bcc": [{"address": "audit@example.com"}],
            },
            "content": {"subject": EMAIL.subject, "plainText": EMAIL.text, "html": EMAIL.html},
            "headers": {"X-Lead-Id": "1234567890"},
        }
    ]


def test_bcc_only_email_leaves_out_the_empty_to_list_and_headers(acs: FakeAcsEmail) -> None:
    sender_for(acs).send(DIGEST)

    (body,) = acs.sent
    assert body["recipients"] == {"bcc": [{"address": "a@example.com"}]}
    assert "headers" not in body


def test_throttled_send_raises_sender_throttled_with_the_service_retry_after(acs: FakeAcsEmail) -> None:
    acs.throttle_next = 1
    transport = acs.transport()
    sender = AcsSender(SENDER_ADDRESS, connection_string=CONNECTION_STRING, transport=transport)

    with pytest.raises(SenderThrottled) as raised:
        sender.send(EMAIL)

    assert raised.value.retry_after == 17
    assert len(acs.send_attempts) == 1  # the SDK did not retry the 429 itself…
    assert transport.sleeps == []  # …nor wait Retry-After inside the call
    assert acs.sent == []


def test_send_after_throttling_ends_goes_through(acs: FakeAcsEmail) -> None:
    acs.throttle_next = 1
    sender = sender_for(acs)
    with pytest.raises(SenderThrottled):
        sender.send(EMAIL)

    sender.send(EMAIL)

    assert len(acs.sent) == 1


def test_service_unavailable_raises_send_failed_after_one_attempt(acs: FakeAcsEmail) -> None:
    acs.fail_next = 1

    with pytest.raises(SendFailed, match="503"):
        sender_for(acs).send(EMAIL)

    assert len(acs.send_attempts) == 1


def test_invalid_recipient_raises_send_rejected_with_the_error_code(acs: FakeAcsEmail) -> None:
    acs.reject_next = 1

    with pytest.raises(SendRejected, match="InvalidRecipient"):
        sender_for(acs).send(EMAIL)


def test_operation_that_ends_failed_raises_send_rejected_with_its_error(acs: FakeAcsEmail) -> None:
    acs.operation_error = ("EmailDroppedAllRecipientsSuppressed", "Every recipient is suppressed.")

    with pytest.raises(SendRejected, match="EmailDroppedAllRecipientsSuppressed"):
        sender_for(acs).send(EMAIL)


def test_unreachable_service_raises_send_failed(acs: FakeAcsEmail) -> None:
    acs.reachable = False

    with pytest.raises(SendFailed, match="unreachable"):
        sender_for(acs).send(EMAIL)

    assert acs.refused == 1


def test_operation_still_running_at_poll_timeout_raises_send_failed(acs: FakeAcsEmail) -> None:
    acs.hold_status_polls = True
    try:
        with pytest.raises(SendFailed, match="still running"):
            sender_for(acs, poll_timeout=0.2).send(EMAIL)
    finally:
        acs.release()


def test_more_than_fifty_recipients_are_refused_before_calling_acs(acs: FakeAcsEmail) -> None:
    crowd = OutgoingEmail("Digest", "text", "<p>html</p>", bcc=tuple(f"r{i}@example.com" for i in range(51)))

    with pytest.raises(SendRejected, match="50"):
        sender_for(acs).send(crowd)

    assert acs.requests == []


def test_connection_string_path_signs_every_request_with_hmac(acs: FakeAcsEmail) -> None:
    sender_for(acs).send(EMAIL)

    assert {(r.auth_scheme, r.signature_valid) for r in acs.requests} == {("HMAC-SHA256", True)}


def test_wrong_access_key_is_refused_as_send_rejected(acs: FakeAcsEmail) -> None:
    wrong = CONNECTION_STRING.replace(ACCESS_KEY, "d3Jvbmcta2V5")

    with pytest.raises(SendRejected, match="401"):
        sender_for(acs, connection_string=wrong).send(EMAIL)


def test_credential_path_sends_a_bearer_token_for_the_acs_scope(acs: FakeAcsEmail) -> None:
    credential = FakeCredential(BEARER_TOKEN)

    sender_for(acs, connection_string="", endpoint=ENDPOINT, credential=credential).send(EMAIL)

    assert {(r.auth_scheme, r.signature_valid) for r in acs.requests} == {("Bearer", True)}
    assert credential.scopes[0] == (ACS_SCOPE,)


def test_check_with_connection_string_names_the_host_and_never_the_key(acs: FakeAcsEmail) -> None:
    status = sender_for(acs).check()

    assert status == "acs configured: test-acs.unitedstates.communication.azure.com"
    assert ACCESS_KEY not in status
    assert acs.requests == []


def test_check_with_credential_obtains_a_token_for_the_acs_scope(acs: FakeAcsEmail) -> None:
    credential = FakeCredential(BEARER_TOKEN)

    status = sender_for(acs, connection_string="", endpoint=ENDPOINT, credential=credential).check()

    assert status == "acs configured: test-acs.unitedstates.communication.azure.com"
    assert credential.scopes == [(ACS_SCOPE,)]


def test_check_with_a_credential_that_cannot_get_a_token_raises_send_rejected(acs: FakeAcsEmail) -> None:
    sender = sender_for(acs, connection_string="", endpoint=ENDPOINT, credential=RefusingCredential())

    with pytest.raises(SendRejected, match="token"):
        sender.check()


def test_check_with_a_malformed_connection_string_raises_send_rejected(acs: FakeAcsEmail) -> None:
    with pytest.raises(SendRejected, match="connection string"):
        sender_for(acs, connection_string=f"endpoint={ENDPOINT}/;accesskey=not base64!").check()


def test_connection_string_wins_when_an_endpoint_is_also_configured(acs: FakeAcsEmail) -> None:
    sender_for(acs, endpoint="https://other.communication.azure.com").send(EMAIL)

    assert {r.auth_scheme for r in acs.requests} == {"HMAC-SHA256"}

"""The ACS Email sender through a real `EmailClient`: GA message shape, signing, every failure class, idempotency.

Only the HTTP hop is faked (`tests.support.acs.FakeAcsEmail`); the SDK's signing, retry policy and
long-running-operation polling run unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.notify.acs import AcsSender, operation_id_for
from shared.notify.base import OutgoingEmail, SenderThrottled, SendFailed, SendOutcomeUnknown, SendRejected
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
KEYED = replace(EMAIL, idempotency_key="claim-0001")


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


def test_operation_still_running_at_poll_timeout_leaves_the_outcome_unknown(acs: FakeAcsEmail) -> None:
    acs.hold_status_polls = True
    try:
        with pytest.raises(SendOutcomeUnknown, match="still running"):
            sender_for(acs, poll_timeout=0.2).send(KEYED)
    finally:
        acs.release()

    assert len(acs.sent) == 1  # ACS has it: retrying the send would make a second email


def test_a_keyed_send_carries_its_operation_id_and_repeatability_headers(acs: FakeAcsEmail) -> None:
    before = datetime.now(UTC).replace(microsecond=0)

    message_id = sender_for(acs).send(KEYED)

    (post,) = acs.send_attempts
    assert message_id == operation_id_for(KEYED.idempotency_key)
    assert post.headers["operation-id"] == post.headers["repeatability-request-id"] == message_id
    first_sent = parsedate_to_datetime(post.headers["repeatability-first-sent"])
    assert post.headers["repeatability-first-sent"].endswith(" GMT")
    assert before <= first_sent <= datetime.now(UTC)


def test_the_operation_id_is_a_uuid_stable_for_its_key() -> None:
    assert operation_id_for("claim-0001") == operation_id_for("claim-0001") != operation_id_for("claim-0002")
    assert uuid.UUID(operation_id_for("claim-0001")).version == 5


def test_an_unkeyed_send_still_carries_its_own_repeatability_headers(acs: FakeAcsEmail) -> None:
    sender = sender_for(acs)
    sender.send(EMAIL)
    sender.send(EMAIL)

    first, second = (r.headers for r in acs.send_attempts)
    assert first["repeatability-request-id"] == first["operation-id"]
    assert first["repeatability-request-id"] != second["repeatability-request-id"]
    assert len(acs.sent) == 2


def test_a_lost_send_answer_is_retried_as_a_repeat_and_acs_sends_one_email(acs: FakeAcsEmail) -> None:
    acs.lose_next_responses = 1
    transport = acs.transport()
    sender = AcsSender(SENDER_ADDRESS, connection_string=CONNECTION_STRING, transport=transport)

    message_id = sender.send(KEYED)

    first, repeat = acs.send_attempts
    assert (first.status, repeat.status) == (202, 202)  # the repeat got the original's answer…
    assert len(acs.sent) == 1  # …and no second email
    assert message_id == operation_id_for(KEYED.idempotency_key)
    for header in ("repeatability-request-id", "repeatability-first-sent", "operation-id"):
        assert first.headers[header] == repeat.headers[header]
    assert {(r.auth_scheme, r.signature_valid) for r in acs.requests} == {("HMAC-SHA256", True)}


def test_answers_lost_on_every_attempt_leave_the_outcome_unknown(acs: FakeAcsEmail) -> None:
    acs.lose_next_responses = 10

    with pytest.raises(SendOutcomeUnknown):
        sender_for(acs).send(KEYED)

    assert len(acs.send_attempts) == 4  # the send and azure-core's three repeats
    assert len(acs.sent) == 1


def test_a_repeat_answered_409_while_the_original_runs_leaves_the_outcome_unknown(acs: FakeAcsEmail) -> None:
    acs.lose_next_responses = 1
    acs.conflict_next_repeats = 1

    with pytest.raises(SendOutcomeUnknown, match="409"):
        sender_for(acs).send(KEYED)

    assert [r.status for r in acs.send_attempts] == [202, 409]


def test_a_repeat_within_five_minutes_is_answered_by_the_original_without_a_second_email(acs: FakeAcsEmail) -> None:
    sender = sender_for(acs)
    first = sender.send(KEYED)
    acs.clock = lambda: datetime.now(UTC) + timedelta(minutes=4)

    assert sender.send(KEYED) == first
    assert len(acs.sent) == 1


def test_a_first_sent_time_outside_the_five_minute_window_is_refused_with_412(acs: FakeAcsEmail) -> None:
    acs.clock = lambda: datetime.now(UTC) + timedelta(minutes=6)  # our clock is 6 minutes behind ACS

    with pytest.raises(SendFailed, match="412"):
        sender_for(acs).send(KEYED)

    assert acs.sent == []


def test_a_request_id_reused_with_another_body_is_refused_with_400(acs: FakeAcsEmail) -> None:
    sender = sender_for(acs)
    sender.send(KEYED)

    with pytest.raises(SendRejected, match="400"):
        sender.send(replace(KEYED, subject="Another subject"))

    assert len(acs.sent) == 1


def test_outcome_of_a_succeeded_send_is_its_operation_id(acs: FakeAcsEmail) -> None:
    sender = sender_for(acs)
    message_id = sender.send(KEYED)

    assert sender_for(acs).outcome(KEYED.idempotency_key) == message_id  # another instance asks
    assert acs.requests[-1].path == f"/emails/operations/{message_id}"
    assert acs.requests[-1].signature_valid


def test_outcome_of_a_send_acs_never_accepted_is_none(acs: FakeAcsEmail) -> None:
    assert sender_for(acs).outcome("claim-never-sent") is None


def test_outcome_of_a_send_whose_operation_failed_is_none(acs: FakeAcsEmail) -> None:
    acs.operation_error = ("EmailDroppedAllRecipientsSuppressed", "Every recipient is suppressed.")
    sender = sender_for(acs)
    with pytest.raises(SendRejected):
        sender.send(KEYED)

    assert sender.outcome(KEYED.idempotency_key) is None


def test_outcome_of_a_send_still_running_raises_send_outcome_unknown(acs: FakeAcsEmail) -> None:
    sender = sender_for(acs)
    sender.send(KEYED)
    acs.keep_running = True

    with pytest.raises(SendOutcomeUnknown, match="Running"):
        sender.outcome(KEYED.idempotency_key)


def test_outcome_when_acs_is_unreachable_raises_send_failed(acs: FakeAcsEmail) -> None:
    acs.reachable = False

    with pytest.raises(SendFailed, match="unreachable"):
        sender_for(acs).outcome(KEYED.idempotency_key)


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

"""Graph errors are classified by `error.code`, not by HTTP status: each maps to one outcome."""

from __future__ import annotations

import itertools
import json

import pytest

from shared.errors import (
    GraphPermissionDenied,
    GraphThrottled,
    GraphUnavailable,
    LeadNotFetchable,
    PermanentError,
    TokenInvalid,
    TransientError,
)
from shared.graph.errors import classify_error
from shared.messaging.retry import retry_delay


def error(code, subcode=None):
    body = {"error": {"message": "m", "type": "OAuthException", "code": code, "fbtrace_id": "T"}}
    if subcode is not None:
        body["error"]["error_subcode"] = subcode
    return body


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80001, 80005])
def test_throttling_codes_are_transient_with_a_regain_time(code):
    headers = {
        "x-business-use-case-usage": json.dumps(
            {"1": [{"type": "leadgen", "call_count": 100, "estimated_time_to_regain_access": 7}]}
        )
    }
    exc = classify_error(400, error(code), headers)
    assert isinstance(exc, GraphThrottled)
    assert exc.regain_seconds == 7 * 60


def test_throttling_without_usage_header_still_waits():
    exc = classify_error(400, error(613), {})
    assert isinstance(exc, GraphThrottled) and exc.regain_seconds > 0


@pytest.mark.parametrize("subcode", [None, 463, 467, 492])
def test_token_errors_are_transient(subcode):
    exc = classify_error(400, error(190, subcode), {})
    assert isinstance(exc, TokenInvalid) and isinstance(exc, TransientError)
    assert exc.subcode == subcode


def test_unsupported_get_request_is_permanent():
    exc = classify_error(400, error(100, 33), {})
    assert isinstance(exc, LeadNotFetchable) and isinstance(exc, PermanentError)
    assert "fbtrace_id=T" in str(exc)


@pytest.mark.parametrize("status,body", [(500, error(2)), (503, None), (400, error(1))])
def test_server_side_failures_are_transient(status, body):
    assert isinstance(classify_error(status, body, {}), GraphUnavailable)


def test_missing_permission_waits_for_an_operator():
    assert isinstance(classify_error(403, error(200), {}), GraphPermissionDenied)


def test_retry_delay_grows_exponentially_and_is_capped():
    delays = [retry_delay(n, base=5, cap=3600, rng=FixedRandom()) for n in range(12)]
    assert delays[:4] == [5, 10, 20, 40]
    assert delays[-1] == 3600
    assert all(a <= b for a, b in itertools.pairwise(delays))


def test_retry_delay_respects_the_throttle_floor():
    assert retry_delay(0, base=5, cap=3600, floor=420, rng=FixedRandom()) == 420


class FixedRandom:
    def uniform(self, a, b):
        return 1.0


# Answers that are not Meta's verdict on the lead are retried (counted attempts), never dead-lettered at once.


def test_request_timeout_408_is_retried_with_counted_attempts():
    exc = classify_error(408, None, {})
    assert isinstance(exc, GraphUnavailable) and exc.counts_attempt


@pytest.mark.parametrize("status", [400, 401, 403, 404, 407, 408, 413, 451])
def test_html_4xx_from_a_proxy_is_retried_not_a_token_or_lead_verdict(status):
    # The client passes `None` when the body is not JSON (an HTML page from a proxy or gateway).
    exc = classify_error(status, None, {})
    assert isinstance(exc, GraphUnavailable) and exc.counts_attempt
    assert f"status={status}" in str(exc)


def test_a_4xx_json_body_without_meta_s_error_envelope_is_retried():
    assert isinstance(classify_error(404, {"message": "no route"}, {}), GraphUnavailable)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_unknown_graph_code_is_retried_with_counted_attempts(status):
    exc = classify_error(status, error(987654), {})
    assert isinstance(exc, GraphUnavailable) and exc.counts_attempt
    assert "code=987654" in str(exc)


def test_graph_error_without_a_code_is_retried():
    assert isinstance(classify_error(400, {"error": {"message": "m"}}, {}), GraphUnavailable)


def test_meta_s_is_transient_flag_makes_any_code_retried():
    body = error(100, 33)
    body["error"]["is_transient"] = True
    assert isinstance(classify_error(400, body, {}), GraphUnavailable)


@pytest.mark.parametrize("subcode", [None, 33])
def test_invalid_parameter_and_unsupported_get_stay_permanent(subcode):
    assert isinstance(classify_error(400, error(100, subcode), {}), LeadNotFetchable)


def test_capability_error_3_waits_for_an_operator_instead_of_dead_lettering():
    exc = classify_error(400, error(3), {})
    assert isinstance(exc, GraphPermissionDenied) and not exc.counts_attempt


def test_a_403_with_an_unknown_code_does_not_claim_the_token_is_invalid():
    assert not isinstance(classify_error(403, error(987654), {}), TokenInvalid)

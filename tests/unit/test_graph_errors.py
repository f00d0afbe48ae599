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
from shared.ingest.retry import retry_delay


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

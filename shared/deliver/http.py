"""The HTTP boundary of deliveries: one JSON POST, its answer reduced to a status code.

Redirects are not followed (Standard Webhooks counts a 3xx as a failure: the URL should be fixed, and
a redirect could carry the payload elsewhere). Timeouts are short. Nothing of the answer's body is
read into a log or the database, and no exception text that could hold the URL leaves this module.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from shared.errors import TransientError
from shared.http_clients import direct_session

USER_AGENT = "lead-monitoring-agent/1 (+deliveries)"
_local = threading.local()


class DeliveryFailed(TransientError):
    """The destination did not answer 2xx: its status (None for a timeout or no connection) and a short reason."""

    def __init__(self, status: int | None, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after = retry_after


def post_json(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST `body` to `url`; the 2xx status, else `DeliveryFailed`."""
    import requests

    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = direct_session()
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        response = session.post(url, data=body, headers=sent, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise DeliveryFailed(None, f"no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise DeliveryFailed(None, f"not reachable ({type(exc).__name__})") from None
    status = response.status_code
    response.close()
    if 200 <= status < 300:
        return status
    retry_after = _seconds(response.headers.get("Retry-After", ""))
    what = "a redirect, not followed" if 300 <= status < 400 else f"HTTP {status}"
    raise DeliveryFailed(status, what, retry_after)


def _seconds(value: str) -> float:
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0

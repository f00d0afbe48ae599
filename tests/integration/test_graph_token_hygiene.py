"""The access token never reaches a URL, an exception message or a log line.

`debug_token` needs the token twice (the app token that asks, the access token it asks about); a
failed `requests` call carries its whole URL in its message and its request (headers included)
in its attributes. Against the sandbox Graph API over loopback and a closed port.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest
import requests

from fakes.sandbox import RunningSandbox, SandboxGraph, serve
from shared.errors import GraphUnavailable, LeadAgentError
from shared.graph import client as graph_client
from shared.graph.client import GraphClient
from shared.graph.redact import scrub
from shared.http_clients import direct_session
from shared.monitoring.meta_health import check_token
from tests.support.waiting import free_port

ACCESS_TOKEN = "EAAGsecretAccessToken0123456789"
APP_ID = "555000111"
APP_SECRET = "appsecret9876543210"
APP_TOKEN = f"{APP_ID}|{APP_SECRET}"
PAGE = "1000000000001"
SECRETS = (ACCESS_TOKEN, APP_SECRET)


@pytest.fixture
def graph() -> Iterator[RunningSandbox]:
    sandbox = SandboxGraph([ACCESS_TOKEN], app_id=APP_ID, page_ids=[PAGE], app_secret=APP_SECRET)
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def sent(monkeypatch) -> list[requests.PreparedRequest]:
    """Every request the Graph client sends, as it went on the wire."""
    requests_sent: list[requests.PreparedRequest] = []

    def recording_session() -> requests.Session:
        session = direct_session()
        session.hooks["response"].append(lambda response, *args, **kwargs: requests_sent.append(response.request))
        return session

    monkeypatch.setattr(graph_client, "direct_session", recording_session)
    return requests_sent


def chain(exc: BaseException) -> list[BaseException]:
    """The exception and every exception it was raised from or while handling."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def failure_of(client: GraphClient) -> LeadAgentError:
    with pytest.raises(LeadAgentError) as caught:
        check_token(client, ACCESS_TOKEN, APP_TOKEN)
    return caught.value


def assert_failure_is_clean(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("tests.token_hygiene").error("token check failed", exc_info=exc)
    for link in chain(exc):
        assert_no_secret(str(link))
        assert_no_secret(repr(link))
        assert not isinstance(link, requests.RequestException)  # its .request holds the URL and headers
    assert_no_secret("".join(traceback.format_exception(exc)))
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(record.getMessage())


def test_debug_token_puts_neither_token_in_the_url(graph, sent):
    client = GraphClient(graph.url, "v26.0", token=lambda: ACCESS_TOKEN)
    status = check_token(client, ACCESS_TOKEN, APP_TOKEN)
    assert status.valid
    [request] = sent
    assert request.url is not None
    assert_no_secret(request.url)
    assert "input_token" not in request.url and "access_token" not in request.url


def test_a_refused_connection_leaves_no_token_in_the_exception_chain_or_the_logs(caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 logs each request line at DEBUG
    client = GraphClient(f"http://127.0.0.1:{free_port()}", "v26.0", token=lambda: ACCESS_TOKEN, timeout_seconds=2)
    exc = failure_of(client)
    assert isinstance(exc, GraphUnavailable)
    assert "ConnectionError" in str(exc) and "debug_token" in str(exc)
    assert_failure_is_clean(exc, caplog)


def test_a_timeout_leaves_no_token_in_the_exception_chain_or_the_logs(graph, caplog):
    caplog.set_level(logging.DEBUG)
    graph.sandbox.add_fault_spec({"kind": "slow", "route": "debug_token", "delay": 3, "count": 1})
    client = GraphClient(graph.url, "v26.0", token=lambda: ACCESS_TOKEN, timeout_seconds=0.5)
    exc = failure_of(client)
    assert isinstance(exc, GraphUnavailable) and "Timeout" in str(exc)
    assert_failure_is_clean(exc, caplog)


def test_a_token_a_caller_put_in_the_path_is_scrubbed_from_the_failure(caplog):
    caplog.set_level(logging.DEBUG)
    client = GraphClient(f"http://127.0.0.1:{free_port()}", "v26.0", token=lambda: ACCESS_TOKEN, timeout_seconds=2)
    with pytest.raises(GraphUnavailable) as caught:
        client.request("GET", f"me?access_token={ACCESS_TOKEN}&appsecret_proof={APP_SECRET}")
    assert_failure_is_clean(caught.value, caplog)


@pytest.mark.parametrize(
    "text",
    [
        f"url: /v26.0/debug_token?input_token={ACCESS_TOKEN}&access_token={APP_TOKEN} (Caused by x)",
        f"https://graph.facebook.com/me?fields=id&ACCESS_TOKEN={ACCESS_TOKEN}",
        f"appsecret_proof%3D{APP_SECRET}%26input_token%3D{ACCESS_TOKEN}",
        f"'Authorization': 'Bearer {APP_TOKEN}'",
    ],
)
def test_scrub_removes_every_token_spelling(text):
    cleaned = scrub(text)
    assert_no_secret(cleaned)
    assert "***" in cleaned

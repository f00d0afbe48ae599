"""Outbound HTTP clients read the proxy environment once, and keep per-call lookups only when it is set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import http_clients
from shared.storage.connection import StorageTarget, azurite_connection_string

ENVIRONMENT = (*http_clients.PER_CALL_SETTINGS, *http_clients.CA_BUNDLE_SETTINGS)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    http_clients.environment_needs_per_call_lookup.cache_clear()
    http_clients.ca_bundle.cache_clear()
    yield monkeypatch
    http_clients.environment_needs_per_call_lookup.cache_clear()
    http_clients.ca_bundle.cache_clear()


def test_without_proxy_settings_sessions_skip_the_per_call_environment_lookup(environment):
    session = http_clients.direct_session()
    assert session.trust_env is False and session.verify is True


def test_a_ca_bundle_variable_becomes_the_verify_path(environment):
    environment.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/private-ca.pem")
    session = http_clients.direct_session()
    assert session.trust_env is False and session.verify == "/etc/ssl/private-ca.pem"
    transport = http_clients.storage_transport(5, 15)
    assert transport.connection_config.verify == "/etc/ssl/private-ca.pem"


@pytest.mark.parametrize("name", ["HTTPS_PROXY", "https_proxy", "NETRC"])
def test_a_proxy_or_netrc_setting_keeps_requests_own_behaviour(environment, name):
    environment.setenv(name, "http://proxy.internal:3128")
    assert http_clients.direct_session().trust_env is True
    assert http_clients.storage_transport(5, 15)._use_env_settings is True


def test_storage_clients_carry_their_timeouts_on_the_shared_transport(environment):
    target = StorageTarget(connection_string=azurite_connection_string())
    client = target.queue_client("leads-inbound", connection_timeout=3, read_timeout=7)
    transport = client._client._client._pipeline._transport  # the azure-core transport the SDK calls
    assert transport._use_env_settings is False
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (3, 7)


def test_the_storage_transport_pools_enough_connections_for_every_concurrent_invocation(environment):
    transport = http_clients.storage_transport(5, 15)
    adapter = transport.session.get_adapter("http://127.0.0.1:10001/")
    assert adapter._pool_maxsize == http_clients.POOL_CONNECTIONS >= 16 + 8
    assert adapter.max_retries.total is False  # the SDK's retry policy is the only one

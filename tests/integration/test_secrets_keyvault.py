"""Secrets from Key Vault: read through a real `SecretClient`, cached for a TTL, never lost, never logged.

The SDK pipeline runs unchanged (challenge auth, retries, error mapping); only its HTTP hop goes to
`tests.support.keyvault.FakeKeyVault`. Without `KEY_VAULT_URL` the provider reads app settings only.
"""

from __future__ import annotations

import logging

import pytest
from azure.keyvault.secrets import SecretClient

from devhost.defaults import LOCAL_DEFAULTS
from shared.secrets import SecretProvider
from shared.settings import Settings, load_settings
from tests.support.keyvault import VAULT_URL, FakeCredential, FakeKeyVault

TTL = 300.0

IN_VAULT = {
    "facebook-app-secret": "vault-app-secret",
    "facebook-app-secret-previous": "vault-app-secret-previous",
    "facebook-verify-token": "vault-verify-token",
    "facebook-access-token": "vault-access-token-1",
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def settings() -> Settings:
    return load_settings({**LOCAL_DEFAULTS, "KEY_VAULT_URL": VAULT_URL})


@pytest.fixture
def vault() -> FakeKeyVault:
    return FakeKeyVault(secrets=dict(IN_VAULT))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential("fake-token")


@pytest.fixture
def provider(settings: Settings, vault: FakeKeyVault, clock: Clock, credential: FakeCredential) -> SecretProvider:
    return SecretProvider(settings, vault_client=lambda: vault.client(credential), ttl_seconds=TTL, clock=clock)


def test_values_come_from_the_vault(provider: SecretProvider):
    assert provider.access_token() == "vault-access-token-1"
    assert provider.verify_token() == "vault-verify-token"


def test_vault_reads_carry_the_credentials_bearer_token(provider: SecretProvider, vault: FakeKeyVault):
    provider.access_token()

    reads = vault.reads("facebook-access-token")
    assert [r.authorization for r in reads] == ["Bearer fake-token"]


def test_the_token_is_asked_for_the_vault_scope(provider: SecretProvider, credential: FakeCredential):
    provider.access_token()

    assert credential.scopes == [("https://vault.azure.net/.default",)]


def test_within_the_ttl_a_secret_is_read_from_the_vault_once(
    provider: SecretProvider, vault: FakeKeyVault, clock: Clock
):
    provider.access_token()
    clock.advance(TTL - 1)
    provider.access_token()

    assert len(vault.reads("facebook-access-token")) == 1


def test_a_rotated_access_token_takes_effect_after_the_ttl_without_rebuilding_anything(
    provider: SecretProvider, vault: FakeKeyVault, clock: Clock
):
    assert provider.access_token() == "vault-access-token-1"
    vault.secrets["facebook-access-token"] = "vault-access-token-2"

    clock.advance(TTL - 1)
    assert provider.access_token() == "vault-access-token-1"
    clock.advance(1)
    assert provider.access_token() == "vault-access-token-2"


def test_the_vault_client_is_built_once_and_reused(settings: Settings, vault: FakeKeyVault, clock: Clock):
    built: list[SecretClient] = []

    def build() -> SecretClient:
        built.append(vault.client())
        return built[-1]

    provider = SecretProvider(settings, vault_client=build, ttl_seconds=TTL, clock=clock)
    provider.access_token()
    provider.verify_token()
    clock.advance(TTL)
    provider.access_token()

    assert len(built) == 1


def test_a_secret_missing_from_the_vault_falls_back_to_its_app_setting(provider: SecretProvider, vault: FakeKeyVault):
    del vault.secrets["facebook-verify-token"]

    assert provider.verify_token() == LOCAL_DEFAULTS["FACEBOOK_VERIFY_TOKEN"]
    assert [r.status for r in vault.reads("facebook-verify-token")] == [404]


def test_an_unreachable_vault_keeps_the_last_value_read(provider: SecretProvider, vault: FakeKeyVault, clock: Clock):
    assert provider.access_token() == "vault-access-token-1"
    vault.secrets["facebook-access-token"] = "vault-access-token-2"
    vault.reachable = False
    clock.advance(TTL * 3)

    assert provider.access_token() == "vault-access-token-1"


def test_an_unreachable_vault_before_any_read_falls_back_to_the_app_setting(
    provider: SecretProvider, vault: FakeKeyVault
):
    vault.reachable = False

    assert provider.access_token() == LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]


def test_the_vault_is_read_again_once_it_is_reachable(provider: SecretProvider, vault: FakeKeyVault, clock: Clock):
    vault.reachable = False
    provider.access_token()
    vault.reachable = True
    clock.advance(TTL)

    assert provider.access_token() == "vault-access-token-1"


def test_an_unreachable_vault_is_not_asked_again_on_every_call(
    provider: SecretProvider, vault: FakeKeyVault, clock: Clock
):
    provider.access_token()
    vault.reachable = False
    clock.advance(TTL)
    provider.access_token()
    attempts = vault.refused

    clock.advance(1)
    provider.access_token()

    assert vault.refused == attempts


def test_app_secrets_are_the_current_then_the_previous(provider: SecretProvider):
    assert provider.app_secrets() == ("vault-app-secret", "vault-app-secret-previous")


def test_app_secrets_leave_out_a_previous_secret_set_nowhere(provider: SecretProvider, vault: FakeKeyVault):
    del vault.secrets["facebook-app-secret-previous"]

    assert provider.app_secrets() == ("vault-app-secret",)


def test_the_app_token_is_the_app_id_and_the_vault_app_secret(provider: SecretProvider):
    assert provider.app_token() == f"{LOCAL_DEFAULTS['FACEBOOK_APP_ID']}|vault-app-secret"


def test_no_secret_value_is_logged_when_the_vault_fails(
    provider: SecretProvider, vault: FakeKeyVault, clock: Clock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    provider.app_secrets()
    provider.verify_token()
    provider.access_token()
    vault.reachable = False
    clock.advance(TTL)

    provider.app_secrets()
    provider.verify_token()
    provider.access_token()

    assert "Key Vault read failed" in caplog.text
    leaked = [value for value in (*IN_VAULT.values(), "fake-token") if value in caplog.text]
    assert leaked == []


def test_without_a_client_given_the_provider_builds_one_for_key_vault_url(
    settings: Settings, vault: FakeKeyVault, monkeypatch: pytest.MonkeyPatch
):
    asked_for: list[str] = []

    def secret_client(url: str, credential: object, **kwargs: object) -> SecretClient:
        asked_for.append(url)
        return SecretClient(url, FakeCredential(), transport=vault.transport(), **kwargs)

    monkeypatch.setattr("azure.keyvault.secrets.SecretClient", secret_client)
    provider = SecretProvider(settings)

    assert provider.access_token() == "vault-access-token-1"
    assert asked_for == [VAULT_URL]


class TestWithoutKeyVault:
    """No `KEY_VAULT_URL`: every secret is its app setting and no vault client is ever built."""

    @pytest.fixture
    def settings(self) -> Settings:
        return load_settings(dict(LOCAL_DEFAULTS))

    def test_secrets_are_the_app_settings(self, settings: Settings):
        provider = SecretProvider(settings)

        assert provider.access_token() == LOCAL_DEFAULTS["FACEBOOK_ACCESS_TOKEN"]
        assert provider.verify_token() == LOCAL_DEFAULTS["FACEBOOK_VERIFY_TOKEN"]
        assert provider.app_secrets() == (LOCAL_DEFAULTS["FACEBOOK_APP_SECRET"],)
        assert provider.app_token() == f"{LOCAL_DEFAULTS['FACEBOOK_APP_ID']}|{LOCAL_DEFAULTS['FACEBOOK_APP_SECRET']}"

    def test_no_vault_client_is_built(self, settings: Settings, monkeypatch: pytest.MonkeyPatch):
        built: list[str] = []
        monkeypatch.setattr("azure.keyvault.secrets.SecretClient", lambda url, *a, **kw: built.append(url))
        provider = SecretProvider(settings)

        provider.access_token()
        provider.verify_token()
        provider.app_secrets()

        assert not provider.uses_key_vault
        assert built == []


def test_an_unresolved_key_vault_reference_is_never_used_as_a_secret(caplog):
    from devhost.defaults import LOCAL_DEFAULTS
    from shared.secrets import SecretProvider
    from shared.settings import load_settings

    reference = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/facebook-app-secret/)"
    settings = load_settings({**LOCAL_DEFAULTS, "FACEBOOK_APP_SECRET": reference})
    assert SecretProvider(settings).app_secrets() == ()
    assert "unresolved Key Vault reference" in caplog.text

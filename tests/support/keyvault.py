"""A fake Key Vault behind a real `SecretClient`: an azure-core transport that answers like the service.

The SDK's own pipeline runs unchanged (challenge-based auth, retries, error mapping); only the
HTTP hop is replaced. The vault first answers an unauthenticated request with the `401` bearer
challenge, then serves `GET /secrets/{name}` from `secrets`, `404 SecretNotFound` for a name it
does not hold, and raises `ServiceRequestError` while `reachable` is False. Every request is
recorded so a test can count vault reads and check the `Authorization` header.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import HttpTransport
from azure.keyvault.secrets import SecretClient

from tests.support.transport import transport_response

VAULT_URL = "https://test-vault.vault.azure.net/"
TENANT_ID = "8c3f1c6e-2b7a-4d2e-9f61-0d4b5a7e9c21"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", resource="https://vault.azure.net"'
VAULT_SCOPE = "https://vault.azure.net/.default"


class FakeCredential:
    """A `TokenCredential` that hands out one fixed bearer token and records the scopes asked for."""

    def __init__(self, token: str = "fake-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, expires_on=int(time.time()) + 3600)


@dataclass(frozen=True)
class VaultRequest:
    """One request the vault saw: the secret it named (if any), its bearer header and the answer."""

    method: str
    path: str
    secret_name: str | None
    authorization: str | None
    status: int


@dataclass
class FakeKeyVault:
    """The vault's state: secrets by name, a reachability switch, and every request received."""

    url: str = VAULT_URL
    secrets: dict[str, str] = field(default_factory=dict)
    reachable: bool = True
    requests: list[VaultRequest] = field(default_factory=list)
    refused: int = 0  # connection attempts made while unreachable

    def reads(self, name: str | None = None) -> list[VaultRequest]:
        """Authenticated secret reads that reached the vault (all names, or only `name`)."""
        return [
            r
            for r in self.requests
            if r.secret_name is not None and r.authorization and (name is None or r.secret_name == name)
        ]

    def transport(self) -> FakeVaultTransport:
        return FakeVaultTransport(self)

    def client(self, credential: FakeCredential | None = None) -> SecretClient:
        """A real `SecretClient` whose HTTP goes to this fake vault."""
        return SecretClient(self.url, credential or FakeCredential(), transport=self.transport())

    def answer(self, method: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for one request, as Key Vault would answer it."""
        path = urlsplit(url).path
        parts = [p for p in path.split("/") if p]
        name = parts[1] if len(parts) >= 2 and parts[0] == "secrets" else None
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        if not authorization or not authorization.startswith("Bearer "):
            status, extra, body = 401, {"WWW-Authenticate": CHALLENGE}, _error("Unauthorized", "AKV10000")
        elif method != "GET" or name is None:
            status, extra, body = 405, {}, _error("BadRequest", f"{method} {path} is not supported by the fake")
        elif name not in self.secrets:
            message = f"A secret with (name/id) {name} was not found in this key vault."
            status, extra, body = 404, {}, _error("SecretNotFound", message)
        else:
            status, extra, body = 200, {}, _secret_bundle(self.url, name, self.secrets[name])
        self.requests.append(VaultRequest(method, path, name, authorization, status))
        return status, {"Content-Type": "application/json; charset=utf-8", **extra}, body


class FakeVaultTransport(HttpTransport):  # type: ignore[type-arg]
    """An azure-core transport that sends every request to a `FakeKeyVault` instead of the network."""

    def __init__(self, vault: FakeKeyVault) -> None:
        self.vault = vault

    def send(self, request: Any, **kwargs: Any) -> Any:
        if not self.vault.reachable:
            self.vault.refused += 1
            raise ServiceRequestError(f"Failed to establish a connection to {urlsplit(request.url).netloc}")
        status, headers, body = self.vault.answer(request.method, request.url, dict(request.headers))
        return transport_response(request, status, headers, body)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: object) -> None:
        pass

    def sleep(self, duration: float) -> None:
        """Retry back-off costs no wall time against the fake."""


def _secret_bundle(vault_url: str, name: str, value: str) -> bytes:
    version = uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{value}").hex
    return json.dumps(
        {
            "value": value,
            "id": f"{vault_url.rstrip('/')}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": 1700000000,
                "updated": 1700000000,
                "recoveryLevel": "Recoverable+Purgeable",
            },
        }
    ).encode()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()

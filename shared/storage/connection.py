"""Where Azure Storage is: a connection string, or identity-based URIs as the Functions host reads them.

The host's own `AzureWebJobsStorage` connection may be a connection string (Azurite locally:
`UseDevelopmentStorage=true`) or identity-based settings (`AzureWebJobsStorage__accountName` or
`__queueServiceUri`/`__tableServiceUri`, `__credential=managedidentity`, `__clientId`). The app's
own queue and table clients follow the same settings, so one storage account serves both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.http_clients import storage_transport

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient
    from azure.storage.queue import QueueClient

# The Azurite development account's key is public and fixed (it is no secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# The storage SDK's own timeouts, kept when a caller gives none.
DEFAULT_CONNECTION_TIMEOUT = 20.0
DEFAULT_READ_TIMEOUT = 60.0


def azurite_connection_string(
    host: str = "127.0.0.1", blob: int = 10000, queue: int = 10001, table: int = 10002
) -> str:
    """The well-known Azurite development account, with explicit endpoints."""
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{blob}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue}/{AZURITE_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table}/{AZURITE_ACCOUNT};"
    )


def expand_connection_string(value: str) -> str:
    """`UseDevelopmentStorage=true` means the local Azurite account, as for the Functions host."""
    if value.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
        return azurite_connection_string()
    return value


@dataclass(frozen=True)
class StorageTarget:
    """A storage account reached by connection string or by Entra identity (managed identity in Azure)."""

    connection_string: str = ""
    queue_url: str = ""
    table_url: str = ""
    client_id: str = ""

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.client_id or None)

    def queue_client(self, queue: str, **options: Any) -> QueueClient:
        """A client of one queue; `options` go to the SDK (encoding policies, timeouts, retry)."""
        from azure.storage.queue import QueueClient

        options = with_transport(options)
        if self.connection_string:
            return QueueClient.from_connection_string(
                expand_connection_string(self.connection_string), queue, **options
            )
        return QueueClient(self.queue_url, queue, credential=self._credential(), **options)

    def table_service(self, **options: Any) -> TableServiceClient:
        """The account's table service client."""
        from azure.data.tables import TableServiceClient

        options = with_transport(options)
        if self.connection_string:
            return TableServiceClient.from_connection_string(
                expand_connection_string(self.connection_string), **options
            )
        return TableServiceClient(self.table_url, credential=self._credential(), **options)


def with_transport(options: dict[str, Any]) -> dict[str, Any]:
    """`options` with a transport that skips per-call proxy lookups, carrying the requested timeouts.

    Defaults are the storage SDK's own (20 s to connect, 60 s to read); a given transport is kept.
    """
    if "transport" in options:
        return options
    rest = dict(options)
    connect = rest.pop("connection_timeout", DEFAULT_CONNECTION_TIMEOUT)
    read = rest.pop("read_timeout", DEFAULT_READ_TIMEOUT)
    return {**rest, "transport": storage_transport(connect, read)}


def storage_target(value: str | StorageTarget) -> StorageTarget:
    """A target from a connection string (tests, local) or a ready target (settings in Azure)."""
    return value if isinstance(value, StorageTarget) else StorageTarget(connection_string=value)


def storage_from_settings(values: dict[str, str]) -> StorageTarget | None:
    """The target the `AzureWebJobsStorage` settings describe, or None when none is set."""
    connection = values.get("AzureWebJobsStorage", "")
    if connection:
        return StorageTarget(connection_string=connection)
    account = values.get("AzureWebJobsStorage__accountName", "")
    queue_url = values.get("AzureWebJobsStorage__queueServiceUri", "") or (
        f"https://{account}.queue.core.windows.net" if account else ""
    )
    table_url = values.get("AzureWebJobsStorage__tableServiceUri", "") or (
        f"https://{account}.table.core.windows.net" if account else ""
    )
    if not queue_url or not table_url:
        return None
    return StorageTarget(
        queue_url=queue_url, table_url=table_url, client_id=values.get("AzureWebJobsStorage__clientId", "")
    )


class LazyTable:
    """One table's client, made on first use (creating the table) and shared by every thread.

    A failure to make it (storage away) is raised to the caller and tried again on the next call.
    """

    def __init__(self, storage: str | StorageTarget, table: str, timeout_seconds: float, **options: Any) -> None:
        self.storage = storage_target(storage)
        self.table = table
        self._options = {"connection_timeout": timeout_seconds, "read_timeout": timeout_seconds, **options}
        self._client: TableClient | None = None
        self._lock = threading.Lock()

    def client(self) -> TableClient:
        with self._lock:
            if self._client is None:
                service = self.storage.table_service(**self._options)
                self._client = service.create_table_if_not_exists(self.table)
            return self._client

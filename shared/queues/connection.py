"""Storage connection strings: `UseDevelopmentStorage=true` expands to the public Azurite account."""

from __future__ import annotations

# The Azurite development account's key is public and fixed (it is no secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


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

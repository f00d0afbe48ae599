"""Small shared state in Azure Table Storage: what every instance must see without waking the database.

A key holds one JSON object (an entity in the `agentstate` table, PartitionKey `state`). It has the
`get_state`/`put_state` shape of the store's `coordination` state, so a caller such as the Graph
throttle gate takes either. Reading a table costs no SQL compute, so the timers can ask it every
minute and let a serverless database pause (see `shared/storage/idle.py`).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from shared.errors import TransientError
from shared.storage.connection import LazyTable, StorageTarget
from shared.storage.names import STATE_TABLE

PARTITION = "state"


class SharedState(Protocol):
    """Key/value JSON state shared by every instance (`TableState`, or the store's `coordination`)."""

    def get_state(self, key: str) -> dict[str, Any] | None: ...

    def put_state(self, key: str, value: dict[str, Any]) -> None: ...


class StateUnavailable(TransientError):
    """The state table cannot be read or written right now."""


class TableState:
    """`SharedState` over one Table Storage table; every failure is `StateUnavailable`."""

    def __init__(self, storage: str | StorageTarget, table: str = STATE_TABLE, timeout_seconds: float = 5.0) -> None:
        self._table = LazyTable(storage, table, timeout_seconds, retry_total=2)

    def get_state(self, key: str) -> dict[str, Any] | None:
        """The object last put under `key`, or None."""
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            entity = self._table.client().get_entity(PARTITION, key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise StateUnavailable(f"state table unavailable: {type(exc).__name__}") from exc
        value = json.loads(str(entity.get("value") or "null"))
        return value if isinstance(value, dict) else None

    def put_state(self, key: str, value: dict[str, Any]) -> None:
        """Replace the object under `key` (last writer wins)."""
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        entity = {"PartitionKey": PARTITION, "RowKey": key, "value": json.dumps(value, separators=(",", ":"))}
        try:
            self._table.client().upsert_entity(entity, mode=UpdateMode.REPLACE)
        except AzureError as exc:
            raise StateUnavailable(f"state table unavailable: {type(exc).__name__}") from exc

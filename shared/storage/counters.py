"""Day counters in Azure Table Storage, shared by every instance (for example ignored webhook content).

One entity per (UTC day, counter name); increments use optimistic concurrency on the ETag, so
concurrent instances never lose a count.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from shared.storage.connection import LazyTable, StorageTarget
from shared.storage.names import COUNTERS_TABLE

_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")


class TableCounters:
    """Named per-day counters; `increment` is safe across processes."""

    def __init__(self, storage: str | StorageTarget, table: str = COUNTERS_TABLE, timeout_seconds: float = 5.0) -> None:
        self._table = LazyTable(storage, table, timeout_seconds, retry_total=2)

    def increment(self, name: str, by: int = 1, day: datetime | None = None) -> int:
        """Add `by` to today's counter `name` and return its new value."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

        client = self._table.client()
        partition = (day or datetime.now(UTC)).strftime("%Y-%m-%d")
        row = _UNSAFE.sub("_", name)[:200]
        for _ in range(20):
            try:
                entity = client.get_entity(partition, row)
            except ResourceNotFoundError:
                try:
                    client.create_entity({"PartitionKey": partition, "RowKey": row, "count": by})
                    return by
                except ResourceExistsError:
                    continue
            value = int(entity.get("count", 0)) + by
            entity["count"] = value
            try:
                client.update_entity(
                    entity, etag=entity.metadata["etag"], match_condition=MatchConditions.IfNotModified
                )
                return value
            except ResourceModifiedError:
                continue
        raise RuntimeError(f"counter {row} stayed contended")

    def totals(self, day: datetime | None = None) -> dict[str, int]:
        """Every counter of one UTC day (today by default)."""
        partition = (day or datetime.now(UTC)).strftime("%Y-%m-%d")
        entities = self._table.client().query_entities("PartitionKey eq @pk", parameters={"pk": partition})
        return {str(e["RowKey"]): int(e.get("count", 0)) for e in entities}

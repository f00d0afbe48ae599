"""Lead storage: capability stores over one schema (`schema.py`) and a slim backend (SQLite or Azure SQL).

`Store` is only their composition: `store.leads`, `store.outbox`, `store.coordination`,
`store.failed_events`, `store.stats`, `store.deliveries`, plus `migrate`, `ping` and the audit log.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from shared.store.audit import write_audit
from shared.store.backend import Backend
from shared.store.coordination import CoordinationStore
from shared.store.database import Database
from shared.store.deliveries import DeliveryRouting, DeliveryStore
from shared.store.failed_events import FailedEventStore
from shared.store.leads import LeadsStore
from shared.store.outbox import OutboxStore
from shared.store.stats import StatsStore


class Store:
    """The agent's storage over one backend, split by capability."""

    def __init__(
        self, backend: Backend, migrate_on_first_use: bool = False, routing: DeliveryRouting | None = None
    ) -> None:
        """`routing`: the destinations a stored lead, an alert and a stage are delivered to (none by default)."""
        self.backend = backend
        self.db = Database(backend, migrate_on_first_use)
        self.leads = LeadsStore(self.db, routing)
        self.outbox = OutboxStore(self.db)
        self.coordination = CoordinationStore(self.db, routing)
        self.deliveries = DeliveryStore(self.db, routing)
        self.failed_events = FailedEventStore(self.db)
        self.stats = StatsStore(self.db)

    def migrate(self) -> int:
        """Apply pending migrations (safe with concurrent starts); the schema version."""
        return self.db.migrate()

    def schema_version(self) -> int:
        return self.db.schema_version()

    def ping(self) -> float:
        """Run a trivial query; return its latency in milliseconds (raises `StoreUnavailable`)."""
        started = time.perf_counter()
        with self.db.read() as tx:
            tx.value(int, "SELECT 1")
        return (time.perf_counter() - started) * 1000

    def audit(self, action: str, facebook_lead_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
        """Write one audit row (ids and reasons only, never lead data)."""
        with self.db.write() as tx:
            write_audit(tx, action, facebook_lead_id, None, detail, datetime.now(UTC))


__all__ = ["Store"]

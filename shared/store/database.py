"""The schema's keeper: applies `schema.migrations` once, safely with many instances, then hands out transactions.

Every capability store (`leads`, `outbox`, `coordination`, `failed_events`, `stats`) reads and
writes through one `Database`, which migrates before the first use when asked to (retried on the
next use if the database is down).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from shared.store.backend import Backend, Sql, Tx
from shared.store.schema import migrations

ENSURE_VERSIONS = Sql(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    mssql=(
        "IF OBJECT_ID(N'dbo.schema_migrations', N'U') IS NULL"
        " CREATE TABLE dbo.schema_migrations (version INT NOT NULL PRIMARY KEY, applied_at DATETIME2(3) NOT NULL)"
    ),
)
CURRENT_VERSION = "SELECT MAX(version) FROM schema_migrations"
RECORD_VERSION = "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)"


class Database:
    """A backend plus its schema: `write()` and `read()` transactions over a migrated database."""

    def __init__(self, backend: Backend, migrate_on_first_use: bool = False) -> None:
        self.backend = backend
        self._auto_migrate = migrate_on_first_use
        self._migrated = False
        self._lock = threading.Lock()

    def write(self) -> AbstractContextManager[Tx]:
        self._ensure_schema()
        return self.backend.write()

    def read(self) -> AbstractContextManager[Tx]:
        self._ensure_schema()
        return self.backend.read()

    def _ensure_schema(self) -> None:
        if self._auto_migrate and not self._migrated:
            with self._lock:
                if not self._migrated:
                    self.migrate()

    def migrate(self) -> int:
        """Apply every migration not yet applied, in one transaction; return the schema version.

        Safe when several instances start at once: the version is read under an exclusive lock
        (SQLite's write lock; `sp_getapplock` on Azure SQL), so the second one waits, then finds
        nothing left to do. Idempotent.
        """
        with self.backend.write() as tx:
            self.backend.lock_migrations(tx)
            tx.execute(ENSURE_VERSIONS)
            version = tx.value(int, CURRENT_VERSION) or 0
            for migration in migrations(self.backend.dialect):
                if migration.version <= version:
                    continue
                for statement in migration.statements:
                    tx.execute(statement)
                tx.execute(RECORD_VERSION, (migration.version, datetime.now(UTC)))
                version = migration.version
        self._migrated = True
        return version

    def schema_version(self) -> int:
        with self.read() as tx:
            return tx.value(int, CURRENT_VERSION) or 0

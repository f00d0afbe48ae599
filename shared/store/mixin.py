"""The base of the store's parts: what each mixin may use from `LeadStore` (backend, statements, audit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from shared.store.base_types import Cursor, Statements, StoreBackend

ID_CHUNK = 500  # ids per `IN (...)` list: well under SQL Server's 2,100 parameters, twice over


class StoreMixin:
    """Declares what `LeadStore` provides to the mixins it is made of."""

    backend: StoreBackend
    _statements: Statements

    def _write(self) -> AbstractContextManager[Cursor]:  # provided by LeadStore
        raise RuntimeError("mixin used without LeadStore")

    def _read(self) -> AbstractContextManager[Cursor]:  # provided by LeadStore
        raise RuntimeError("mixin used without LeadStore")

    def _audit(
        self, cur: Cursor, action: str, lead_id: str | None, source: str | None, detail: dict[str, Any] | None, at: Any
    ) -> None:  # provided by LeadStore
        raise RuntimeError("mixin used without LeadStore")

    def _now(self) -> Any:
        return self.backend.to_db_time(datetime.now(UTC))

    def _ids_found(
        self, statement: str, ids: Sequence[str], params: Callable[[list[str]], tuple[Any, ...]] = tuple
    ) -> set[str]:
        """The first column of `statement`'s rows for `ids`, asked 500 ids at a time.

        `statement` holds an `{params}` placeholder list; `params` turns a chunk into its parameters.
        """
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        with self._read() as cur:
            for start in range(0, len(unique), ID_CHUNK):
                chunk = unique[start : start + ID_CHUNK]
                cur.execute(statement.format(params=", ".join("?" * len(chunk))), params(chunk))
                found.update(str(row[0]) for row in cur.fetchall())
        return found

"""The base of the store's parts: what each mixin may use from `LeadStore` (backend, statements, audit)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from shared.store.base_types import Cursor, Statements, StoreBackend


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

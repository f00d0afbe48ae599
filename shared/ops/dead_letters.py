"""The dead letters as operators see them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from shared.errors import QueueUnavailable
from shared.store import Store


def list_failed_events(store: Store, sweep: Callable[[], object], status: str, limit: int) -> list[dict[str, Any]]:
    """Dead letters in the ops shape, newest first, after `sweep` so a fresh poison message is listed too.

    A queue that cannot be swept does not hide what is already recorded.
    """
    with suppress(QueueUnavailable):
        sweep()
    return [event.as_json() for event in store.failed_events.list_failed_events(status, limit)]

"""The throttle gate: once Meta says "slow down", no Graph call leaves until the regain time.

Meta's advice is to stop calling while limited (more calls lengthen the block). The gate is
kept in memory and, when shared state is given (the `agentstate` table in the app), there too,
so every instance sees it without a database query on the Graph call path.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping

from shared.errors import GraphThrottled, TransientError
from shared.graph.errors import regain_seconds
from shared.logs import get_logger
from shared.storage.state import SharedState

log = get_logger(__name__)

STATE_KEY = "graph_throttle"
APP_USAGE_LIMIT = 100  # percent; Meta throttles at 100
DEFAULT_BLOCK_SECONDS = 60.0


def usage_block_seconds(headers: Mapping[str, str]) -> float:
    """Seconds to stop calling, read from a successful answer's usage headers (0 when fine)."""
    regain = regain_seconds(headers)
    if regain > 0:
        return regain
    for key, value in headers.items():
        if key.lower() == "x-app-usage":
            try:
                usage = json.loads(value)
            except ValueError:
                return 0.0
            if isinstance(usage, dict) and any(
                isinstance(v, int | float) and v >= APP_USAGE_LIMIT for v in usage.values()
            ):
                return DEFAULT_BLOCK_SECONDS
    return 0.0


class ThrottleGate:
    """Blocks Graph calls until a regain time; shared through `state` (a `SharedState`) when given.

    A block is for the whole app (scope None: app and token limits) or for one page (a page's own
    limits: 32, 80001, 80005 …, and its `X-Business-Use-Case-Usage`), so a throttled page does not
    stop the others. `check(page)` looks at both the app's block and that page's.
    """

    def __init__(
        self,
        state: Callable[[], SharedState] | None = None,
        clock: Callable[[], float] = time.time,
        refresh_seconds: float = 5.0,
    ) -> None:
        self._state = state
        self._clock = clock
        self._refresh = refresh_seconds
        self._until: dict[str | None, float] = {}
        self._checked_at: dict[str | None, float] = {}
        self._lock = threading.Lock()

    def blocked_until(self, page: str | None = None) -> float:
        """Epoch seconds until which calls (for `page`) are blocked (0 when open)."""
        scopes: tuple[str | None, ...] = (None,) if page is None else (None, page)
        return max(self._scope_until(scope) for scope in scopes)

    def _scope_until(self, scope: str | None) -> float:
        now = self._clock()
        with self._lock:
            stale = now - self._checked_at.get(scope, -1e18) >= self._refresh
        if stale and self._state is not None:
            shared = self._read_shared(scope)
            with self._lock:
                self._checked_at[scope] = now
                self._until[scope] = max(self._until.get(scope, 0.0), shared)
        with self._lock:
            until = self._until.get(scope, 0.0)
            return until if until > now else 0.0

    def check(self, page: str | None = None) -> None:
        """Raise `GraphThrottled` with the remaining wait when calls (for `page`) are blocked."""
        until = self.blocked_until(page)
        if until:
            remaining = until - self._clock()
            raise GraphThrottled(f"Graph calls paused for {remaining:.0f}s more (rate limited)", remaining)

    def block(self, seconds: float, reason: str, page: str | None = None) -> None:
        """Stop calls (for `page` only, when given) for `seconds` from now (never shortens a block)."""
        until = self._clock() + max(seconds, 1.0)
        with self._lock:
            if until <= self._until.get(page, 0.0):
                return
            self._until[page] = until
        dims = {"stage": "graph", "outcome": "throttled", "page_id": page}
        log.warning("graph: throttled, pausing calls for %.0fs", seconds, extra=dims)
        if self._state is not None:
            try:
                shared = self._read_shared(page)
                if shared >= until:  # another instance already holds a longer block: keep it
                    with self._lock:
                        self._until[page] = max(self._until.get(page, 0.0), shared)
                    return
                self._state().put_state(_key(page), {"until": until, "reason": reason[:300]})
            except TransientError:
                log.warning("graph: throttle kept in memory only (store unavailable)")

    def _read_shared(self, scope: str | None) -> float:
        try:
            state = self._state().get_state(_key(scope)) if self._state is not None else None
        except TransientError:
            return 0.0
        return float(state.get("until", 0.0)) if state else 0.0


def _key(scope: str | None) -> str:
    return STATE_KEY if scope is None else f"{STATE_KEY}:{scope}"

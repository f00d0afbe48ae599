"""The integration's token state: pause lead fetches while the token is invalid, resume by itself.

A token error opens the `token_invalid` incident (`token_invalid:<page id>` for a page with its own
token) and pauses that token's fetches until a re-check time; after
it, one fetch is let through as a probe (like a half-open circuit breaker). A probe or a
`debug_token` check that succeeds closes the incident and everything resumes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

from shared.errors import IntegrationPaused, TokenInvalid, TransientError
from shared.logs import get_logger
from shared.monitoring.incidents import IncidentKind, close_incident, open_incident
from shared.store import Store

log = get_logger(__name__)

STATE_KEY = "integration_token"


class IntegrationMonitor:
    """Shared token state (in `state`), one per token scope, read at most every `refresh_seconds` per process.

    A page with its own token (`FACEBOOK_PAGE_TOKEN_{page_id}`) is its own scope: its dead token pauses
    and alerts for that page only (`token_invalid:<page id>`). Every other page shares the access
    token's scope (`token_invalid`). `scope(page_id)` says which: the page id, or None for the shared one.
    """

    def __init__(
        self,
        store: Callable[[], Store],
        recheck_seconds: float = 60.0,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
        scope: Callable[[str], str | None] = lambda page_id: None,
    ) -> None:
        self._store = store
        self._recheck = recheck_seconds
        self._refresh = refresh_seconds
        self._clock = clock
        self._scope = scope
        self._lock = threading.Lock()
        self._cached: dict[str | None, tuple[float, dict[str, Any]]] = {}

    def scope_of(self, page_id: str | None) -> str | None:
        """The token scope of a page: its id when it has its own token, else None (the shared token)."""
        return None if page_id is None else self._scope(page_id)

    def _state(self, scope: str | None) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            read_at, cached = self._cached.get(scope, (-1e18, {}))
            if now - read_at < self._refresh:
                return cached
        try:
            state = self._store().coordination.get_state(state_key(scope)) or {}
        except TransientError:
            state = cached
        with self._lock:
            self._cached[scope] = (now, state)
        return state

    def check_fetch_allowed(self, page_id: str | None = None) -> None:
        """Raise `IntegrationPaused` while the page's token is known bad and its re-check time is ahead."""
        scope = self.scope_of(page_id)
        state = self._state(scope)
        if state.get("status") == "invalid" and self._clock() < float(state.get("recheck_at", 0)):
            whose = "the access token" if scope is None else f"page {scope}'s token"
            raise IntegrationPaused(f"lead fetches paused: {whose} is invalid (see /api/health/facebook)")

    def token_invalid(self, exc: TokenInvalid, page_id: str | None = None) -> None:
        """Record a token error: pause that scope's fetches until the re-check time, open its incident once."""
        scope = self.scope_of(page_id)
        now = self._clock()
        detail: dict[str, Any] = {"code": exc.code, "subcode": exc.subcode}
        if scope is not None:
            detail["page_id"] = scope
        state = {"status": "invalid", "since": now, "recheck_at": now + self._recheck, **detail}
        try:
            store = self._store()
            previous = store.coordination.get_state(state_key(scope)) or {}
            if previous.get("status") == "invalid":
                state["since"] = previous.get("since", now)
            store.coordination.put_state(state_key(scope), state)
            open_incident(store, incident_kind(scope), detail)
        except TransientError:
            log.warning("integration: token state kept in memory only (store unavailable)")
        with self._lock:
            self._cached[scope] = (now, state)

    def token_ok(self, page_id: str | None = None) -> None:
        """Record a working token: resume that scope's fetches, resolve its incident (once)."""
        scope = self.scope_of(page_id)
        if self._state(scope).get("status") != "invalid":
            return
        now = self._clock()
        state = {"status": "ok", "since": now}
        try:
            store = self._store()
            store.coordination.put_state(state_key(scope), state)
            close_incident(store, incident_kind(scope))
        except TransientError:
            log.warning("integration: token recovery kept in memory only (store unavailable)")
        with self._lock:
            self._cached[scope] = (now, state)


def state_key(scope: str | None) -> str:
    return STATE_KEY if scope is None else f"{STATE_KEY}:{scope}"


def incident_kind(scope: str | None) -> IncidentKind:
    """`token_invalid`, or `token_invalid:<page id>` for a page with its own token."""
    return "token_invalid" if scope is None else cast(IncidentKind, f"token_invalid:{scope}")

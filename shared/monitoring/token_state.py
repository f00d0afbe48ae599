"""The integration's token state: pause lead fetches while the token is invalid, resume by itself.

A token error opens the `token_invalid` incident and pauses fetches until a re-check time; after
it, one fetch is let through as a probe (like a half-open circuit breaker). A probe or a
`debug_token` check that succeeds closes the incident and everything resumes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from shared.errors import IntegrationPaused, TokenInvalid, TransientError
from shared.logs import get_logger
from shared.monitoring.incidents import close_incident, open_incident
from shared.store import Store

log = get_logger(__name__)

STATE_KEY = "integration_token"


class IntegrationMonitor:
    """Shared token state (in `state`), read at most every `refresh_seconds` per process."""

    def __init__(
        self,
        store: Callable[[], Store],
        recheck_seconds: float = 60.0,
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._recheck = recheck_seconds
        self._refresh = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, Any] = {}
        self._read_at = -1e18

    def _state(self) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            if now - self._read_at < self._refresh:
                return self._cached
        try:
            state = self._store().coordination.get_state(STATE_KEY) or {}
        except TransientError:
            state = self._cached
        with self._lock:
            self._cached, self._read_at = state, now
        return state

    def check_fetch_allowed(self) -> None:
        """Raise `IntegrationPaused` while the token is known bad and the re-check time is ahead."""
        state = self._state()
        if state.get("status") == "invalid" and self._clock() < float(state.get("recheck_at", 0)):
            raise IntegrationPaused("lead fetches paused: the access token is invalid (see /api/health)")

    def token_invalid(self, exc: TokenInvalid) -> None:
        """Record a token error: pause fetches until the re-check time, open the incident once."""
        now = self._clock()
        detail = {"code": exc.code, "subcode": exc.subcode}
        state = {"status": "invalid", "since": now, "recheck_at": now + self._recheck, **detail}
        try:
            store = self._store()
            previous = store.coordination.get_state(STATE_KEY) or {}
            if previous.get("status") == "invalid":
                state["since"] = previous.get("since", now)
            store.coordination.put_state(STATE_KEY, state)
            open_incident(store, "token_invalid", detail)
        except TransientError:
            log.warning("integration: token state kept in memory only (store unavailable)")
        with self._lock:
            self._cached, self._read_at = state, now

    def token_ok(self) -> None:
        """Record a working token: resume fetches, resolve the incident (once)."""
        if self._state().get("status") != "invalid":
            return
        now = self._clock()
        state = {"status": "ok", "since": now}
        try:
            store = self._store()
            store.coordination.put_state(STATE_KEY, state)
            close_incident(store, "token_invalid")
        except TransientError:
            log.warning("integration: token recovery kept in memory only (store unavailable)")
        with self._lock:
            self._cached, self._read_at = state, now

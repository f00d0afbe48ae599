"""Access tokens the sandbox accepts: valid ones, expired ones (190/463), and the app token for `debug_token`.

Tokens are plain strings; every valid token behaves as a never-expiring Page token of the first
page. Expiring a token through the control API makes it fail exactly as an expired Meta session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from fakes.sandbox.errors import expired_token, expired_token_message, invalid_token

APP_NAME = "Sandbox Lead App"
TOKEN_SCOPES = (
    "leads_retrieval",
    "pages_manage_metadata",
    "pages_show_list",
    "pages_read_engagement",
    "ads_management",
)
DATA_ACCESS_SECONDS = 90 * 24 * 3600


class TokenBook:
    """The valid and expired tokens; thread-safe. `app_secret=None` accepts any `{app_id}|…` app token."""

    def __init__(
        self,
        tokens: Iterable[str],
        app_id: str,
        app_secret: str | None,
        profile_id: str,
        clock: Callable[[], float],
    ) -> None:
        self._lock = threading.Lock()
        self._app_id = app_id
        self._app_secret = app_secret
        self._profile_id = profile_id
        self._clock = clock
        self._issued_at = int(clock())
        self._valid: set[str] = set(tokens)
        self._expired: dict[str, float] = {}

    def is_app_token(self, token: str) -> bool:
        """Whether `token` is this app's `{app-id}|{app-secret}` token."""
        app_id, _, secret = token.partition("|")
        return app_id == self._app_id and bool(secret) and (self._app_secret is None or secret == self._app_secret)

    def authorize(self, token: str | None, *, app_token_ok: bool = False) -> None:
        """Return when `token` may call; raise 190 (unknown or missing) or 190/463 (expired) otherwise."""
        with self._lock:
            if token and token in self._valid:
                return
            expired_at = self._expired.get(token) if token else None
        if token and app_token_ok and self.is_app_token(token):
            return
        if expired_at is not None:
            raise expired_token(expired_at, self._clock())
        raise invalid_token()

    def replace(self, valid: Iterable[str] | None = None, expired: Iterable[str] | None = None) -> None:
        """Replace the valid tokens (when `valid` is given), then expire each of `expired` now."""
        with self._lock:
            if valid is not None:
                self._valid = set(valid)
                for token in self._valid:
                    self._expired.pop(token, None)
            for token in expired or ():
                self._valid.discard(token)
                self._expired[token] = self._clock()

    def describe(self, input_token: str) -> dict[str, Any]:
        """`GET /debug_token`'s `data` for a token: valid, expired (190/463) or unknown (190)."""
        with self._lock:
            valid = input_token in self._valid
            expired_at = self._expired.get(input_token)
        page_token = {
            "app_id": self._app_id,
            "type": "PAGE",
            "application": APP_NAME,
            "data_access_expires_at": self._issued_at + DATA_ACCESS_SECONDS,
            "issued_at": self._issued_at,
            "scopes": list(TOKEN_SCOPES),
            "profile_id": self._profile_id,
        }
        if valid:
            return {**page_token, "expires_at": 0, "is_valid": True}
        if expired_at is not None:
            error = {"code": 190, "message": expired_token_message(expired_at, self._clock()), "subcode": 463}
            return {**page_token, "expires_at": int(expired_at), "is_valid": False, "error": error}
        if self.is_app_token(input_token):
            return {"app_id": self._app_id, "type": "APP", "application": APP_NAME, "is_valid": True, "scopes": []}
        error = {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"}
        return {"is_valid": False, "scopes": [], "error": error}

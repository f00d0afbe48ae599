"""Access tokens the sandbox accepts: global ones, Page tokens bound to one page, expired ones, the app token.

A global token (the agent's `FACEBOOK_ACCESS_TOKEN`, a system-user token in Meta's terms) serves
every page. A Page token (`FACEBOOK_PAGE_TOKEN_{page_id}`) serves only its page: that page's
`leadgen_forms` and `subscribed_apps`, its forms and their leads; using it on another page's
objects answers Meta's `(#200) Permissions error`. Expiring a token through the control API makes
it, and only it, fail as an expired Meta session (190/463); `debug_token` describes each kind the
way Meta does (`PAGE` with `profile_id`, `SYSTEM_USER`, `APP`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fakes.sandbox.errors import expired_token, expired_token_message, invalid_token, permission_denied

APP_NAME = "Sandbox Lead App"
TOKEN_SCOPES = (
    "leads_retrieval",
    "pages_manage_metadata",
    "pages_show_list",
    "pages_read_engagement",
    "ads_management",
)
DATA_ACCESS_SECONDS = 90 * 24 * 3600
SYSTEM_USER_ID = "100000000000777"


class TokenBook:
    """Global tokens, Page tokens (token → page id) and expired tokens; thread-safe.

    `app_secret=None` accepts any `{app_id}|…` app token.
    """

    def __init__(
        self,
        tokens: Iterable[str],
        app_id: str,
        app_secret: str | None,
        clock: Callable[[], float],
        page_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._app_id = app_id
        self._app_secret = app_secret
        self._clock = clock
        self._issued_at = int(clock())
        self._global: set[str] = set(tokens)
        self._page_of: dict[str, str] = {}
        self._expired: dict[str, float] = {}
        for page_id, token in (page_tokens or {}).items():
            self._bind(page_id, token)

    def _bind(self, page_id: str, token: str) -> None:
        self._global.discard(token)
        self._page_of[token] = page_id
        self._expired.pop(token, None)

    def is_app_token(self, token: str) -> bool:
        """Whether `token` is this app's `{app-id}|{app-secret}` token."""
        app_id, _, secret = token.partition("|")
        return app_id == self._app_id and bool(secret) and (self._app_secret is None or secret == self._app_secret)

    def authorize(self, token: str | None, *, app_token_ok: bool = False) -> None:
        """Return when `token` may call at all; raise 190 (unknown or missing) or 190/463 (expired) otherwise."""
        with self._lock:
            known = bool(token) and (token in self._global or token in self._page_of)
            expired_at = self._expired.get(token) if token else None
        if known and expired_at is None:
            return
        if token and app_token_ok and self.is_app_token(token):
            return
        if expired_at is not None:
            raise expired_token(expired_at, self._clock())
        raise invalid_token()

    def authorize_page(self, token: str | None, page_id: str) -> None:
        """Return when `token` reaches `page_id`'s objects; `(#200) Permissions error` for another page's token."""
        with self._lock:
            bound = self._page_of.get(token) if token else None
        if bound is not None and bound != page_id:
            raise permission_denied()

    def page_tokens(self) -> dict[str, str]:
        """Page id → its Page token (valid or expired)."""
        with self._lock:
            return {page_id: token for token, page_id in self._page_of.items()}

    def add_page_token(self, page_id: str, token: str) -> None:
        """Bind `token` to `page_id` as a valid Page token (a renewed one is valid again)."""
        with self._lock:
            self._bind(page_id, token)

    def replace(self, valid: Iterable[str] | None = None, expired: Iterable[str] | None = None) -> None:
        """Replace the global tokens (when `valid` is given), then expire each of `expired` now.

        A Page token listed in `valid` is renewed and stays bound to its page.
        """
        with self._lock:
            if valid is not None:
                renewed = set(valid)
                self._global = {token for token in renewed if token not in self._page_of}
                for token in renewed:
                    self._expired.pop(token, None)
            for token in expired or ():
                self._expired[token] = self._clock()

    def describe(self, input_token: str) -> dict[str, Any]:
        """`GET /debug_token`'s `data` for a token: PAGE, SYSTEM_USER or APP; valid, expired (190/463) or unknown."""
        with self._lock:
            page_id = self._page_of.get(input_token)
            known = page_id is not None or input_token in self._global
            expired_at = self._expired.get(input_token)
        if not known and expired_at is None:
            if self.is_app_token(input_token):
                return {"app_id": self._app_id, "type": "APP", "application": APP_NAME, "is_valid": True, "scopes": []}
            error = {"code": 190, "message": "Invalid OAuth access token - Cannot parse access token"}
            return {"is_valid": False, "scopes": [], "error": error}
        described: dict[str, Any] = {
            "app_id": self._app_id,
            "type": "SYSTEM_USER" if page_id is None else "PAGE",
            "application": APP_NAME,
            "data_access_expires_at": self._issued_at + DATA_ACCESS_SECONDS,
            "issued_at": self._issued_at,
            "scopes": list(TOKEN_SCOPES),
            "user_id": SYSTEM_USER_ID,
        }
        if page_id is not None:
            described["profile_id"] = page_id
        if expired_at is None:
            return {**described, "expires_at": 0, "is_valid": True}
        error = {"code": 190, "message": expired_token_message(expired_at, self._clock()), "subcode": 463}
        return {**described, "expires_at": int(expired_at), "is_valid": False, "error": error}

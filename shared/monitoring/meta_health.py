"""Meta-side health, checked on every poll: the token (`debug_token`) and each page's subscription.

A page whose `subscribed_apps` no longer lists our app with `leadgen` is re-subscribed at once
(`POST /{page-id}/subscribed_apps`) and reported; a silently dropped subscription is the
most-reported cause of missed leads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.errors import LeadAgentError, TokenInvalid
from shared.graph.client import GraphClient


@dataclass
class TokenStatus:
    """What `debug_token` says of the access token (never the token itself)."""

    valid: bool
    expires_at: str | None = None
    scopes: list[str] = field(default_factory=list)
    token_type: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "expires_at": self.expires_at,
            "scopes": self.scopes,
            "type": self.token_type,
            "error": self.error,
        }


@dataclass
class SubscriptionStatus:
    """Whether our app is installed on a page with `leadgen`, and whether we just restored it."""

    page_id: str
    subscribed: bool
    restored: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"page_id": self.page_id, "subscribed": self.subscribed, "restored": self.restored, "error": self.error}


def check_token(graph: GraphClient, access_token: str, app_token: str) -> TokenStatus:
    """`GET /debug_token` for the access token, asked with the app token when there is one.

    Raises `TokenInvalid` when Meta refuses the call itself with a token error.
    """
    body = graph.request("GET", "debug_token", {"input_token": access_token}, token=app_token or None).body
    data = body.get("data") or {}
    expires = data.get("expires_at")
    expires_at = None
    if isinstance(expires, int) and expires > 0:
        expires_at = datetime.fromtimestamp(expires, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    return TokenStatus(
        valid=bool(data.get("is_valid")),
        expires_at=expires_at if expires else "never",
        scopes=[str(s) for s in data.get("scopes") or []],
        token_type=data.get("type"),
        error=None if error is None else f"code {error.get('code')} subcode {error.get('subcode')}",
    )


def token_error(status: TokenStatus) -> TokenInvalid:
    """The exception an invalid `debug_token` answer stands for."""
    return TokenInvalid(f"debug_token: token invalid ({status.error or 'no reason given'})")


def is_subscribed(graph: GraphClient, page_id: str, app_id: str) -> bool:
    """Whether the page's `subscribed_apps` lists our app (any app when `app_id` is empty) with `leadgen`.

    Raises what the Graph call raises.
    """
    for app in graph.paged(f"{page_id}/subscribed_apps", {}, page=page_id):
        fields = [str(f) for f in app.get("subscribed_fields") or []]
        if (not app_id or str(app.get("id")) == app_id) and "leadgen" in fields:
            return True
    return False


def ensure_subscription(graph: GraphClient, page_id: str, app_id: str) -> SubscriptionStatus:
    """Check the page's `subscribed_apps`; re-subscribe with `leadgen` when our app is missing."""
    try:
        subscribed = is_subscribed(graph, page_id, app_id)
    except TokenInvalid:
        raise
    except LeadAgentError as exc:
        return SubscriptionStatus(page_id, subscribed=False, error=type(exc).__name__)
    if subscribed:
        return SubscriptionStatus(page_id, subscribed=True)
    try:
        graph.request("POST", f"{page_id}/subscribed_apps", {"subscribed_fields": "leadgen"}, page=page_id)
    except TokenInvalid:
        raise
    except LeadAgentError as exc:
        return SubscriptionStatus(page_id, subscribed=False, error=f"restore failed: {type(exc).__name__}")
    return SubscriptionStatus(page_id, subscribed=True, restored=True)

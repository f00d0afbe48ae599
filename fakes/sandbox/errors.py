"""Meta's error envelope: every failure the sandbox answers with, raised as one exception type.

Each constructor here mirrors one real Graph API error (code, subcode, type, wording) so a client
written against the sandbox branches on the same `error.code` it will see at graph.facebook.com.
"""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

_TRACE_ALPHABET = string.ascii_letters + string.digits
_EXPIRY_FORMAT = "%A, %d-%b-%y %H:%M:%S UTC"


def new_fbtrace_id() -> str:
    """A random 11-character trace id shaped like Meta's `fbtrace_id`."""
    return "".join(secrets.choice(_TRACE_ALPHABET) for _ in range(11))


class GraphError(Exception):
    """A Graph API error: HTTP status, Meta's envelope fields and any extra response headers."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        error_type: str = "OAuthException",
        subcode: int | None = None,
        status: int = 400,
        headers: dict[str, str] | None = None,
        is_transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.error_type = error_type
        self.subcode = subcode
        self.status = status
        self.headers = dict(headers or {})
        self.is_transient = is_transient

    def envelope(self) -> dict[str, Any]:
        """The response body: `{"error": {...}}` with a fresh `fbtrace_id`."""
        error: dict[str, Any] = {"message": self.message, "type": self.error_type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.is_transient is not None:
            error["is_transient"] = self.is_transient
        error["fbtrace_id"] = new_fbtrace_id()
        return {"error": error}


def invalid_token() -> GraphError:
    """190: the token is missing, malformed or unknown."""
    return GraphError("Invalid OAuth access token - Cannot parse access token", code=190)


def expired_token_message(expired_at: float, now: float) -> str:
    """Meta's wording for an expired session, with both instants spelled out."""
    expired = time.strftime(_EXPIRY_FORMAT, time.gmtime(expired_at))
    current = time.strftime(_EXPIRY_FORMAT, time.gmtime(now))
    return f"Error validating access token: Session has expired on {expired}. The current time is {current}."


def expired_token(expired_at: float, now: float) -> GraphError:
    """190/463: the token was valid once and has expired."""
    return GraphError(expired_token_message(expired_at, now), code=190, subcode=463)


def object_not_found(object_id: str, method: str = "get") -> GraphError:
    """100/33: the object does not exist, is not readable with this token, or lacks the operation."""
    return GraphError(
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation. Please read the Graph API documentation "
        "at https://developers.facebook.com/docs/graph-api",
        code=100,
        subcode=33,
        error_type="GraphMethodException",
    )


def permission_denied() -> GraphError:
    """200: the token may not act on this object (a Page token used on another page's objects).

    Meta's wording and code for a missing permission (codes 10 and 200-299 in its error table).
    """
    return GraphError("(#200) Permissions error", code=200)


def unknown_path(path: str) -> GraphError:
    """100: no Graph route has this shape."""
    return GraphError(f"Unknown path components: {path}", code=100)


def invalid_parameter(message: str) -> GraphError:
    """100: a parameter is missing or malformed; `message` names it."""
    return GraphError(f"(#100) {message}", code=100)


def unknown_field(field: str, node_type: str) -> GraphError:
    """100: a requested field does not exist on this node type."""
    return GraphError(f"(#100) Tried accessing nonexisting field ({field}) on node type ({node_type})", code=100)


def unexpected_error() -> GraphError:
    """1: the sandbox itself failed (a bug); HTTP 500 like Meta's unknown errors."""
    return GraphError("An unknown error occurred", code=1, status=500, is_transient=True)

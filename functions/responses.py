"""JSON responses shared by the HTTP blueprints."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    """`body` as UTF-8 JSON with its status."""
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json")


def window_hours(req: func.HttpRequest, default: float = 24, maximum: float = 720) -> float | None:
    """The `hours` query parameter, or None when it is not a number in (0, maximum]."""
    try:
        hours = float(req.params.get("hours", default))
    except ValueError:
        return None
    return hours if 0 < hours <= maximum else None

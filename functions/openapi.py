"""`GET /api/openapi.yaml` (anonymous): the OpenAPI document of every HTTP route, from the repo root."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.functions as func

bp = func.Blueprint()

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


@cache
def openapi_document() -> bytes:
    """The document's bytes, read once per process (it ships with the app and never changes)."""
    return OPENAPI_PATH.read_bytes()


@bp.function_name("openapi_spec")
@bp.route(route="openapi.yaml", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_spec(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3 description of the app's routes, as `application/yaml`."""
    return func.HttpResponse(openapi_document(), status_code=200, mimetype="application/yaml")

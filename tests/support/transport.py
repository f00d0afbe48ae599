"""Answers for fake azure-core transports: build the response RequestsTransport would have returned."""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import Any

import requests
from azure.core.pipeline.transport import RequestsTransportResponse
from azure.core.rest import HttpRequest as RestHttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse


def request_body(request: Any) -> bytes:
    """The bytes a request carries, whichever azure-core request type it is."""
    content = request.content if isinstance(request, RestHttpRequest) else request.body
    return content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")


def transport_response(request: Any, status: int, headers: dict[str, str], body: bytes) -> Any:
    """A response as after a non-streamed read by RequestsTransport (rest in, rest out)."""
    response = requests.Response()
    response.status_code = status
    response.reason = HTTPStatus(status).phrase
    response.headers.update(headers)
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    response.raw = io.BytesIO(body)
    response.url = request.url
    if isinstance(request, RestHttpRequest):
        return RestRequestsTransportResponse(request=request, internal_response=response)  # type: ignore[no-untyped-call]
    return RequestsTransportResponse(request, response)

"""The receiver's control API under `/_receiver/`, for a receiver running as its own process (no auth: loopback).

| route | does |
|---|---|
| `GET /_receiver/health` | `{"ok": true}` once serving |
| `GET /_receiver/deliveries[?path=/webhook]` | `{"data": [delivery, …], "duplicates": n}`, arrival order |
| `POST /_receiver/faults` | set one path's faults (JSON, see `fakes.receiver.faults`); `{"faults": {path: …}}` |
| `GET /_receiver/faults` | the faults in force per path |
| `DELETE /_receiver/faults` | clear every fault |
| `POST /_receiver/reset` | forget records and faults (the journal files are kept) |

A bad fault spec is answered 400 `{"error": "<what is wrong>"}`; an unknown route 404.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fakes.receiver.faults import faults_from_spec

if TYPE_CHECKING:
    from fakes.receiver.server import Receiver

logger = logging.getLogger("fakes.receiver")


def _set_faults(receiver: Receiver, body: bytes) -> tuple[int, dict[str, Any]]:
    try:
        spec = json.loads(body) if body else None
    except ValueError:
        spec = None
    if not isinstance(spec, dict):
        return 400, {"error": "the body must be a JSON object"}
    try:
        path, faults = faults_from_spec(spec)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    receiver.put_faults(path, faults)
    logger.info("receiver faults set on %s", path)
    return 200, {"faults": receiver.faults()}


def handle_control(
    receiver: Receiver, method: str, path: str, query: Mapping[str, list[str]], body: bytes
) -> tuple[int, dict[str, Any]]:
    """Answer one control call: the status and JSON document."""
    route = (method, path)
    if route == ("GET", "/_receiver/health"):
        return 200, {"ok": True}
    if route == ("GET", "/_receiver/deliveries"):
        only = query.get("path", [None])[0]
        records = [delivery.as_json() for delivery in receiver.deliveries(only)]
        return 200, {"data": records, "duplicates": receiver.duplicates(only)}
    if route == ("POST", "/_receiver/faults"):
        return _set_faults(receiver, body)
    if route == ("GET", "/_receiver/faults"):
        return 200, {"faults": receiver.faults()}
    if route == ("DELETE", "/_receiver/faults"):
        receiver.clear_faults()
        return 200, {"faults": {}}
    if route == ("POST", "/_receiver/reset"):
        receiver.reset()
        return 200, {"ok": True}
    return 404, {"error": f"no control route {method} {path}"}

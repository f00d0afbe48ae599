"""What the receiver got: one `Delivery` per request on a recorded path, in memory and in JSON-lines files.

Signed webhooks go to `deliveries.jsonl`, Slack messages to `slack.jsonl`, Teams messages to
`teams.jsonl`, one JSON object a line, appended in arrival order. A delivery is *accepted* when its
signature is valid and it was answered 2xx; an accepted delivery whose path accepted the same
`webhook-id` before is marked `duplicate`, as a receiver deduplicating on the id would see it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, cast

Kind = Literal["webhook", "slack", "teams"]
JOURNALS: dict[Kind, str] = {"webhook": "deliveries.jsonl", "slack": "slack.jsonl", "teams": "teams.jsonl"}


def normalised(path: str) -> str:
    """The path without a trailing slash (`/` stays `/`)."""
    return path.rstrip("/") or "/"


def kind_of(path: str) -> Kind | None:
    """Which sink a normalised path belongs to: `/webhook` or `/webhook/<name>`, `/slack`, `/teams`; else None."""
    if path == "/webhook" or (path.startswith("/webhook/") and "/" not in path[len("/webhook/") :]):
        return "webhook"
    if path in ("/slack", "/teams"):
        return cast(Kind, path[1:])
    return None


@dataclass(frozen=True)
class Delivery:
    """One request on a recorded path and how it was answered; webhook fields are None for Slack and Teams."""

    path: str
    kind: Kind
    webhook_id: str | None
    timestamp: int | None
    body: Any  # the parsed JSON, None when the body was not JSON
    signature_valid: bool | None
    problem: str | None  # why the request was refused, None when it was not
    status: int
    fault: str | None  # "status", "timeout" or "fail_rate" when an injected fault shaped the answer
    duplicate: bool
    received_at: float

    @property
    def accepted(self) -> bool:
        """A valid delivery answered 2xx (held answers included: the receiver handled them)."""
        return bool(self.signature_valid and self.webhook_id and 200 <= self.status < 300)

    def as_json(self) -> dict[str, Any]:
        """The record as a JSON object (one line of its journal)."""
        return asdict(self)


class Journal:
    """Deliveries in memory and appended to `directory`; thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._accepted: set[tuple[str, str]] = set()

    def add(self, delivery: Delivery) -> Delivery:
        """Keep the record, marked `duplicate` when its path accepted this id before, and append it to its file.

        The check and the mark are one step, so two concurrent deliveries of one id count one duplicate.
        """
        key = (delivery.path, delivery.webhook_id or "")
        with self._lock:
            delivery = replace(delivery, duplicate=delivery.accepted and key in self._accepted)
            if delivery.accepted:
                self._accepted.add(key)
            self._deliveries.append(delivery)
            line = json.dumps(delivery.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
            with open(self.directory / JOURNALS[delivery.kind], "a", encoding="utf-8") as journal:
                journal.write(line)
        return delivery

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        """Records in arrival order, of one path or all."""
        with self._lock:
            return [d for d in self._deliveries if path is None or d.path == normalised(path)]

    def clear(self) -> None:
        """Forget every record (the files are kept)."""
        with self._lock:
            self._deliveries.clear()
            self._accepted.clear()

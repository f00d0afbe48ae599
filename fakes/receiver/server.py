"""`Receiver`: the team's endpoints on loopback, what each request is answered, and the Python API for tests.

A signed webhook is answered 204 when a signature matches, 401 when none does (or headers are
missing, or the timestamp is stale) and 400 when it is signed but not JSON. Slack is answered 200
`ok`, or 400 `invalid_payload` / `no_text` (no `text` and no `blocks`), in Slack's own words; Teams
202 with no body, or 400 when the body is not a JSON object. An injected fault's status replaces the
answer (its body `injected failure`, or the usual success body for a 2xx); a `timeout` fault keeps
the answer and holds it.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fakes.receiver.faults import DEFAULT_HOLD_SECONDS, Answer, PathFaults, fault_path
from fakes.receiver.http import ReceiverServer
from fakes.receiver.records import Delivery, Journal, Kind
from fakes.receiver.signatures import signature_problem, signing_key

logger = logging.getLogger("fakes.receiver")

DEFAULT_PORT = 7073
DEFAULT_DIRECTORY = Path(".devdata/receiver")
DEFAULT_SECRET = "whsec_" + base64.b64encode(b"local-receiver-secret-0123456789").decode("ascii")
SUCCESS: dict[Kind, tuple[int, bytes]] = {"webhook": (204, b""), "slack": (200, b"ok"), "teams": (202, b"")}
INJECTED_BODY = b"injected failure"


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _judge_webhook(
    key: bytes, headers: Mapping[str, str], body: bytes, document: Any
) -> tuple[str | None, int | None, bool, str | None]:
    """A webhook's id, timestamp, whether its signature is valid, and why it is refused (None: accepted)."""
    stamp = headers.get("webhook-timestamp", "")
    problem = signature_problem(key, headers, body, time.time())
    valid = problem is None
    if valid and document is None:
        problem = "body is not JSON"
    return headers.get("webhook-id") or None, int(stamp) if stamp.isdigit() else None, valid, problem


def _chat_problem(kind: Kind, document: Any) -> str | None:
    """Why Slack or Teams would refuse this body (Slack's error words), None when it is accepted."""
    if not isinstance(document, dict):
        return "invalid_payload"
    if kind == "slack" and not (document.get("text") or document.get("blocks")):
        return "no_text"
    return None


class Receiver:
    """The team's endpoints on loopback: signed webhooks, Slack and Teams, with faults on demand.

    `url` is the base (`http://127.0.0.1:<port>`); post to `url + "/webhook"`, `"/webhook/<name>"`,
    `"/slack"` or `"/teams"`. Records are kept in memory and appended to `directory`.
    """

    def __init__(
        self,
        directory: str | Path = DEFAULT_DIRECTORY,
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str = DEFAULT_SECRET,
    ) -> None:
        """`port` 0 picks a free port at `start`; `ValueError` when `secret` is not base64 after `whsec_`."""
        self.directory = Path(directory)
        self.host = host
        self.port = port
        self._key = signing_key(secret)
        self._journal = Journal(self.directory)
        self._faults: dict[str, PathFaults] = {}
        self._faults_lock = threading.Lock()
        self._server: ReceiverServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:7073`."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Create the directory and listen; connections are accepted when this returns, and `port` is real."""
        self.directory.mkdir(parents=True, exist_ok=True)
        server = ReceiverServer((self.host, self.port), self)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"receiver-{self.port}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, cut held answers and open connections short, and wait for the handlers (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.cut_connections()
        server.shutdown()
        server.server_close()  # joins the handler threads, each now ending
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what was received ---------------------------------------------------------------------

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        """Every request on `path` (e.g. `/webhook`, `/slack`), or on all recorded paths, in arrival order."""
        return self._journal.deliveries(path)

    def duplicates(self, path: str | None = None) -> int:
        """How many accepted deliveries repeated a `webhook-id` their path had accepted before."""
        return sum(delivery.duplicate for delivery in self.deliveries(path))

    # --- faults --------------------------------------------------------------------------------

    def set_faults(
        self,
        path: str,
        script: Iterable[Answer] = (),
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
    ) -> None:
        """Replace the faults of `path`: the `script` answers first, one per request, then `fail_rate` 500s.

        See `fakes.receiver.faults`; `ValueError` names a bad argument.
        """
        self.put_faults(fault_path(path), PathFaults(script, fail_rate, seed, hold_seconds))

    def put_faults(self, path: str, faults: PathFaults) -> None:
        """Replace the faults of a normalised path with ready-made ones (the control API's way in)."""
        with self._faults_lock:
            self._faults[path] = faults

    def faults(self) -> dict[str, dict[str, Any]]:
        """The faults in force per path (what is left of each script)."""
        with self._faults_lock:
            return {path: faults.describe() for path, faults in self._faults.items()}

    def clear_faults(self) -> None:
        """Every path answers normally again."""
        with self._faults_lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget every record and fault (the journal files are kept)."""
        self.clear_faults()
        self._journal.clear()

    # --- answering (called by the HTTP layer) ------------------------------------------------

    def _next_fault(self, path: str) -> tuple[Answer | None, str | None, float]:
        with self._faults_lock:
            faults = self._faults.get(path)
            if faults is None:
                return None, None, 0.0
            answer, name = faults.next_answer()
            return answer, name, faults.hold_seconds

    def receive(self, kind: Kind, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes, float]:
        """Record one request and say how to answer it: status, body, and seconds to hold the answer first."""
        answer, fault, hold_seconds = self._next_fault(path)
        document = _json_or_none(body)
        if kind == "webhook":
            webhook_id, timestamp, valid, problem = _judge_webhook(self._key, headers, body, document)
            status = 401 if not valid else 400 if problem else SUCCESS[kind][0]
        else:
            webhook_id, timestamp, valid, problem = None, None, None, _chat_problem(kind, document)
            status = 400 if problem else SUCCESS[kind][0]
        content = problem.encode() if kind == "slack" and problem else b""
        if isinstance(answer, int):
            status = answer
            content = SUCCESS[kind][1] if 200 <= answer < 300 else INJECTED_BODY
        elif status < 300:
            content = SUCCESS[kind][1]
        delivery = Delivery(
            path=path,
            kind=kind,
            webhook_id=webhook_id,
            timestamp=timestamp,
            body=document,
            signature_valid=valid,
            problem=problem,
            status=status,
            fault=fault,
            duplicate=False,  # the journal decides
            received_at=time.time(),
        )
        self._journal.add(delivery)
        logger.info(
            "receiver %s %d id=%s%s%s",
            path,
            status,
            webhook_id or "-",
            f" ({problem})" if problem else "",
            f" fault={fault}" if fault else "",
        )
        return status, content, hold_seconds if answer == "timeout" else 0.0

"""A local stand-in for the team's own endpoints: a Standard Webhooks receiver plus Slack and Teams sinks.

One HTTP server on loopback (`Receiver`). `POST /webhook` (and `/webhook/<name>`, one per
destination) checks the Standard Webhooks signature with its own implementation (`signatures`) and
answers 204, or 401 when no signature matches; `POST /slack` answers 200 `ok` as Slack's incoming
webhooks do; `POST /teams` answers 202 with no body, as a Power Automate Workflows trigger does.
Every request on those paths is recorded in memory and appended as one JSON line to
`deliveries.jsonl`, `slack.jsonl` or `teams.jsonl` (`records`). Faults per path (`faults`): a script
of answers, then a seeded share of 500s. A control API under `/_receiver/` (`control`) serves a
receiver running as its own process. Logs carry the path, status and webhook id only, never a body:
bodies hold lead data.

`python -m fakes.receiver [--port 7073] [--dir .devdata/receiver] [--secret whsec_…]` serves until
SIGINT/SIGTERM (`cli`).
"""

from __future__ import annotations

from fakes.receiver.faults import DEFAULT_HOLD_SECONDS, Answer, PathFaults
from fakes.receiver.records import Delivery, Kind
from fakes.receiver.server import DEFAULT_DIRECTORY, DEFAULT_PORT, DEFAULT_SECRET, Receiver
from fakes.receiver.signatures import TOLERANCE_SECONDS, signature_problem, signing_key

__all__ = [
    "DEFAULT_DIRECTORY",
    "DEFAULT_HOLD_SECONDS",
    "DEFAULT_PORT",
    "DEFAULT_SECRET",
    "TOLERANCE_SECONDS",
    "Answer",
    "Delivery",
    "Kind",
    "PathFaults",
    "Receiver",
    "signature_problem",
    "signing_key",
]

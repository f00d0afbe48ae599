"""Faults the receiver injects per path: a script of answers, then a seeded share of 500s.

A script entry is an HTTP status (200-599), answered whatever the request, or `"timeout"`: the
request is handled as usual but its answer held for `hold_seconds` (default 30 s, longer than a
sender waits), so the sender times out on a delivery the receiver did get. Past the script, each
request draws once from a `random.Random(seed)`; a draw below `fail_rate` is answered 500. The same
seed fails the same requests every run.

JSON form (`POST /_receiver/faults`): `{"path": "/webhook", "script": [500, "timeout", 200],
"fail_rate": 0.2, "seed": 7, "hold_seconds": 2}`; every key but `path` is optional.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from fakes.receiver.records import kind_of, normalised

Answer = int | Literal["timeout"]
DEFAULT_HOLD_SECONDS = 30.0
SPEC_KEYS = frozenset({"path", "script", "fail_rate", "seed", "hold_seconds"})
PATHS_HELP = "path must be /webhook, /webhook/<name>, /slack or /teams"


def _number(value: object, name: str, most: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (most and value > most):
        raise ValueError(f"{name} must be " + (f"a number from 0 to {most:g}" if most else "a non-negative number"))
    return float(value)


def _checked_answer(answer: object) -> Answer:
    if answer == "timeout":
        return "timeout"
    if isinstance(answer, bool) or not isinstance(answer, int) or not 200 <= answer <= 599:
        raise ValueError('each scripted answer must be an HTTP status (200-599) or "timeout"')
    return answer


class PathFaults:
    """The faults of one path; `ValueError` names a bad argument. Not thread-safe: the receiver locks."""

    def __init__(
        self,
        script: Iterable[Answer] = (),
        fail_rate: float = 0.0,
        seed: int = 0,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError("seed must be an integer")
        self.script: deque[Answer] = deque(_checked_answer(answer) for answer in script)
        self.fail_rate = _number(fail_rate, "fail_rate", most=1)
        self.hold_seconds = _number(hold_seconds, "hold_seconds")
        self.seed = seed
        self._random = random.Random(seed)

    def next_answer(self) -> tuple[Answer | None, str | None]:
        """The injected answer for the next request and the fault's name, or (None, None) to answer normally."""
        if self.script:
            answer = self.script.popleft()
            return answer, "timeout" if answer == "timeout" else "status"
        if self.fail_rate and self._random.random() < self.fail_rate:
            return 500, "fail_rate"
        return None, None

    def describe(self) -> dict[str, Any]:
        """A JSON view: what is left of the script, the rate, seed and hold."""
        return {
            "script": list(self.script),
            "fail_rate": self.fail_rate,
            "seed": self.seed,
            "hold_seconds": self.hold_seconds,
        }


def fault_path(path: object) -> str:
    """`path` normalised when faults may be set on it; `ValueError` otherwise."""
    if not isinstance(path, str) or kind_of(normalised(path)) is None:
        raise ValueError(PATHS_HELP)
    return normalised(path)


def faults_from_spec(spec: Mapping[str, Any]) -> tuple[str, PathFaults]:
    """The path and faults of the control API's JSON; `ValueError` names the first bad key."""
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    path = fault_path(spec.get("path"))
    script = spec.get("script", [])
    if not isinstance(script, list):
        raise ValueError("script must be a list")
    options = {name: spec[name] for name in ("fail_rate", "seed", "hold_seconds") if name in spec}
    return path, PathFaults(script, **options)

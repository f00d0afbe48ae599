"""Durations as the operator reads them: how many were measured, and their p50, p99 and maximum.

`GET /api/stats/notifications` and the daily digest show the same figures from the same
computation (nearest rank, in milliseconds to one decimal), so the two never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def percentile(seconds: list[float], pct: float) -> float | None:
    """The nearest-rank `pct` percentile of `seconds`, in milliseconds; None for no values."""
    if not seconds:
        return None
    ordered = sorted(seconds)
    rank = min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered))))
    return round(ordered[rank - 1] * 1000, 1)


@dataclass(frozen=True)
class Timing:
    """One duration over a window: `count` values measured; p50, p99 and max in ms (None when none)."""

    count: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        """The figures of `seconds` (durations in seconds)."""
        return cls(len(seconds), percentile(seconds, 50), percentile(seconds, 99), percentile(seconds, 100))

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.p50_ms, "p99": self.p99_ms, "max": self.max_ms}


def readable(ms: float) -> str:
    """A duration for people: `850 ms`, `41.5 s`, `5.2 min`, `1.5 h`."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"

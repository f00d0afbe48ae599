"""Call accounting: how many Graph calls of each route kind were made, and the `X-App-Usage` they add up to.

Usage is the share of a generous hourly budget used in the last hour, so ordinary test traffic
reports a few percent; a fixed figure can be set to test a client's slow-down at high usage.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping

from fakes.sandbox.faults import ROUTE_KINDS

HOURLY_CALL_BUDGET = 20_000


class CallMeter:
    """Counts Graph calls per route kind and reports usage percentages; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._recent: deque[float] = deque()
        self._fixed_usage: dict[str, int] | None = None

    def record(self, route: str) -> None:
        """Count one call of this route kind (failed and unknown-route calls count too)."""
        with self._lock:
            self._counts[route] += 1
            self._counts["total"] += 1
            self._recent.append(time.monotonic())

    def counts(self) -> dict[str, int]:
        """Calls so far for each route kind, plus `total` (which also counts unknown routes)."""
        with self._lock:
            counts = {route: self._counts[route] for route in ROUTE_KINDS}
            counts["total"] = self._counts["total"]
            return counts

    def fix_usage(self, usage: Mapping[str, int] | None) -> None:
        """Report these percentages from now on (None: go back to measuring)."""
        with self._lock:
            self._fixed_usage = None if usage is None else {key: int(value) for key, value in usage.items()}

    def usage(self) -> dict[str, int]:
        """The `X-App-Usage` percentages: `call_count`, `total_cputime`, `total_time`."""
        with self._lock:
            if self._fixed_usage is not None:
                return dict(self._fixed_usage)
            horizon = time.monotonic() - 3600
            while self._recent and self._recent[0] < horizon:
                self._recent.popleft()
            percent = min(100, len(self._recent) * 100 // HOURLY_CALL_BUDGET)
        return {"call_count": percent, "total_cputime": percent // 2, "total_time": percent // 2}

"""The retry ladder: how many of our own attempts a message gets and how long each retry waits.

Delays are exponential, capped, jittered and never below a floor. A cause an operator must fix
(`counts_attempt` False: token, permission) waits at least `paused_retry_seconds` without using
an attempt, so such messages wait for the fix instead of running out of attempts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.errors import TransientError


def retry_delay(attempt: int, base: float, cap: float, floor: float = 0.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1`: base·2^attempt within ±20 %, capped, ≥ floor."""
    exponential = min(cap, base * (2 ** min(attempt, 40)))
    jitter: float = (rng or random).uniform(0.8, 1.2)
    return float(max(floor, min(cap, exponential * jitter)))


@dataclass(frozen=True)
class RetryPolicy:
    """How many of our own attempts a message gets, and the delays between them."""

    max_attempts: int = 40
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    paused_retry_seconds: float = 300.0

    def exhausted(self, attempt: int) -> bool:
        """True when a failure of attempt `attempt` (0-based) was the last one allowed."""
        return attempt + 1 >= self.max_attempts

    def next_retry(self, attempt: int, exc: TransientError, rng: random.Random | None = None) -> tuple[int, float]:
        """(the attempt count the retry carries, seconds it waits) after attempt `attempt` failed with `exc`."""
        if exc.counts_attempt:
            delay = retry_delay(attempt, self.retry_base_seconds, self.retry_max_seconds, exc.min_delay_seconds, rng)
            return attempt + 1, delay
        floor = max(self.paused_retry_seconds, exc.min_delay_seconds)
        return attempt, retry_delay(0, floor, max(floor, self.retry_max_seconds), floor, rng)

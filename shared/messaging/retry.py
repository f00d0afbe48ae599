"""Delays for our own re-queued retries: exponential, capped, jittered, never below a floor."""

from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, floor: float = 0.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1`: base·2^attempt within ±20 %, capped, ≥ floor."""
    exponential = min(cap, base * (2 ** min(attempt, 40)))
    jitter: float = (rng or random).uniform(0.8, 1.2)
    return float(max(floor, min(cap, exponential * jitter)))

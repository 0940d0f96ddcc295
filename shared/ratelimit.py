"""Token buckets per key (a principal, a client address), with bounded memory.

A bucket holds up to `burst` tokens and gains `rate` a second; a request takes one. Only the
`capacity` most recently seen keys are remembered: a forgotten key starts again with a full
bucket, so an attacker cycling through more keys than that gains at most one burst per key.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, capacity: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._capacity = capacity
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token for `key`: 0 when admitted, else the seconds until one is available."""
        wait = self._refill(key)
        if wait == 0:
            tokens, at = self._buckets[key]
            self._buckets[key] = (tokens - 1, at)
        return wait

    def peek(self, key: str) -> float:
        """Like `take` without taking: the seconds until `key` would be admitted (0: now)."""
        return self._refill(key)

    def _refill(self, key: str) -> float:
        now = self._clock()
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._capacity:
            self._buckets.popitem(last=False)
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

"""Token buckets: a burst, then the rate; keys apart; memory bounded."""

from __future__ import annotations

from shared.ratelimit import RateLimiter


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Ticks()
    limiter = RateLimiter(2.0, 3, capacity=10, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 0.5
    assert limiter.peek("a") == 0.5
    clock.now = 0.5
    assert limiter.take("a") == 0
    assert limiter.take("b") == 0  # another key has its own bucket


def test_peek_takes_nothing() -> None:
    limiter = RateLimiter(1.0, 1, capacity=10, clock=Ticks())
    assert limiter.peek("a") == 0
    assert limiter.peek("a") == 0
    assert limiter.take("a") == 0
    assert limiter.take("a") == 1.0


def test_only_the_most_recent_keys_are_remembered() -> None:
    limiter = RateLimiter(1.0, 1, capacity=2, clock=Ticks())
    for key in ("a", "b", "c"):
        limiter.take(key)
    assert len(limiter._buckets) == 2
    assert limiter.take("a") == 0  # forgotten: a full bucket again
    assert limiter.take("c") == 1.0

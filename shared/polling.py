"""The loop every background worker runs: a pass now, again at once while a pass finds work,
otherwise after a pause or as soon as something wakes it (a commit that queued work)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PollingLoop:
    def __init__(self, what: str, one_pass: Callable[[], Awaitable[int]], *,
                 interval_seconds: float, again_at: int = 1) -> None:
        """`one_pass` returns how much it did; `again_at` or more means: go again at once."""
        self._what = what
        self._one_pass = one_pass
        self._interval = interval_seconds
        self._again_at = again_at
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                done = await self._one_pass()
            except Exception:
                log.exception("%s pass failed", self._what)
                done = 0
            if done >= self._again_at:
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 a wait_for whose event is set in
            # the same instant as the task is cancelled returns instead of raising, and the
            # loop ran on (a service's shutdown waited its whole 20 s for the relay after
            # every commit that came just before it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wakeup.wait()

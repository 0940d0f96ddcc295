"""The workers' polling loop stops when its task is cancelled, even when a wake-up arrives in
the same instant (a commit just before a service stops): with asyncio.wait_for on Python 3.11
that cancellation was swallowed and the loop ran on until the shutdown timeout."""

from __future__ import annotations

import asyncio

from shared.polling import PollingLoop


async def test_a_wake_up_in_the_instant_of_cancellation_never_keeps_the_loop_running() -> None:
    passes = 0

    async def one_pass() -> int:
        nonlocal passes
        passes += 1
        return 0

    loop = PollingLoop("test", one_pass, interval_seconds=0.05)
    for _ in range(20):
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.01)  # the loop waits for a wake-up or its interval
        loop.wake()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        assert done == {task} and task.cancelled()
    assert passes >= 20


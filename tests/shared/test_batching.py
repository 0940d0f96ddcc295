"""Group commit: what arrives while writes are in flight is written together, one bad item
fails only itself, and nobody waits for ever. Pure logic: the writes are in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.batching import GroupCommit


class GatedWrites:
    """Records each batch and holds every write until the test opens the gate."""

    def __init__(self, *, refuse: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.refuse = refuse

    async def write(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.refuse & set(items):
            raise ValueError(f"refused {sorted(self.refuse & set(items))}")
        return [item * 10 for item in items]


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_lone_item_is_written_at_once() -> None:
    writes = GatedWrites()
    writes.gate.set()
    group: GroupCommit[int, int] = GroupCommit("test", writes.write)
    assert await group.submit(7) == 70
    assert writes.batches == [[7]]


async def test_items_that_arrive_while_the_writers_are_busy_go_together() -> None:
    writes = GatedWrites()
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=1)
    first = asyncio.create_task(group.submit(1))
    await settle()  # the write of 1 is in flight
    rest = [asyncio.create_task(group.submit(n)) for n in range(2, 7)]
    await settle()
    writes.gate.set()
    assert await first == 10
    assert [await task for task in rest] == [20, 30, 40, 50, 60]
    assert writes.batches == [[1], [2, 3, 4, 5, 6]]


async def test_no_more_writes_are_in_flight_than_writers_and_batches_are_capped() -> None:
    writes = GatedWrites()
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=2, max_batch=3)
    tasks = [asyncio.create_task(group.submit(n)) for n in range(10)]
    await settle()
    writes.gate.set()
    assert [await task for task in tasks] == [n * 10 for n in range(10)]
    assert writes.most_in_flight == 2
    assert max(len(batch) for batch in writes.batches) == 3
    assert sorted(n for batch in writes.batches for n in batch) == list(range(10))


async def test_a_refused_item_fails_alone_and_the_others_are_written() -> None:
    writes = GatedWrites(refuse=frozenset({4}))
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=1)
    blocker = asyncio.create_task(group.submit(1))
    await settle()
    tasks = [asyncio.create_task(group.submit(n)) for n in (3, 4, 5)]
    await settle()
    writes.gate.set()
    assert await blocker == 10
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 30 and results[2] == 50
    assert isinstance(results[1], ValueError)
    assert writes.batches == [[1], [3, 4, 5], [3], [4], [5]]


async def test_a_cancelled_writer_fails_everything_waiting_instead_of_hanging() -> None:
    writes = GatedWrites()
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=1, max_batch=1)
    tasks = [asyncio.create_task(group.submit(n)) for n in range(3)]
    await settle()  # 0 is being written, 1 and 2 wait for the writer
    [writer] = asyncio.all_tasks() - {asyncio.current_task(), *tasks}
    writer.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=1)

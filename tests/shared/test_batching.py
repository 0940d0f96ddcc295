"""Group commit: what arrives while writes are in flight is written together, one bad item
fails only itself, and nobody waits for ever. Pure logic: the writes are in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.batching import GroupCommit, GroupCommitStopped


class GatedWrites:
    """Records each batch and holds every write until the test opens the gate."""

    def __init__(self, *, refuse: frozenset[int] = frozenset(), error: type[Exception] = ValueError
                 ) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.refuse = refuse
        self.error = error

    async def write(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.refuse & set(items):
            raise self.error(f"refused {sorted(self.refuse & set(items))}")
        return [item * 10 for item in items]


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def three_together_behind_one(group: GroupCommit[int, int], writes: GatedWrites
                                   ) -> list[object]:
    """Item 1 is written alone; 3, 4 and 5 queue meanwhile and are written as one batch.
    Returns their outcomes (or errors)."""
    blocker = asyncio.create_task(group.submit(1))
    await settle()
    tasks = [asyncio.create_task(group.submit(n)) for n in (3, 4, 5)]
    await settle()
    writes.gate.set()
    assert await blocker == 10
    return await asyncio.gather(*tasks, return_exceptions=True)


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
    results = await three_together_behind_one(group, writes)
    assert results[0] == 30 and results[2] == 50
    assert isinstance(results[1], ValueError)
    assert writes.batches == [[1], [3, 4, 5], [3], [4], [5]]


async def test_an_error_no_item_causes_fails_the_whole_batch_at_once() -> None:
    writes = GatedWrites(refuse=frozenset({4}), error=ConnectionError)
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=1,
                                               item_errors=(ValueError,))
    results = await three_together_behind_one(group, writes)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert writes.batches == [[1], [3, 4, 5]]  # not retried one by one


async def test_a_shared_error_fails_the_whole_batch_at_once_even_among_item_errors() -> None:
    """Intake retries a batch one by one whatever failed it, except when the pool had no
    connection to give: every item would wait for the pool again, one after the other."""
    writes = GatedWrites(refuse=frozenset({4}), error=TimeoutError)
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=1,
                                               item_errors=(Exception,),
                                               shared_errors=(TimeoutError,))
    results = await three_together_behind_one(group, writes)
    assert all(isinstance(result, TimeoutError) for result in results)
    assert writes.batches == [[1], [3, 4, 5]]  # not retried one by one


async def test_an_item_queued_in_the_step_the_writers_finish_is_written() -> None:
    writes = GatedWrites()
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=2, max_batch=1)

    async def one_then_another() -> int:
        await group.submit(1)
        return await group.submit(99)  # runs right after both writers saw an empty queue

    chained = asyncio.create_task(one_then_another())
    other = asyncio.create_task(group.submit(2))
    await settle()  # 1 and 2 are in flight, one per writer
    writes.gate.set()
    assert await asyncio.wait_for(chained, timeout=1) == 990
    assert await other == 20


async def test_a_wrong_number_of_outcomes_fails_the_batch_and_the_writer_goes_on() -> None:
    async def short_write(items: Sequence[int]) -> list[int]:
        return [0] if len(items) > 1 else [items[0] * 10]

    group: GroupCommit[int, int] = GroupCommit("test", short_write, writers=1)
    results = await asyncio.gather(*(group.submit(n) for n in (1, 2, 3)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)  # one batch of three
    assert await asyncio.wait_for(group.submit(4), timeout=1) == 40


async def test_stopped_writers_tell_everyone_waiting_instead_of_leaving_them_hanging() -> None:
    writes = GatedWrites()
    group: GroupCommit[int, int] = GroupCommit("test", writes.write, writers=1, max_batch=1)
    tasks = [asyncio.create_task(group.submit(n)) for n in range(3)]
    await settle()  # 0 is being written, 1 and 2 wait for the writer
    [writer] = asyncio.all_tasks() - {asyncio.current_task(), *tasks}
    writer.cancel()
    for task in tasks:
        with pytest.raises(GroupCommitStopped):
            await asyncio.wait_for(task, timeout=1)

"""Group commit: the writes that arrive while others are in flight go to the database together.

A busy endpoint whose change fits in one statement pays, per request, for a connection
checkout, the statement's execution and a round trip, which cost several times the database's
own work. `GroupCommit` hands the requests waiting at one moment to one call of `write`, which
stores them all in one statement (one transaction) and says for each whether it was stored.
Nothing waits on purpose: a request that finds a writer free is written at once, so a quiet
service keeps its latency, and a busy one writes in batches of whatever queued meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from prometheus_client import Histogram

log = logging.getLogger(__name__)

GROUP_COMMIT_ITEMS = Histogram("cyberclaims_group_commit_items", "Items written by one group commit",
                               ["writes"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class GroupCommit(Generic[Item, Outcome]):
    def __init__(self, name: str, write: Callable[[Sequence[Item]], Awaitable[Sequence[Outcome]]],
                 *, writers: int = 2, max_batch: int = 200) -> None:
        """`write(items)` stores `items` in one transaction and returns one outcome per item,
        in order; if it raises, nothing of it was stored. Up to `writers` writes are in
        flight at once, so the next batch is on its way while the database works on one.
        `name` labels the batch sizes in the `cyberclaims_group_commit_items` metric."""
        self._sizes = GROUP_COMMIT_ITEMS.labels(name)
        self._write = write
        self._max_writers = writers
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Outcome:
        """Store `item` with whatever else is waiting; its outcome, or the write's error."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._writers) < self._max_writers:
            writer = asyncio.create_task(self._write_waiting())
            self._writers.add(writer)
            writer.add_done_callback(self._writer_done)
        return await future

    async def _write_waiting(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Outcome]]] = []
        try:
            while self._waiting:
                batch = self._waiting[:self._max_batch]
                del self._waiting[:self._max_batch]
                await self._write_batch(batch)
        except BaseException as exc:  # cancelled mid-write: its batch is told so
            for _, future in batch:
                _settle(future, exception=exc)
            raise

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        """A writer stopped; if it was the last one and did not finish (cancelled at
        shutdown), whoever still waits is told so instead of waiting for ever."""
        self._writers.discard(writer)
        if self._writers or not self._waiting or not writer.cancelled():
            return
        for _, future in self._waiting:
            _settle(future, exception=asyncio.CancelledError())
        self._waiting.clear()

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        self._sizes.observe(len(batch))
        try:
            outcomes = await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exception=exc)
                return
            # One bad item must not fail the others: each is written on its own instead.
            log.warning("a group commit of %d failed; writing them one at a time", len(batch),
                        exc_info=True)
            for one in batch:
                await self._write_batch([one])
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            _settle(future, result=outcome)


def _settle(future: asyncio.Future[Outcome], *, result: Outcome | None = None,
            exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)  # type: ignore[arg-type]

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


class GroupCommitStopped(RuntimeError):
    """The writers were stopped (the service is shutting down) before this item's outcome was
    known: it may or may not have been stored."""


class GroupCommit(Generic[Item, Outcome]):
    def __init__(self, name: str, write: Callable[[Sequence[Item]], Awaitable[Sequence[Outcome]]],
                 *, item_errors: tuple[type[Exception], ...] = (Exception,),
                 shared_errors: tuple[type[Exception], ...] = (), writers: int = 2,
                 max_batch: int = 200) -> None:
        """`write(items)` stores `items` in one transaction and returns one outcome per item,
        in order; if it raises, nothing of it was stored. A batch that fails with one of
        `item_errors` (an error one item can cause, such as a constraint) is written again
        item by item, so only the item at fault gets it; any other error (the database is
        unreachable, say), or one of `shared_errors` (never one item's doing, such as a pool
        that had no connection to give), is every item's outcome at once: written one by one,
        each would only meet it again. Up to `writers` writes are in flight, so the next
        batch is on its way while the database works on one. `name` labels the batch sizes
        in the `cyberclaims_group_commit_items` metric."""
        self._sizes = GROUP_COMMIT_ITEMS.labels(name)
        self._write = write
        self._item_errors = item_errors
        self._shared_errors = shared_errors
        self._max_writers = writers
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Outcome:
        """Store `item` with whatever else is waiting; its outcome, or the write's error."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start_writer_if_free()
        return await future

    def _start_writer_if_free(self) -> None:
        if len(self._writers) < self._max_writers:
            writer = asyncio.create_task(self._write_waiting())
            self._writers.add(writer)
            writer.add_done_callback(self._writer_done)

    async def _write_waiting(self) -> None:
        me = asyncio.current_task()
        batch: list[tuple[Item, asyncio.Future[Outcome]]] = []
        try:
            while self._waiting:
                batch = self._waiting[:self._max_batch]
                del self._waiting[:self._max_batch]
                await self._write_batch(batch)
        except asyncio.CancelledError:  # the batch in flight (earlier ones are settled)
            _fail(batch, GroupCommitStopped("stopped while writing"))
            raise
        except Exception as exc:  # unexpected (a bug): its batch is told, the others go on
            log.exception("a group commit writer failed")
            _fail(batch, exc)
        finally:
            # In the same step as the last look at the queue: an item queued after this
            # finds a free slot and starts a writer of its own.
            self._writers.discard(me)
        if self._waiting:  # left by an unexpected error
            self._start_writer_if_free()

    def _writer_done(self, writer: asyncio.Task[None]) -> None:
        """Also covers a writer cancelled before it ever ran: if no writer is left, whoever
        still waits is told the writers stopped instead of waiting for ever."""
        self._writers.discard(writer)
        if writer.cancelled() and not self._writers:
            _fail(self._waiting, GroupCommitStopped("stopped before writing"))
            self._waiting.clear()

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self._write([item for item, _ in batch])
        except self._item_errors as exc:
            if len(batch) == 1 or isinstance(exc, self._shared_errors):
                _fail(batch, exc)
                return
            log.warning("a group commit of %d failed; writing them one at a time", len(batch),
                        exc_info=True)
            for one in batch:
                await self._write_batch([one])
            return
        except Exception as exc:
            _fail(batch, exc)
            return
        if len(outcomes) != len(batch):
            _fail(batch, RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} items"))
            return
        self._sizes.observe(len(batch))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)


def _fail(items: Sequence[tuple[object, asyncio.Future[Outcome]]], error: BaseException) -> None:
    for _, future in items:
        if not future.done():
            future.set_exception(error)

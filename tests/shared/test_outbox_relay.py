"""The relay's lock on PostgreSQL: replicas take turns, and a pass cut short releases it.

The publisher here is a stand-in that holds a send open on command (what is tested is the
relay's use of the real database, not Kafka)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.models import Outbox as OutboxRow
from shared.clock import SystemClock
from shared.db import UnitOfWorkFactory, create_engine
from shared.events import RegulatorReportFiled
from shared.migrations import migrate
from shared.outbox import Outbox, OutboxRelay, OutboxState
from tests.support.infra import drop_database, fresh_database

CLOCK = SystemClock()


class HeldPublisher:
    """Acknowledges every send, but only once `release` is set; counts what it sent."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()
        self.release = asyncio.Event()
        self.sent = 0

    async def send(self, topic: str, value: bytes, *, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[object]:
        self.sending.set()
        await self.release.wait()
        self.sent += 1
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A database of this module's own (intake's tables), so no other test's pending rows
    are relayed here."""
    name = f"cyberclaims_test_relay_{os.getpid()}"
    url = fresh_database(name)
    migrate("intake", url)
    yield url
    drop_database(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def stage_events(engine: AsyncEngine, count: int) -> None:
    outbox = Outbox(OutboxRow, source="/test", clock=CLOCK)
    async with UnitOfWorkFactory(engine)() as uow:
        for _ in range(count):
            outbox.add(uow.session, RegulatorReportFiled(
                incident_id=uuid.uuid4(), org_id="org-relay", reported_at=datetime.now(UTC),
                reference="REF-1"))
        await uow.commit()


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(
            select(func.count()).where(OutboxRow.state == OutboxState.pending)) or 0)


def relay(engine: AsyncEngine, publisher: HeldPublisher) -> OutboxRelay:
    return OutboxRelay(engine, OutboxRow, publisher, service="intake", clock=CLOCK)


async def test_two_replicas_take_turns_and_each_row_is_sent_once(engine: AsyncEngine) -> None:
    await stage_events(engine, 3)
    first, second = HeldPublisher(), HeldPublisher()
    second.release.set()
    first_pass = asyncio.create_task(relay(engine, first).publish_pending())
    await asyncio.wait_for(first.sending.wait(), timeout=10)

    assert await relay(engine, second).publish_pending() == 0  # the first one holds the lock

    first.release.set()
    assert await first_pass == 3
    await stage_events(engine, 1)
    assert await relay(engine, second).publish_pending() == 1  # released after the pass
    assert (first.sent, second.sent, await pending(engine)) == (3, 1, 0)


async def test_a_pass_cut_short_releases_the_lock_and_leaves_its_rows_pending(
    engine: AsyncEngine,
) -> None:
    await stage_events(engine, 2)
    stopped = HeldPublisher()
    cut_short = asyncio.create_task(relay(engine, stopped).publish_pending())
    await asyncio.wait_for(stopped.sending.wait(), timeout=10)
    cut_short.cancel()  # e.g. the service shutting down mid-pass
    with pytest.raises(asyncio.CancelledError):
        await cut_short

    assert await pending(engine) == 2
    other = HeldPublisher()
    other.release.set()
    assert await relay(engine, other).publish_pending() == 2
    assert await pending(engine) == 0

"""The relay on PostgreSQL: replicas take turns, a pass cut short releases the lock, and a key
whose row failed keeps its later rows back until that row is sent.

The publishers here are stand-ins that hold a send open or fail it on command (what is tested
is the relay's use of the real database, not Kafka)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.models import Outbox as OutboxRow
from shared.clock import Clock, ManualClock, SystemClock
from shared.db import UnitOfWorkFactory, create_engine
from shared.events import RegulatorReportFiled
from shared.kafka import OutgoingMessage
from shared.migrations import migrate
from shared.outbox import Outbox, OutboxRelay, OutboxState

CLOCK = SystemClock()


class HeldPublisher:
    """Acknowledges every message, but only once `release` is set; counts what it sent."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()
        self.release = asyncio.Event()
        self.sent = 0

    async def send_many(self, messages: Sequence[OutgoingMessage]
                        ) -> list[asyncio.Future[object]]:
        self.sending.set()
        await self.release.wait()
        self.sent += len(messages)
        return [acknowledged() for _ in messages]


def acknowledged() -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def failed(exc: Exception) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


@pytest.fixture(scope="module")
def database_url(scratch_database: Callable[[str], str]) -> str:
    """A database of this module's own (intake's tables), so no other test's pending rows
    are relayed here."""
    url = scratch_database(f"cyberclaims_test_relay_{os.getpid()}")
    migrate("intake", url)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def stage_events(engine: AsyncEngine, count: int, *, key: uuid.UUID | None = None,
                       clock: Clock = CLOCK) -> list[str]:
    """`count` events (of one incident, so one partition key, when `key` is given); their ids."""
    outbox = Outbox(OutboxRow, source="/test", clock=clock)
    async with UnitOfWorkFactory(engine)() as uow:
        ids = [str(outbox.add(uow.session, RegulatorReportFiled(
            incident_id=key or uuid.uuid4(), org_id="org-relay", reported_at=datetime.now(UTC),
            reference=f"REF-{n}")).id) for n in range(count)]
        await uow.commit()
    return ids


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(
            select(func.count()).where(OutboxRow.state == OutboxState.pending)) or 0)


class FailingPublisher:
    """Fails the first send of the events named in `failing`: refused by the producer, which
    then refuses the rest of their partition (here: their key) in that call, or not
    acknowledged; records the ids it sent, in order."""

    def __init__(self, failing: set[str], *, at_send: bool) -> None:
        self.failing = failing
        self.at_send = at_send
        self.sent: list[str] = []

    async def send_many(self, messages: Sequence[OutgoingMessage]
                        ) -> list[asyncio.Future[object]]:
        futures = []
        refused: set[bytes] = set()
        for message in messages:
            event_id = dict(message.headers)["ce_id"].decode()
            if message.key in refused:
                futures.append(failed(RuntimeError("producer buffer full")))
            elif event_id in self.failing:
                self.failing.discard(event_id)
                if self.at_send:
                    refused.add(message.key)
                    futures.append(failed(RuntimeError("producer buffer full")))
                else:
                    futures.append(failed(RuntimeError("broker unavailable")))
            else:
                self.sent.append(event_id)
                futures.append(acknowledged())
        return futures


def relay(engine: AsyncEngine, publisher: HeldPublisher | FailingPublisher,
          clock: Clock = CLOCK) -> OutboxRelay:
    return OutboxRelay(engine, OutboxRow, publisher, service="intake", clock=clock)


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


@pytest.mark.parametrize("at_send", [True, False], ids=["send-refused", "not-acknowledged"])
async def test_a_failed_row_holds_back_its_key_even_against_rows_written_later(
    engine: AsyncEngine, at_send: bool
) -> None:
    clock = ManualClock()
    key = uuid.uuid4()
    first, second = await stage_events(engine, 2, key=key, clock=clock)
    [other] = await stage_events(engine, 1, clock=clock)
    # Refused at once, the row stops its key's later rows from being sent; not acknowledged,
    # it fails with its key's batch (one partition's records go and fail together).
    publisher = FailingPublisher({first} if at_send else {first, second}, at_send=at_send)
    relaying = relay(engine, publisher, clock)

    assert await relaying.publish_pending() == 1  # the other key's row
    assert publisher.sent == [other]
    assert held_back_gauge() == 2
    [later] = await stage_events(engine, 1, key=key, clock=clock)  # due now, its key is not
    assert await relaying.publish_pending() == 0
    assert held_back_gauge() == 3  # a pass that retries nothing still counts them

    clock.advance(timedelta(minutes=2))  # past the key's backoff
    assert await relaying.publish_pending() == 3
    first_sends = list(dict.fromkeys(i for i in publisher.sent if i != other))
    assert first_sends == [first, second, later]
    assert await pending(engine) == 0
    assert held_back_gauge() == 0


def held_back_gauge() -> float | None:
    """`cyberclaims_outbox_pending` of the relay under test."""
    return REGISTRY.get_sample_value("cyberclaims_outbox_pending", {"service": "intake"})


async def test_only_a_commit_that_staged_events_wakes_the_relay(engine: AsyncEngine) -> None:
    """A consumer's fetch that only changed state must not send the relay on an empty pass."""
    wakes: list[None] = []
    uows = UnitOfWorkFactory(engine, on_events_committed=lambda: wakes.append(None))
    outbox = Outbox(OutboxRow, source="/test", clock=CLOCK)
    async with uows() as uow:
        await uow.session.execute(select(func.count()).select_from(OutboxRow))
        await uow.commit()
    assert wakes == []

    async with uows() as uow:
        staged = outbox.add(uow.session, RegulatorReportFiled(
            incident_id=uuid.uuid4(), org_id="org-relay", reported_at=datetime.now(UTC),
            reference="REF-wake"))
        await uow.commit()
    assert len(wakes) == 1

    async with uows() as uow:  # the mark ends with the transaction it was made in
        await uow.session.execute(delete(OutboxRow).where(OutboxRow.event_id == staged.id))
        await uow.commit()
    assert len(wakes) == 1


async def test_staged_events_go_in_at_commit_in_the_order_staged_and_not_without_it(
    engine: AsyncEngine,
) -> None:
    """The outbox appends its rows at commit (`shared.db.append_row`): the relay's order is
    the order a handler staged them in, and a unit of work that ends without committing
    leaves none behind."""
    ids = await stage_events(engine, 5, key=uuid.uuid4())
    async with engine.connect() as connection:
        written = list(await connection.scalars(
            select(OutboxRow.event_id).where(OutboxRow.event_id.in_([uuid.UUID(i) for i in ids]))
            .order_by(OutboxRow.id)))
    assert [str(event_id) for event_id in written] == ids

    before = await pending(engine)
    outbox = Outbox(OutboxRow, source="/test", clock=CLOCK)
    async with UnitOfWorkFactory(engine)() as uow:
        outbox.add(uow.session, RegulatorReportFiled(
            incident_id=uuid.uuid4(), org_id="org-relay", reported_at=datetime.now(UTC),
            reference="REF-abandoned"))
        await uow.session.flush()
    assert await pending(engine) == before

"""`cyberclaims insights rebuild`: empty the read model and apply every topic again from
offset 0, so the tables are what the event history says they are.

The replay reads with no consumer group (partitions assigned, sought to the beginning, read up
to the end offsets taken at the start) and applies through the service's own consumer logic,
under the service's consumer name: the inbox makes the replay and a running service's
consumer apply each event once between them. Poison messages are dead-lettered again."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from sqlalchemy import delete, select, update

from services.insights import handlers, service
from services.insights.app import NAME
from services.insights.models import (
    ClaimMovement,
    ClaimRecord,
    Exposure,
    Inbox,
    IncidentRecord,
    PolicyRecord,
    ReadModelVersion,
    Source,
)
from shared.clock import Clock
from shared.consumer import EventConsumer
from shared.db import UnitOfWorkFactory
from shared.kafka import Publisher, partition_ends, read_to_ends, retry_until_connected


async def empty_read_model(uow: UnitOfWorkFactory) -> None:
    """Delete what the topics built (and the inbox); imported history is not theirs to
    rebuild, and stays."""
    live_policies = select(PolicyRecord.policy_number).where(PolicyRecord.source == Source.live)
    live_claims = select(ClaimRecord.claim_id).where(ClaimRecord.source == Source.live)
    async with uow() as unit:
        await service.count_change(unit)
        for statement in (
                delete(Exposure).where(Exposure.policy_number.in_(live_policies)),
                delete(ClaimMovement).where(ClaimMovement.claim_id.in_(live_claims)),
                delete(PolicyRecord).where(PolicyRecord.source == Source.live),
                delete(IncidentRecord).where(IncidentRecord.source == Source.live),
                delete(ClaimRecord).where(ClaimRecord.source == Source.live),
                delete(Inbox)):
            await unit.session.execute(statement)
        # Deleted rows carry no stamp: the statistics start again from the whole read model.
        await unit.session.execute(update(ReadModelVersion)
                                   .where(ReadModelVersion.id == service.VERSION_ROW)
                                   .values(rebuilds=ReadModelVersion.rebuilds + 1))
        await unit.commit()


async def rebuild(uow: UnitOfWorkFactory, bootstrap: str, dead_letters: Publisher,
                  clock: Clock) -> int:
    """Empty the read model and replay; returns how many messages were read."""
    applier = EventConsumer(name=NAME, group_id=f"cyberclaims-{NAME}-rebuild",
                            bootstrap=bootstrap, handlers=handlers.handlers(), uow=uow,
                            inbox_model=Inbox, dead_letters=dead_letters, clock=clock)
    await empty_read_model(uow)
    ends = await partition_ends(bootstrap, applier.topics)
    if not ends:
        return 0
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await retry_until_connected(reader.start, what="insights rebuild")
    read = 0
    try:
        reader.assign(list(ends))
        await reader.seek_to_beginning(*ends)
        # Whole fetches, even past the ends taken at the start (events published since): an
        # event read twice is applied once anyway.
        async for records in read_to_ends(reader, ends, max_records=500):
            read += len(records)
            await applier.process_batch(records)
    finally:
        await reader.stop()
    return read

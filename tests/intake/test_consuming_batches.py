"""The consumer applies a fetch's messages in one transaction; when anything in it fails, the
same messages are applied one at a time, so a poison message costs only its own retries and a
duplicate inside one fetch still has one effect.

The records are handed to `EventConsumer.process_batch` directly (as one fetch would), against
intake's real database and the real broker for dead letters."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.intake.handlers import handlers, load_batch
from services.intake.models import Inbox
from shared.clock import SystemClock
from shared.consumer import EventConsumer, database_unavailable
from shared.db import JSON_CODEC, UnitOfWorkFactory, create_engine
from shared.dlq import DeadLetter
from shared.events import Priority
from shared.kafka import KafkaPublisher
from shared.topics import RESPONSE
from tests.intake.conftest import report, sql_rows, sql_value
from tests.intake.test_consuming import dispatched, triaged
from tests.support.kafka import fetched, read_topic, wait_for_records


@pytest.fixture
async def consumer(intake_db: str, broker: str) -> AsyncIterator[EventConsumer]:
    engine = create_engine(intake_db)
    publisher = KafkaPublisher(broker, client_id="batch-test", idempotent=False)
    await publisher.start()
    try:
        yield EventConsumer(name="intake", group_id="unused", bootstrap=broker,
                            handlers=handlers(), uow=UnitOfWorkFactory(engine),
                            inbox_model=Inbox, dead_letters=publisher, clock=SystemClock(),
                            retry_delay_seconds=0.01, load_batch=load_batch)
    finally:
        await publisher.stop()
        await engine.dispose()


async def timeline(db: AsyncEngine, incident_id: str) -> list[str]:
    rows = await sql_rows(db, "SELECT type FROM timeline WHERE incident_id = CAST(:id AS uuid) "
                              "ORDER BY at, id", id=incident_id)
    return [row[0] for row in rows]


def fell_back(caplog: pytest.LogCaptureFixture) -> bool:
    return any("applying them one at a time" in r.getMessage() for r in caplog.records)


async def test_a_fetch_with_a_duplicate_inside_is_applied_once(
    consumer: EventConsumer, api: httpx.AsyncClient, insured: dict[str, Any], db: AsyncEngine,
    caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.consumer")
    incident_id = await report(api, insured)
    first = triaged(incident_id, insured["org_id"], insured["policy_number"])
    then = dispatched(incident_id, insured["org_id"])

    await consumer.process_batch(fetched(first, first, then, topic=RESPONSE.name, key=incident_id))
    # the fetch again
    await consumer.process_batch(fetched(first, then, topic=RESPONSE.name, key=incident_id))

    assert not fell_back(caplog)  # each fetch was one transaction
    assert await timeline(db, incident_id) == [
        "incident.reported", "incident.triaged", "job.dispatched"]
    assert await sql_value(db, "SELECT count(*) FROM inbox WHERE event_id IN (:a, :b)",
                           a=first.id, b=then.id) == 2


async def test_a_poison_message_in_a_fetch_does_not_hold_back_the_others(
    consumer: EventConsumer, api: httpx.AsyncClient, insured: dict[str, Any], db: AsyncEngine,
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.consumer")
    incident_id = await report(api, insured)
    org, policy = insured["org_id"], insured["policy_number"]
    before = triaged(incident_id, org, policy, priority=Priority.P3)
    # Fails on every try: its id collides with the report's timeline entry (unique constraint).
    reported_event = await sql_value(
        db, "SELECT event_id FROM timeline WHERE incident_id = CAST(:id AS uuid)", id=incident_id)
    failing = triaged(incident_id, org, policy, priority=Priority.P4, event_id=reported_event)
    after = dispatched(incident_id, org)
    fetch = fetched(before, failing, after, topic=RESPONSE.name, key=incident_id)

    await consumer.process_batch(fetch)

    assert fell_back(caplog)
    assert await timeline(db, incident_id) == [
        "incident.reported", "incident.triaged", "job.dispatched"]
    priority = await sql_value(db, "SELECT priority FROM incidents WHERE id = CAST(:id AS uuid)",
                               id=incident_id)
    assert priority == "P3"  # the poison's P4 never landed
    [letter] = await wait_for_records(
        broker, RESPONSE.dead_letter,
        lambda r: dict(r.headers).get("ce_id") == str(failing.id).encode())
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["dlq_origin_offset"] == str(fetch[1].offset)
    assert headers["dlq_attempts"] == "3"


async def test_only_messages_of_handled_types_are_decoded_and_so_dead_lettered(
    consumer: EventConsumer, api: httpx.AsyncClient, insured: dict[str, Any], broker: str
) -> None:
    incident_id = await report(api, insured)
    handled = dispatched(incident_id, insured["org_id"])
    not_ours = triaged(incident_id, insured["org_id"], insured["policy_number"]).model_copy(
        update={"type": "cyberclaims.incident.reported.v1"})  # intake publishes it, never reads it
    fetch = fetched(not_ours, handled, topic=RESPONSE.name, key=incident_id)
    for record in fetch:  # both unreadable
        object.__setattr__(record, "value", b"{not json")

    await consumer.process_batch(fetch)

    # process_batch returned after Kafka acknowledged its dead letters: all are there.
    offsets = {str(r.offset).encode() for r in fetch}
    letters = [r for r in await read_topic(broker, RESPONSE.dead_letter)
               if dict(r.headers).get("dlq_origin_offset") in offsets]
    assert [dict(r.headers)["dlq_origin_offset"] for r in letters] == [
        str(fetch[1].offset).encode()]


@pytest.mark.parametrize("header", ["ce_type", "ce_id"])
async def test_a_header_without_a_value_is_dead_lettered_and_the_fetch_goes_on(
    consumer: EventConsumer, api: httpx.AsyncClient, insured: dict[str, Any], db: AsyncEngine,
    broker: str, header: str
) -> None:
    """Kafka allows a header with no value, which any producer may write: the message is
    unreadable (dead-lettered), never an exception that stops the consumer on it for good."""
    incident_id = await report(api, insured)
    org, policy = insured["org_id"], insured["policy_number"]
    fetch = fetched(triaged(incident_id, org, policy), dispatched(incident_id, org),
                    topic=RESPONSE.name, key=incident_id)
    object.__setattr__(fetch[0], "headers", [(name, None if name == header else value)
                                              for name, value in fetch[0].headers])

    await consumer.process_batch(fetch)

    assert await timeline(db, incident_id) == ["incident.reported", "job.dispatched"]
    letters = [r for r in await read_topic(broker, RESPONSE.dead_letter)
               if dict(r.headers).get("dlq_origin_offset") == str(fetch[0].offset).encode()]
    assert len(letters) == 1
    summary = DeadLetter(letters[0]).summary()  # what `cyberclaims dlq list` and replay read
    assert summary[{"ce_type": "type", "ce_id": "event_id"}[header]] in ("(unreadable)", "")


async def test_the_same_event_applied_by_two_consumers_at_once_has_one_effect(
    consumer: EventConsumer, intake_db: str, broker: str, api: httpx.AsyncClient,
    insured: dict[str, Any], db: AsyncEngine
) -> None:
    """Two replicas during a rebalance: the second waits on the first's inbox row, then skips."""
    incident_id = await report(api, insured)
    event = triaged(incident_id, insured["org_id"], insured["policy_number"])
    engine = create_engine(intake_db)
    try:
        other = EventConsumer(name="intake", group_id="unused", bootstrap=broker,
                              handlers=handlers(), uow=UnitOfWorkFactory(engine),
                              inbox_model=Inbox, dead_letters=consumer._dead_letters,
                              clock=SystemClock(), load_batch=load_batch)
        await asyncio.gather(*(c.process_batch(fetched(event, topic=RESPONSE.name, key=incident_id))
                               for c in (consumer, other) for _ in range(3)))
    finally:
        await engine.dispose()
    assert await timeline(db, incident_id) == ["incident.reported", "incident.triaged"]
    assert await sql_value(db, "SELECT count(*) FROM inbox WHERE event_id = CAST(:id AS uuid)",
                           id=str(event.id)) == 1


async def test_a_fetch_of_one_incidents_events_locks_and_reads_it_once(
    consumer: EventConsumer, api: httpx.AsyncClient, insured: dict[str, Any], db: AsyncEngine
) -> None:
    incident_id = await report(api, insured)
    batch = [triaged(incident_id, insured["org_id"], insured["policy_number"]),
             *(dispatched(incident_id, insured["org_id"]) for _ in range(3))]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = consumer._uow.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await consumer.process_batch(fetched(*batch, topic=RESPONSE.name, key=incident_id))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert sum("FROM incidents" in s and "FOR UPDATE" in s for s in statements) == 1
    assert await timeline(db, incident_id) == [
        "incident.reported", "incident.triaged", *["job.dispatched"] * 3]


def patient_consumer(broker: str, engine: AsyncEngine, publisher: KafkaPublisher
                     ) -> EventConsumer:
    """Intake's consumer on `engine`, giving up on an event after two failed tries."""
    return EventConsumer(name="intake", group_id="unused", bootstrap=broker,
                         handlers=handlers(), uow=UnitOfWorkFactory(engine),
                         inbox_model=Inbox, dead_letters=publisher, clock=SystemClock(),
                         max_attempts=2, retry_delay_seconds=0.01, load_batch=load_batch)


async def test_a_pool_with_no_connection_free_delays_an_event_but_never_dead_letters_it(
    api: httpx.AsyncClient, insured: dict[str, Any], db: AsyncEngine, intake_db: str,
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The service's own pool with every connection taken (requests holding them all, one
    tenant's flood of reads) times out the consumer's checkout: the service's load, not the
    message's fault, so the event waits however many tries it takes, never dead-lettered."""
    caplog.set_level(logging.WARNING, logger="shared.consumer")
    incident_id = await report(api, insured)
    event = triaged(incident_id, insured["org_id"], insured["policy_number"])
    engine = create_async_engine(intake_db, pool_size=1, max_overflow=0, pool_timeout=0.1,
                                 **JSON_CODEC)
    publisher = KafkaPublisher(broker, client_id="pool-test", idempotent=False)
    await publisher.start()
    try:
        consumer = patient_consumer(broker, engine, publisher)
        async with engine.connect() as taken:  # the pool's only connection
            await taken.execute(text("SELECT 1"))
            applying = asyncio.create_task(consumer.process_batch(
                fetched(event, topic=RESPONSE.name, key=incident_id)))

            def timeouts() -> int:
                return sum("database unavailable (TimeoutError)" in r.getMessage()
                           for r in caplog.records)

            while timeouts() < 3:  # more tries than max_attempts: none of them counted
                assert not applying.done(), applying
                await asyncio.sleep(0.05)
        await asyncio.wait_for(applying, timeout=30)
    finally:
        await publisher.stop()
        await engine.dispose()
    assert await timeline(db, incident_id) == ["incident.reported", "incident.triaged"]
    assert not any("dead-lettering" in r.getMessage() for r in caplog.records)


async def test_a_database_out_of_connection_slots_delays_an_event_but_never_dead_letters_it(
    api: httpx.AsyncClient, insured: dict[str, Any], db: AsyncEngine, intake_db: str,
    broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What a crash's recovery looks like to a consumer ("not yet accepting connections",
    57P03) or a server out of slots (53300): the database's fault, so the event waits however
    many tries it takes, and is applied once the database takes connections again. Here the
    consumer's role may open no connection (53300 for real) until the test lifts the limit."""
    caplog.set_level(logging.WARNING, logger="shared.consumer")
    incident_id = await report(api, insured)
    event = triaged(incident_id, insured["org_id"], insured["policy_number"])
    role = f"slots_{uuid.uuid4().hex[:8]}"
    async with db.begin() as connection:
        for statement in (f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0",
                          f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
                          f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"):
            await connection.execute(text(statement))
    engine = create_engine(make_url(intake_db).set(username=role).render_as_string(False))
    publisher = KafkaPublisher(broker, client_id="slots-test", idempotent=False)
    await publisher.start()
    try:
        consumer = patient_consumer(broker, engine, publisher)
        applying = asyncio.create_task(consumer.process_batch(
            fetched(event, topic=RESPONSE.name, key=incident_id)))

        def refusals() -> int:
            return sum("database unavailable (53300)" in r.getMessage() for r in caplog.records)

        while refusals() < 3:  # more tries than max_attempts: none of them counted
            assert not applying.done(), applying
            await asyncio.sleep(0.05)
        async with db.begin() as connection:
            await connection.execute(text(f"ALTER ROLE {role} CONNECTION LIMIT -1"))
        await asyncio.wait_for(applying, timeout=30)
    finally:
        await publisher.stop()
        await engine.dispose()
        async with db.begin() as connection:
            await connection.execute(text(f"REASSIGN OWNED BY {role} TO postgres"))
            await connection.execute(text(f"DROP OWNED BY {role}"))
            await connection.execute(text(f"DROP ROLE {role}"))
    assert await timeline(db, incident_id) == ["incident.reported", "incident.triaged"]
    assert not any("dead-lettering" in r.getMessage() for r in caplog.records)


def test_only_the_databases_unavailability_is_retried_without_counting() -> None:
    def failure(sqlstate: str | None, orig: Exception | None = None) -> DBAPIError:
        error = orig or Exception("from the server")
        error.sqlstate = sqlstate  # type: ignore[attr-defined]
        return DBAPIError("statement", {}, error)

    for unavailable in ("57P01", "57P02", "57P03", "53300", "08006", "08001"):
        assert database_unavailable(failure(unavailable)), unavailable
    assert database_unavailable(failure(None, ConnectionRefusedError()))
    for the_messages_fault in ("23505", "22P02", "40P01", None):
        assert not database_unavailable(failure(the_messages_fault)), the_messages_fault

"""Reading what services published, straight from the broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import RecordMetadata
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events import Envelope
from shared.kafka import read_from_beginning

T = TypeVar("T")


def fetched(*envelopes: Envelope, topic: str, key: str = "k"
            ) -> list[ConsumerRecord[bytes, bytes]]:
    """The envelopes as consecutive records of one partition, as one fetch hands them to
    `EventConsumer.process_batch`."""
    base = uuid.uuid4().int % 1_000_000_000  # an offset no other test's records use
    return [ConsumerRecord(topic=topic, partition=0, offset=base + i, timestamp=0,
                           timestamp_type=0, key=key.encode(), value=e.to_kafka_value(),
                           checksum=None, serialized_key_size=0, serialized_value_size=0,
                           headers=e.to_kafka_headers())
            for i, e in enumerate(envelopes)]


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_from_beginning(bootstrap, [topic])


async def wait_for_records(bootstrap: str, topic: str,
                           match: Callable[[ConsumerRecord[bytes, bytes]], bool], *,
                           count: int = 1, timeout: float = 20.0
                           ) -> list[ConsumerRecord[bytes, bytes]]:
    """Poll until at least `count` matching records exist; returns all matches so far (to
    prove there is no second copy, see `relayed_events`)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in await read_topic(bootstrap, topic) if match(r)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} records on {topic} after {timeout}s")
        await asyncio.sleep(0.2)


async def wait_for_events(bootstrap: str, topic: str, match: Callable[[Envelope], bool], *,
                          count: int = 1, timeout: float = 20.0) -> list[Envelope]:
    def matches(record: ConsumerRecord[bytes, bytes]) -> bool:
        envelope = _readable(record)
        return envelope is not None and match(envelope)

    records = await wait_for_records(bootstrap, topic, matches, count=count, timeout=timeout)
    return [Envelope.from_kafka(r.headers, r.value) for r in records]


async def relayed_events(bootstrap: str, topic: str, outbox: AsyncEngine, key: str,
                         match: Callable[[Envelope], bool], *,
                         timeout: float = 20.0) -> list[Envelope]:
    """The events on `topic` that `match`, read once the producing service's relay has sent
    every row of its `outbox` (that service's database) with partition key `key`: it marks a
    row sent only after Kafka acknowledged it, so what is on the topic then is everything it
    will publish for that key, and a test sees any second copy without sleeping first."""
    deadline = time.monotonic() + timeout
    while True:
        async with outbox.connect() as connection:
            pending = await connection.scalar(text(
                "SELECT count(*) FROM outbox WHERE partition_key = :key AND state <> 'sent'"),
                {"key": key})
        if pending == 0:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{pending} outbox rows of {key} not sent after {timeout}s")
        await asyncio.sleep(0.1)
    envelopes = (_readable(record) for record in await read_topic(bootstrap, topic))
    return [envelope for envelope in envelopes if envelope is not None and match(envelope)]


def _readable(record: ConsumerRecord[bytes, bytes]) -> Envelope | None:
    """The record's envelope, or None for one no consumer could read (poison tests)."""
    try:
        return Envelope.from_kafka(record.headers, record.value)
    except ValueError:
        return None


async def publish(bootstrap: str, topic: str, envelope: Envelope | None = None, *,
                  key: bytes = b"k", raw: bytes | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> RecordMetadata:
    """Publish an event as a producer elsewhere would (or raw bytes, for poison tests);
    returns where it landed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        if envelope is not None:
            sent: RecordMetadata = await producer.send_and_wait(
                topic, envelope.to_kafka_value(), key=key, headers=envelope.to_kafka_headers())
        else:
            sent = await producer.send_and_wait(topic, raw, key=key, headers=headers or [])
        return sent
    finally:
        await producer.stop()


async def wait_until_consumed(bootstrap: str, group_id: str, sent: Iterable[RecordMetadata], *,
                              timeout: float = 30.0) -> None:
    """Wait until consumer group `group_id` has committed offsets past every message in
    `sent`, so it applied them or skipped them as duplicates (a consumer commits only after its
    database commit): then a test may assert they changed nothing, without sleeping first."""
    wanted = {TopicPartition(m.topic, m.partition): m.offset for m in sent}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = await admin.list_consumer_group_offsets(group_id, partitions=list(wanted))
            behind = [tp for tp, offset in wanted.items()
                      if tp not in committed or committed[tp].offset <= offset]
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{group_id} did not consume {behind} in {timeout}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


@contextlib.contextmanager
def _engine_events(engine: AsyncEngine, name: str, keep: Callable[..., T]) -> Iterator[list[T]]:
    """`keep(*arguments)` of each `name` event (SQLAlchemy's engine events) `engine` fires
    while the block runs."""
    kept: list[T] = []

    def record(*arguments: Any) -> None:
        kept.append(keep(*arguments))

    event.listen(engine.sync_engine, name, record)
    try:
        yield kept
    finally:
        event.remove(engine.sync_engine, name, record)


def statements_run(engine: AsyncEngine) -> contextlib.AbstractContextManager[list[str]]:
    """The SQL statements `engine` sends while the block runs (each executemany once): what a
    batch costs in round trips, counted rather than timed."""
    return _engine_events(engine, "before_cursor_execute",
                          lambda _connection, _cursor, statement, *_: statement)


def assert_same_texts(few: list[str], many: list[str]) -> None:
    """A small fetch and a large one ran the same statement texts: each pooled connection
    keeps a prepared statement per text, so a text that varies with the batch is memory that
    grows with the traffic."""
    assert set(many) == set(few), set(many) ^ set(few)


def transactions_begun(engine: AsyncEngine) -> contextlib.AbstractContextManager[list[Any]]:
    """The connections on which `engine` begins a transaction while the block runs."""
    return _engine_events(engine, "begin", lambda connection: connection)

"""Reading what services published, straight from the broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.events import Envelope
from shared.kafka import read_from_beginning


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
                           count: int = 1, timeout: float = 20.0,
                           settle: float = 0.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Poll until at least `count` matching records exist; then wait `settle` seconds more
    and return all matches (so a test can prove there is no second copy)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in await read_topic(bootstrap, topic) if match(r)]
        if len(found) >= count:
            if settle:
                await asyncio.sleep(settle)
                found = [r for r in await read_topic(bootstrap, topic) if match(r)]
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} records on {topic} after {timeout}s")
        await asyncio.sleep(0.2)


async def wait_for_events(bootstrap: str, topic: str, match: Callable[[Envelope], bool], *,
                          count: int = 1, timeout: float = 20.0,
                          settle: float = 0.0) -> list[Envelope]:
    def matches(record: ConsumerRecord[bytes, bytes]) -> bool:
        try:
            return match(Envelope.from_kafka(record.headers, record.value))
        except ValueError:
            return False

    records = await wait_for_records(bootstrap, topic, matches, count=count, timeout=timeout,
                                     settle=settle)
    return [Envelope.from_kafka(r.headers, r.value) for r in records]


async def publish(bootstrap: str, topic: str, envelope: Envelope | None = None, *,
                  key: bytes = b"k", raw: bytes | None = None,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    """Publish an event as a producer elsewhere would (or raw bytes, for poison tests)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        if envelope is not None:
            await producer.send_and_wait(topic, envelope.to_kafka_value(), key=key,
                                         headers=envelope.to_kafka_headers())
        else:
            await producer.send_and_wait(topic, raw, key=key, headers=headers or [])
    finally:
        await producer.stop()

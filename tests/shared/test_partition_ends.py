"""`partition_ends` and `read_from_beginning` on the tests' broker (in memory, whose ListOffsets
answer is right): every partition's end, an empty one's too, and every record up to them. The
development broker's case, where ListOffsets falls short after a burst, is in
tests/reliability/test_durable_broker.py."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer, TopicPartition

from shared.kafka import ensure_topics, partition_ends, read_from_beginning


async def test_ends_count_every_batch_of_a_burst(broker: str) -> None:
    topic = f"test.ends.{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker, [(topic, 3, 3_600_000)])
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=0)
    await producer.start()
    try:  # one batch per message, back to back: most share a millisecond
        for n in range(10):
            await producer.send_and_wait(topic, f"first-{n}".encode(), partition=0)
        for n in range(3):
            await producer.send_and_wait(topic, f"second-{n}".encode(), partition=1)
    finally:
        await producer.stop()

    partitions = [TopicPartition(topic, partition) for partition in range(3)]
    assert await partition_ends(broker, [topic]) == dict(zip(partitions, [10, 3, 0], strict=True))
    assert len(await read_from_beginning(broker, [topic])) == 13

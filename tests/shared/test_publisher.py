"""`KafkaPublisher.send_many` on the real broker: each message lands on the partition a
per-message send would choose, in order, whole, however many batches a partition needs; and a
closed producer fails the futures instead of raising."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.errors import ProducerClosed
from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import KafkaPublisher, OutgoingMessage, ensure_topics
from tests.support.kafka import wait_for_records

PARTITIONS = 6


async def test_messages_reach_their_keys_partitions_in_order_across_batches(broker: str) -> None:
    topic = f"test.publisher.{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker, [(topic, PARTITIONS, 3_600_000)])
    keys = [f"incident-{n}".encode() for n in range(5)]
    # 40 KB values: one partition's messages need several batches of MAX_BATCH_BYTES.
    value_size = 40 * 1024
    per_key = KafkaPublisher.MAX_BATCH_BYTES // value_size + 3
    messages = [OutgoingMessage(topic, key, f"{key.decode()}:{n}:".encode().ljust(value_size, b"."),
                                [("ce_id", f"{key.decode()}-{n}".encode())])
                for n in range(per_key) for key in keys]
    publisher = KafkaPublisher(broker, client_id="test-publisher", idempotent=False)
    await publisher.start()
    try:
        futures = await publisher.send_many(messages)
        assert len(futures) == len(messages)
        for future in futures:
            await future
    finally:
        await publisher.stop()

    records = await wait_for_records(broker, topic, lambda record: True, count=len(messages))
    assert len(records) == len(messages)
    partitioner = DefaultPartitioner()
    all_partitions = list(range(PARTITIONS))
    for key in keys:
        mine = [record for record in records if record.key == key]
        assert {record.partition for record in mine} == {
            partitioner(key, all_partitions, all_partitions)}
        assert [record.value for record in mine] == [
            message.value for message in messages if message.key == key]
        assert [dict(record.headers)["ce_id"] for record in mine] == [
            dict(message.headers)["ce_id"] for message in messages if message.key == key]


async def test_a_closed_producer_fails_the_messages_futures(broker: str) -> None:
    publisher = KafkaPublisher(broker, client_id="test-publisher-closed", idempotent=False)
    await publisher.start()
    await publisher.stop()
    [future] = await publisher.send_many([OutgoingMessage(
        "cyberclaims.incidents", b"k", b"{}", [])])
    with pytest.raises(ProducerClosed):
        await future

"""A consumer's fetch short of a full batch waits `linger_ms` for more before it is applied
(one transaction for all), and a full fetch goes at once. Pure logic: the Kafka consumer is a
fake that hands out what "arrived" (the broker-backed paths are in the services' tests)."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.intake.models import Inbox
from shared.clock import SystemClock
from shared.consumer import EventConsumer

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def records(partition: TopicPartition, *offsets: int) -> list[ConsumerRecord[bytes, bytes]]:
    return [ConsumerRecord(topic=partition.topic, partition=partition.partition, offset=offset,
                           timestamp=0, timestamp_type=0, key=None, value=b"", checksum=None,
                           serialized_key_size=0, serialized_value_size=0, headers=())
            for offset in offsets]


class ArrivingMeanwhile:
    """What a later `getmany` finds buffered, and what it was asked for."""

    def __init__(self, later: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.later = later
        self.asked: list[dict[str, Any]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int
                      ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.asked.append({"timeout_ms": timeout_ms, "max_records": max_records})
        return self.later


def consumer(batch_size: int, linger_ms: int) -> EventConsumer:
    return EventConsumer(name="t", group_id="t", bootstrap="unused", handlers={},
                         uow=None,  # type: ignore[arg-type]
                         inbox_model=Inbox, dead_letters=None,  # type: ignore[arg-type]
                         clock=SystemClock(), batch_size=batch_size, linger_ms=linger_ms)


async def test_a_short_fetch_waits_and_takes_what_arrived_meanwhile_in_partition_order() -> None:
    kafka = ArrivingMeanwhile({P0: records(P0, 2, 3), P1: records(P1, 7)})
    began = time.monotonic()
    batches = await consumer(batch_size=10, linger_ms=50)._linger(
        kafka, {P0: records(P0, 1)})  # type: ignore[arg-type]
    assert time.monotonic() - began >= 0.05
    assert kafka.asked == [{"timeout_ms": 0, "max_records": 9}]  # only what is buffered
    assert {p: [r.offset for r in rs] for p, rs in batches.items()} == {P0: [1, 2, 3], P1: [7]}


async def test_a_full_fetch_goes_at_once() -> None:
    kafka = ArrivingMeanwhile({P0: records(P0, 4)})
    full = {P0: records(P0, 1, 2), P1: records(P1, 1)}
    assert await consumer(batch_size=3, linger_ms=10_000)._linger(
        kafka, full) == full  # type: ignore[arg-type]
    assert kafka.asked == []

"""Kafka plumbing on aiokafka: producer, topic creation and a small publisher protocol."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.topics import all_topic_specs

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the relay and the dead-letter path need of a producer."""

    async def send(self, topic: str, value: bytes, *, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[object]: ...


class KafkaPublisher:
    """An aiokafka producer; `send` returns the delivery future so callers can pipeline.

    No linger: the relay sends a pass's rows back to back before it awaits any of them, so
    they are batched anyway, and a wait for more would only delay every hop (2 ms was about a
    quarter of the report-to-Kafka hop at 10 reports/s)."""

    def __init__(self, bootstrap: str, *, client_id: str, idempotent: bool) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=0,
            request_timeout_ms=15000,
        )

    async def start(self) -> None:
        await retry_until_connected(self._producer.start, what="producer")

    async def stop(self) -> None:
        await self._producer.stop()

    async def reachable(self, timeout: float = 2.0) -> bool:
        """True when the broker answers a metadata request (readiness)."""
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout)
        except Exception:
            return False
        return True

    async def send(self, topic: str, value: bytes, *, key: bytes,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[object]:
        return await self._producer.send(topic, value, key=key, headers=headers)


async def retry_until_connected(start: object, *, what: str, attempts: int = 30) -> None:
    """Start a Kafka client, waiting for the broker to come up (a pod may start first)."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            await start()  # type: ignore[operator]
            return
        except KafkaConnectionError:
            if attempt == attempts:
                raise
            log.warning("kafka %s cannot reach the broker yet, retrying", what)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def ensure_topics(bootstrap: str, specs: Iterable[tuple[str, int, int]] | None = None) -> None:
    """Create the catalog's topics that are missing (dev and tests; prod uses KafkaTopic)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="cyberclaims-admin")
    await retry_until_connected(admin.start, what="admin")
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=partitions, replication_factor=1,
                     topic_configs={"retention.ms": str(retention)})
            for name, partitions, retention in (specs or all_topic_specs())
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def read_from_beginning(bootstrap: str, topics: Iterable[str]
                              ) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message on `topics` right now (no consumer group; nothing is committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await retry_until_connected(consumer.start, what="reader")
    try:
        partitions = [TopicPartition(topic, partition) for topic in topics
                      for partition in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=1000)
            for chunk in batch.values():
                records.extend(chunk)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()

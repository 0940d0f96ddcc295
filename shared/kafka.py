"""Kafka plumbing on aiokafka: producer, topic creation, partition ends and a small publisher
protocol."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from shared.topics import all_topic_specs

log = logging.getLogger(__name__)


class OutgoingMessage(NamedTuple):
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class Publisher(Protocol):
    """What the relay and the dead-letter path need of a producer."""

    async def send_many(self, messages: Sequence[OutgoingMessage]
                        ) -> list[asyncio.Future[object]]: ...


class KafkaPublisher:
    """An aiokafka producer that sends a relay pass's messages as one record batch per
    partition, and hands back delivery futures so callers can pipeline.

    No linger: a pass's messages go out together anyway, and a wait for more would only delay
    every hop (2 ms was about a quarter of the report-to-Kafka hop at 10 reports/s). A batch
    holds up to `MAX_BATCH_BYTES`, so a pass's messages for one partition usually fit in one;
    a partition's next batch waits until its previous one has left."""

    MAX_BATCH_BYTES = 512 * 1024  # under Kafka's default message.max.bytes of 1 MiB

    def __init__(self, bootstrap: str, *, client_id: str, idempotent: bool) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=0,
            max_batch_size=self.MAX_BATCH_BYTES,
            request_timeout_ms=15000,
        )
        self._partitioner = DefaultPartitioner()

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

    async def send_many(self, messages: Sequence[OutgoingMessage]
                        ) -> list[asyncio.Future[object]]:
        """Send `messages` in order, each to its key's partition (aiokafka's default
        partitioner, as a per-message send would choose), in record batches built here: about
        half the CPU of a `send` per message, which pays for a future, a partitioner lookup and
        the accumulator's bookkeeping each. A message's future is its batch's. A batch the
        producer refuses (its partition's previous batch not gone in time, the producer
        closed, no metadata for the topic) fails its messages and every later one of its
        partition, so within a partition a key's later messages never overtake it. Nothing
        raises: a message that cannot be sent gets a failed future."""
        batches: dict[tuple[str, int], list[BatchBuilder]] = {}
        placed: list[tuple[tuple[str, int], int] | BaseException] = []  # (partition, batch)
        partitions: dict[str, list[int] | BaseException] = {}
        for message in messages:
            known = partitions.get(message.topic)
            if known is None:
                known = partitions[message.topic] = await self._partitions(message.topic)
            if isinstance(known, BaseException):
                placed.append(known)
                continue
            record = {"key": message.key, "value": message.value, "timestamp": None,
                      "headers": message.headers}
            try:
                target = (message.topic, self._partitioner(message.key, known, known))
                builders = batches.setdefault(target, [])
                if not builders or builders[-1].append(**record) is None:  # none yet, or full
                    builders.append(self._producer.create_batch())
                    builders[-1].append(**record)
            except Exception as exc:  # e.g. a header that is not bytes: this message only
                placed.append(exc)
                continue
            placed.append((target, len(builders) - 1))
        sent = {target: await self._send_in_order(*target, builders)
                for target, builders in batches.items()}
        return [_failed(where) if isinstance(where, BaseException) else sent[where[0]][where[1]]
                for where in placed]

    async def _send_in_order(self, topic: str, partition: int, builders: list[BatchBuilder]
                             ) -> list[asyncio.Future[object]]:
        """One partition's batches, in order: a future for each. Once the producer refuses
        one, it and the later ones fail with that error."""
        futures: list[asyncio.Future[object]] = []
        for builder in builders:
            try:
                futures.append(await self._producer.send_batch(builder, topic, partition=partition))
            except Exception as exc:
                return futures + [_failed(exc) for _ in builders[len(futures):]]
        return futures

    async def _partitions(self, topic: str) -> list[int] | BaseException:
        try:
            return sorted(await self._producer.partitions_for(topic))
        except Exception as exc:
            return exc


def _failed(exc: BaseException) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


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


async def partition_ends(bootstrap: str, topics: Iterable[str], *,
                         timeout: float = 30.0) -> dict[TopicPartition, int]:
    """The end (high watermark: the offset its next message will get) of every partition of
    `topics` that exists.

    Not from ListOffsets (aiokafka's `end_offsets`): the development broker (Tansu) answers it
    from its time index, and after several record batches in the same millisecond names the
    end of the first of them (ten one-message batches in a burst: 1 instead of 10), so a lag
    computed from it reads 0 while consumers are behind. Fetch responses carry the true high
    watermark on Tansu and on Apache Kafka alike, so this fetches from ListOffsets' answer (a
    lower bound, and the end itself on Apache Kafka) until every partition has reported one.
    A fresh reader each time, so no high watermark is an earlier fetch's; fetches wait 10 ms at
    most for records, as only the watermark is wanted."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              client_id="cyberclaims-ends", fetch_max_wait_ms=10)
    await retry_until_connected(reader.start, what="partition ends", attempts=5)
    try:
        wanted = [TopicPartition(topic, partition) for topic in sorted(set(topics))
                  for partition in sorted(reader.partitions_for_topic(topic) or ())]
        if not wanted:
            return {}
        reader.assign(wanted)
        for partition, offset in (await reader.end_offsets(wanted)).items():
            reader.seek(partition, offset)
        ends: dict[TopicPartition, int] = {}
        async with asyncio.timeout(timeout):
            while len(ends) < len(wanted):
                waiting = [tp for tp in wanted if tp not in ends]
                await reader.getmany(*waiting, timeout_ms=200)
                ends.update((tp, end) for tp in waiting
                            if (end := reader.highwater(tp)) is not None)
        return ends
    finally:
        await reader.stop()


async def read_to_ends(reader: AIOKafkaConsumer, ends: Mapping[TopicPartition, int], *,
                       max_records: int | None = None, idle_polls: int = 3
                       ) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
    """The records of `ends`' partitions from the reader's positions up to the ends, a fetch
    at a time (whole fetches, so possibly a few records past an end).

    Gives up after `idle_polls` polls of a second that bring nothing: Tansu reserves a batch's
    offsets before it writes the batch, so a broker killed in between can leave offsets no
    record will ever fill, and a reader waiting to reach them would wait forever."""
    remaining = {tp for tp, end in ends.items() if await reader.position(tp) < end}
    idle = 0
    while remaining:
        fetched = await reader.getmany(*remaining, timeout_ms=1000, max_records=max_records)
        records = [record for chunk in fetched.values() for record in chunk]
        if records:
            idle = 0
            yield records
        else:
            idle += 1
            if idle >= idle_polls:
                log.warning("gave up reading %s short of their ends: nothing came for %d polls",
                            sorted(remaining), idle)
                return
        remaining = {tp for tp in remaining if await reader.position(tp) < ends[tp]}


async def read_from_beginning(bootstrap: str, topics: Iterable[str]
                              ) -> list[ConsumerRecord[bytes, bytes]]:
    """Every message on `topics` right now (no consumer group; nothing is committed)."""
    ends = await partition_ends(bootstrap, topics)
    if not ends:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await retry_until_connected(consumer.start, what="reader")
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        return [record async for records in read_to_ends(consumer, ends) for record in records]
    finally:
        await consumer.stop()

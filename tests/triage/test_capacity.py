"""Vendor selection under concurrency: no vendor ever holds more open jobs than its capacity,
whatever arrives at once, and waiting jobs flow to vendors as they free up."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from services.triage.incidents import receive_incident
from services.triage.models import HOLDS_A_SLOT, Job, Vendor
from services.triage.timers import run_timer_pass
from shared.events import IncidentReported, IncidentResponseCompleted, JobDispatched
from shared.topics import INCIDENTS, RESPONSE
from tests.support.kafka import wait_for_events
from tests.triage.conftest import Desk, envelope, eventually, incident_report

INCIDENTS_AT_ONCE = 50


async def test_fifty_concurrent_incidents_never_push_a_vendor_over_capacity(
        desk: Desk, broker: str) -> None:
    capacities = {await desk.vendor(name, capabilities=["forensics"], capacity=capacity,
                                    rating=rating): capacity
                  for name, capacity, rating in [("a", 2, 4.0), ("b", 3, 4.5), ("c", 1, 3.0)]}
    policy = await desk.policy()
    reports = [incident_report(policy, desk.clock.now()) for _ in range(INCIDENTS_AT_ONCE)]
    ours = {str(r.incident_id) for r in reports}
    over: list[str] = []
    done = asyncio.Event()

    async def watch() -> None:
        """Samples the database all along: open jobs per vendor, counted two ways."""
        while not done.is_set():
            async with desk.runtime.uow() as uow:
                held = (await uow.session.execute(
                    select(Job.vendor_id, func.count()).where(
                        Job.status.in_(HOLDS_A_SLOT), Job.vendor_id.in_(list(capacities)))
                    .group_by(Job.vendor_id))).all()
                counters = (await uow.session.execute(
                    select(Vendor.vendor_id, Vendor.open_jobs)
                    .where(Vendor.vendor_id.in_(list(capacities))))).all()
            over.extend(f"{v} holds {n}" for v, n in held if n > capacities[v or ""])
            over.extend(f"{v} counts {n}" for v, n in counters if n > capacities[v])
            await asyncio.sleep(0.02)

    async def apply(report: IncidentReported) -> None:
        """As one of many consumer replicas would: its own transaction."""
        async with desk.runtime.uow() as uow:
            await receive_incident(uow.session, desk.context, report,
                                   envelope(report, desk.clock.now()))
            await uow.commit()

    async def through_kafka(batch: list[IncidentReported]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
        await producer.start()
        try:
            for report in batch:
                message = envelope(report, desk.clock.now())
                await producer.send(INCIDENTS.name, message.to_kafka_value(),
                                    key=str(report.incident_id).encode(),
                                    headers=message.to_kafka_headers())
            await producer.flush()
        finally:
            await producer.stop()

    watcher = asyncio.create_task(watch())
    half = INCIDENTS_AT_ONCE // 2
    await asyncio.gather(through_kafka(reports[:half]), *(apply(r) for r in reports[half:]))

    async def all_triaged() -> list[Job] | None:
        async with desk.runtime.uow() as uow:
            jobs = list(await uow.session.scalars(
                select(Job).where(Job.incident_id.in_([r.incident_id for r in reports]))))
        return jobs if len(jobs) == INCIDENTS_AT_ONCE else None

    jobs = await eventually(all_triaged, what="50 incidents triaged")
    held = Counter(job.vendor_id for job in jobs if job.status == "dispatched")
    assert held == capacities  # every slot taken, none beyond
    assert Counter(job.status for job in jobs)["unassigned"] == INCIDENTS_AT_ONCE - 6

    # The vendors work through everything at once while the timer runs: each completion
    # frees a slot that a waiting job takes.
    async def work(vendor_id: str) -> None:
        headers = desk.tokens.vendor(vendor_id)
        while not done.is_set():
            page = (await desk.client.get("/v1/jobs", params={"status": "dispatched"},
                                          headers=headers)).json()
            for job in page["items"]:
                assert (await desk.act(job["id"], "accept", vendor_id)).status_code == 200
                assert (await desk.complete(job["id"], vendor_id))["status"] == "completed"
            await asyncio.sleep(0.01)

    async def timer() -> None:
        while not done.is_set():
            await run_timer_pass(desk.runtime.uow, desk.context)

    workers = [asyncio.create_task(work(v)) for v in capacities]
    timers = [asyncio.create_task(timer()) for _ in range(2)]
    completed = await wait_for_events(
        broker, RESPONSE.name,
        lambda e: e.type == IncidentResponseCompleted.event_type and e.subject in ours,
        count=INCIDENTS_AT_ONCE, timeout=60)
    done.set()
    await asyncio.gather(watcher, *workers, *timers)
    assert {e.subject for e in completed} == ours
    assert over == []

    dispatched = await wait_for_events(
        broker, RESPONSE.name,
        lambda e: e.type == JobDispatched.event_type and e.subject in ours, count=INCIDENTS_AT_ONCE)
    assert len({e.id for e in dispatched}) == INCIDENTS_AT_ONCE  # each job dispatched once
    vendors = {v["vendor_id"]: v["open_jobs"]
               for v in (await desk.client.get("/v1/vendors", headers=desk.tokens.operator())).json()}
    assert {v: vendors[v] for v in capacities} == dict.fromkeys(capacities, 0)

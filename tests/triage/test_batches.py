"""A fetch of reports applied in one transaction triages exactly as its events applied one at
a time: the vendors are locked once per transaction and their slots counted across the fetch,
a report delivered twice in the fetch is stored once, and a policy earlier in the fetch is
found by the reports after it."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.triage.models import HOLDS_A_SLOT, Incident, Job, Outbox, Vendor
from shared.clock import ManualClock
from shared.events import Category, Envelope, PolicyRegistered
from shared.service import Runtime
from shared.topics import INCIDENTS, POLICIES
from tests.support.kafka import fetched
from tests.support.service import Tokens, running, service_logs
from tests.triage.conftest import Desk, envelope, incident_report, policy_terms

CAPACITIES = {"a": 2, "b": 3, "c": 1}
RATINGS = {"a": 4.0, "b": 4.5, "c": 3.0}


async def outcome(runtime: Runtime, incident_ids: list[uuid.UUID], vendors: dict[str, str]
                  ) -> dict[str, Any]:
    """What triage did with the incidents, with the test's vendor ids named a, b and c."""
    name = {vendor_id: short for short, vendor_id in vendors.items()}
    async with runtime.uow() as uow:
        incidents = {row.id: row for row in await uow.session.scalars(
            select(Incident).where(Incident.id.in_(incident_ids)))}
        jobs = (await uow.session.scalars(
            select(Job).where(Job.incident_id.in_(incident_ids))
            .order_by(Job.incident_id, Job.position))).all()
        open_jobs = dict((await uow.session.execute(
            select(Vendor.vendor_id, Vendor.open_jobs)
            .where(Vendor.vendor_id.in_(list(vendors.values()))))).all())
        events = Counter((await uow.session.scalars(
            select(Outbox.event_type)
            .where(Outbox.partition_key.in_([str(i) for i in incident_ids])))).all())
    by_incident: dict[uuid.UUID, list[tuple[str, str, str | None]]] = {}
    for job in jobs:
        by_incident.setdefault(job.incident_id, []).append(
            (job.job_type, job.status, name[job.vendor_id] if job.vendor_id else None))
    held = Counter(name[job.vendor_id] for job in jobs
                   if job.status in HOLDS_A_SLOT and job.vendor_id)
    return {
        "incidents": [(incidents[i].status, incidents[i].priority, by_incident.get(i, []))
                      for i in incident_ids],
        "open_jobs": {name[vendor_id]: count for vendor_id, count in open_jobs.items()},
        "slots_held": dict(held),
        "events": dict(events),
    }


async def test_one_transaction_per_fetch_triages_as_one_report_at_a_time(
    make_triage: Callable[..., FastAPI], clock: ManualClock, tokens: Tokens, broker: str,
    regions: Iterator[str], caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_triage(clock, run_workers=False)
    outcomes = []
    async with running(app, wait_for_consumer=False) as client:
        runtime: Runtime = app.state.runtime
        consumer = runtime.consumer
        assert consumer is not None
        for together in (True, False):
            desk = Desk(app, client, tokens, broker, clock, next(regions))
            vendors = {short: await desk.vendor(short, capacity=capacity, rating=RATINGS[short])
                       for short, capacity in CAPACITIES.items()}
            terms = policy_terms(desk.region, now=clock.now())
            unseen = policy_terms(desk.region, now=clock.now())
            reports = [incident_report(terms, clock.now(), category=Category.ransomware,
                                       systems_down=True) for _ in range(4)]
            reports.append(incident_report(unseen, clock.now()))
            policy = fetched(envelope(PolicyRegistered(policy=terms), clock.now()),
                             topic=POLICIES.name)
            wrapped: list[Envelope] = [envelope(report, clock.now()) for report in reports]
            wrapped.insert(2, envelope(reports[1], clock.now()))  # again, another event id
            incidents = fetched(*wrapped, topic=INCIDENTS.name)
            with service_logs(caplog, "shared.consumer"):
                if together:
                    await consumer.process_batch([*policy, *incidents])
                else:
                    for record in [*policy, *incidents]:
                        await consumer.process_batch([record])
            assert "one at a time" not in caplog.text  # the fetch was one transaction
            outcomes.append(await outcome(runtime, [r.incident_id for r in reports], vendors))

    applied_together, applied_alone = outcomes
    assert applied_together == applied_alone
    assert applied_together["open_jobs"] == applied_together["slots_held"] == CAPACITIES
    statuses = [status for status, _, _ in applied_together["incidents"]]
    assert statuses == ["triaged"] * 4 + ["awaiting_policy"]
    assert applied_together["events"]["cyberclaims.incident.triaged.v1"] == 4
    assert applied_together["events"]["cyberclaims.job.dispatched.v1"] == sum(CAPACITIES.values())

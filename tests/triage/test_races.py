"""Check-then-act across two inputs, both really at once: a vendor completing a job while an
operator cancels it. Each path locks the incident, then the job, and decides on what it reads
under the locks: exactly one wins, the other gets 409, and the slot is freed once. And the
safety net: a job that stopped moving is set moving again by the timer. A policy and its
incident arriving at once: triaged exactly once."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import update

from services.triage.models import Job
from services.triage.timers import run_timer_pass
from shared.events import IncidentResponseCompleted, IncidentTriaged, PolicyRegistered
from shared.repairs import STUCK_REPAIRED
from shared.topics import INCIDENTS, POLICIES, RESPONSE
from tests.support.kafka import publish, relayed_events
from tests.triage.conftest import Desk, completion_report, envelope, incident_report, policy_terms

ROUNDS = 4


async def test_completion_and_cancellation_at_once_leave_one_outcome(desk: Desk,
                                                                     broker: str) -> None:
    vendor = await desk.vendor("racer", capabilities=["forensics"], capacity=ROUNDS)
    policy = await desk.policy()
    for round_ in range(ROUNDS):
        incident_id = await desk.report(policy)
        [job] = (await desk.triaged(incident_id))["jobs"]
        await desk.accept(job["id"], vendor)
        complete = desk.act(job["id"], "complete", vendor, completion_report(desk.clock.now()))
        cancel = desk.client.post(f"/v1/jobs/{job['id']}/cancel", headers=desk.tokens.operator())
        if round_ % 2:  # both orders of starting
            cancelled, completed = await asyncio.gather(cancel, complete)
        else:
            completed, cancelled = await asyncio.gather(complete, cancel)
        assert sorted([completed.status_code, cancelled.status_code]) == [200, 409], (
            completed.text, cancelled.text)
        final = await desk.job(job["id"])
        winner = "completed" if completed.status_code == 200 else "cancelled"
        assert final["status"] == winner
        assert [h["status"] for h in final["history"]].count(winner) == 1
        if winner == "completed":
            subject = str(incident_id)
            found = await relayed_events(broker, RESPONSE.name, desk.runtime.engine, subject,
                                         lambda e, s=subject: (
                e.subject == s and e.type == IncidentResponseCompleted.event_type))
            assert len(found) == 1
    vendors = (await desk.client.get("/v1/vendors", headers=desk.tokens.operator())).json()
    [mine] = [v for v in vendors if v["vendor_id"] == vendor]
    assert mine["open_jobs"] == 0


async def test_the_timer_gives_a_dispatched_job_without_deadline_one_and_counts_it(
        desk: Desk) -> None:
    vendor = await desk.vendor("forgotten", capabilities=["forensics"])
    [job] = (await desk.triaged(await desk.report(await desk.policy())))["jobs"]
    assert job["vendor_id"] == vendor
    async with desk.runtime.uow() as uow:  # what a bug elsewhere would leave behind
        await uow.session.execute(update(Job).where(Job.id == uuid.UUID(job["id"]))
                                  .values(accept_by=None))
        await uow.commit()
    repaired = STUCK_REPAIRED.labels("triage", "job_without_deadline")
    before = repaired._value.get()

    done = await run_timer_pass(desk.runtime.uow, desk.context)

    assert done.repaired >= 1 and repaired._value.get() == before + done.repaired
    fixed = await desk.job(job["id"])
    assert fixed["status"] == "dispatched" and fixed["accept_by"] is not None
    assert "had no acceptance deadline" in (fixed["history"][-1]["note"] or "")
    assert (await run_timer_pass(desk.runtime.uow, desk.context)).repaired == 0


async def test_a_policy_and_its_incident_arriving_at_once_are_triaged_once(desk: Desk,
                                                                            broker: str) -> None:
    """The two topics are not ordered with each other: whichever lands first, the incident is
    triaged exactly once (the timer decides, under the incident's lock)."""
    await desk.vendor("any")
    for round_ in range(2):
        terms = policy_terms(desk.region, now=desk.clock.now())
        incident = incident_report(terms, desk.clock.now())
        sends = [publish(broker, POLICIES.name, envelope(PolicyRegistered(policy=terms),
                                                          desk.clock.now()),
                         key=terms.policy_number.encode()),
                 publish(broker, INCIDENTS.name, envelope(incident, desk.clock.now()),
                         key=str(incident.incident_id).encode())]
        await asyncio.gather(*(sends if round_ else reversed(sends)))
        await desk.triaged(incident.incident_id)
        subject = str(incident.incident_id)
        found = await relayed_events(broker, RESPONSE.name, desk.runtime.engine, subject,
                                     lambda e, s=subject: (
            e.subject == s and e.type == IncidentTriaged.event_type))
        assert len(found) == 1

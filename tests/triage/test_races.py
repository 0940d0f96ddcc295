"""Check-then-act across two inputs, both really at once: a vendor completing a job while an
operator cancels it. Each path locks the incident, then the job, and decides on what it reads
under the locks: exactly one wins, the other gets 409, and the slot is freed once. Two vendors
completing the two jobs of one incident: its response completes once, with both findings. A
vendor accepting at its deadline while the timer expires the job: one outcome. And the safety
net: a job that stopped moving is set moving again by the timer. A policy and its incident
arriving at once: triaged exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

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


async def test_the_last_two_jobs_of_an_incident_completed_at_once_complete_it_once(
        desk: Desk, broker: str) -> None:
    forensic = await desk.vendor("forensic", capabilities=["forensics"], capacity=ROUNDS)
    counsel = await desk.vendor("counsel", capabilities=["legal_counsel"], capacity=ROUNDS)
    policy = await desk.policy()
    for round_ in range(ROUNDS):
        incident_id = await desk.report(policy, category="insider_misuse")
        jobs = (await desk.triaged(incident_id))["jobs"]
        assert [j["vendor_id"] for j in jobs] == [forensic, counsel]
        for job in jobs:
            await desk.accept(job["id"], job["vendor_id"])
        completions = [desk.act(job["id"], "complete", job["vendor_id"],
                                completion_report(desk.clock.now())) for job in jobs]
        answers = await asyncio.gather(*(completions if round_ % 2 else reversed(completions)))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        subject = str(incident_id)
        found = await relayed_events(broker, RESPONSE.name, desk.runtime.engine, subject,
                                     lambda e, s=subject: (
            e.subject == s and e.type == IncidentResponseCompleted.event_type))
        assert len(found) == 1
        assert len(found[0].data["findings"]) == 2
    vendors = (await desk.client.get("/v1/vendors", headers=desk.tokens.operator())).json()
    assert {v["vendor_id"]: v["open_jobs"] for v in vendors
            if v["vendor_id"] in (forensic, counsel)} == {forensic: 0, counsel: 0}


async def test_an_accept_at_its_deadline_and_the_timer_expiring_the_job_leave_one_outcome(
        desk: Desk) -> None:
    for name in ("edge", "next"):  # one to hold each job, one to take it when it expires
        await desk.vendor(name, capabilities=["forensics"], capacity=ROUNDS)
    policy = await desk.policy()
    for round_ in range(ROUNDS):
        [job] = (await desk.triaged(await desk.report(policy)))["jobs"]
        vendor = job["vendor_id"]
        deadline = datetime.fromisoformat(job["accept_by"])
        desk.clock.set(deadline)  # the last instant the vendor may accept
        accept = desk.act(job["id"], "accept", vendor)
        expire = run_timer_pass(desk.runtime.uow, desk.context,
                                now=deadline + timedelta(microseconds=1))
        if round_ % 2:
            done, accepted = await asyncio.gather(expire, accept)
        else:
            accepted, done = await asyncio.gather(accept, expire)
        final = await desk.job(job["id"])
        statuses = [h["status"] for h in final["history"]]
        if accepted.status_code == 200:
            assert final["status"] == "accepted" and final["vendor_id"] == vendor
            assert "expired" not in statuses
        else:
            assert (accepted.status_code, accepted.json()["state"]) == (409, "expired")
            assert done.expired >= 1 and statuses.count("expired") == 1
            assert final["vendor_id"] != vendor

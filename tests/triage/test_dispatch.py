"""Triage on real PostgreSQL and Tansu: grading, dispatch in the rulebook's order, decline,
expiry, waiting jobs and the vendors' job API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update

from services.triage.incidents import receive_incident
from services.triage.models import Incident, Job, Outbox, Vendor
from services.triage.timers import _assign_waiting, run_timer_pass
from shared.clock import ManualClock
from shared.events import (
    Category,
    IncidentTriaged,
    JobDeclined,
    JobDispatched,
    JobExpired,
    JobUnassigned,
    PolicyUpdated,
)
from shared.topics import RESPONSE
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens, running
from tests.triage.conftest import Desk, envelope, eventually, incident_report


def about(incident_id: uuid.UUID, event_type: str) -> Callable[[Any], bool]:
    return lambda e: e.subject == str(incident_id) and e.type == event_type


async def test_ransomware_with_systems_down_is_p1_and_dispatched_in_the_rulebooks_order(
        desk: Desk, broker: str) -> None:
    # Equal load and rating ties go to the lowest vendor_id; load beats rating.
    low = await desk.vendor("a-low", capacity=2, rating=4.0)
    high_1 = await desk.vendor("b-high", capacity=4, rating=4.5)
    high_2 = await desk.vendor("c-high", capacity=4, rating=4.5)
    policy = await desk.policy()
    incident_id = await desk.report(policy, category=Category.ransomware, systems_down=True)

    triage = await desk.triaged(incident_id)
    assert (triage["priority"], triage["regulatory_grade"], triage["regulatory_deadline"]) == (
        "P1", "general", None)
    jobs = triage["jobs"]
    assert [j["job_type"] for j in jobs] == [
        "forensics", "ransomware_negotiation", "data_recovery", "crisis_communications"]
    # forensics: all idle, best rating, tie on id -> b; then a(0/2) vs c(0/4) tie -> c by rating;
    # then a (0/2); crisis: b 1/4 and c 1/4 tie, same rating -> b.
    assert [j["vendor_id"] for j in jobs] == [high_1, high_2, low, high_1]
    accept_by = desk.clock.now() + timedelta(minutes=15)
    for job in jobs:
        assert job["status"] == "dispatched"
        assert datetime.fromisoformat(job["accept_by"]) == accept_by
        assert [h["status"] for h in job["history"]] == ["dispatched"]

    triaged = await wait_for_events(broker, RESPONSE.name,
                                    about(incident_id, IncidentTriaged.event_type))
    event = triaged[0].event()
    assert isinstance(event, IncidentTriaged)
    assert [str(j.job_id) for j in event.jobs] == [j["id"] for j in jobs]
    dispatched = await wait_for_events(broker, RESPONSE.name,
                                       about(incident_id, JobDispatched.event_type), count=4)
    sent = [e.event() for e in dispatched]
    assert {str(d.job_id): (d.vendor_id, d.accept_by, d.attempt)
            for d in sent if isinstance(d, JobDispatched)} == {
        j["id"]: (j["vendor_id"], accept_by, 1) for j in jobs}
    assert {e.correlationid for e in [*triaged, *dispatched]} == {triaged[0].correlationid}

    vendors = (await desk.client.get("/v1/vendors", headers=desk.tokens.operator())).json()
    loads = {v["vendor_id"]: v["open_jobs"] for v in vendors}
    assert (loads[low], loads[high_1], loads[high_2]) == (1, 2, 1)


@pytest.mark.parametrize(("report", "expected"), [
    ({"category": Category.data_breach, "records_exposed": 1_000_000},
     ("P1", "relatively_serious", timedelta(hours=4),
      ["forensics", "legal_counsel", "notification_services", "crisis_communications"])),
    ({"category": Category.ddos, "systems_down": True},
     ("P1", "relatively_serious", timedelta(hours=1), ["ddos_mitigation", "crisis_communications"])),
    ({"category": Category.business_email_compromise},
     ("P3", "general", None, ["forensics", "funds_recovery"])),
])
async def test_grade_and_regulatory_deadline_use_the_policy(desk: Desk, report: dict[str, Any],
                                                            expected: tuple[Any, ...]) -> None:
    await desk.vendor("any")
    critical = report["category"] is Category.ddos
    policy = await desk.policy(critical_infrastructure=critical)
    incident_id = await desk.report(policy, **report)
    triage = await desk.triaged(incident_id)
    priority, grade, window, job_types = expected
    discovered = desk.clock.now() - timedelta(hours=2)
    deadline = discovered + window if window else None
    assert triage["priority"] == priority
    assert triage["regulatory_grade"] == grade
    assert (datetime.fromisoformat(triage["regulatory_deadline"])
            if triage["regulatory_deadline"] else None) == deadline
    assert [j["job_type"] for j in triage["jobs"]] == job_types


async def test_decline_goes_to_the_next_vendor_and_never_back(desk: Desk, broker: str) -> None:
    first = await desk.vendor("first", capabilities=["forensics"], rating=5.0, capacity=1)
    second = await desk.vendor("second", capabilities=["forensics"], rating=4.0, capacity=1)
    incident_id = await desk.report(await desk.policy())
    job = (await desk.triaged(incident_id))["jobs"][0]
    assert job["vendor_id"] == first

    declined = await desk.act(job["id"], "decline", first, {"reason": "team on another case"})
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "declined"  # as the first vendor now sees it
    job = await desk.job(job["id"])
    assert (job["vendor_id"], job["status"], job["attempt"]) == (second, "dispatched", 2)
    assert [h["status"] for h in job["history"]] == ["dispatched", "declined", "dispatched"]
    assert job["history"][1]["note"] == "team on another case"
    seen_by_second = (await desk.job(job["id"], desk.tokens.vendor(second)))["history"]
    assert [(h["status"], h["vendor_id"], h["actor"], h["note"]) for h in seen_by_second[:2]] == [
        ("dispatched", None, "triage", None), ("declined", None, "another vendor", None)]
    assert seen_by_second[2]["vendor_id"] == second
    again = await desk.act(job["id"], "accept", first)
    assert again.status_code == 409
    assert again.json()["state"] == "declined"

    # The second declines too: nobody else may take it (the first never gets it back).
    assert (await desk.act(job["id"], "decline", second, {"reason": "no"})).status_code == 200
    job = await desk.job(job["id"])
    assert (job["status"], job["vendor_id"]) == ("unassigned", None)
    await wait_for_events(broker, RESPONSE.name, about(incident_id, JobUnassigned.event_type))
    declines = await wait_for_events(broker, RESPONSE.name,
                                     about(incident_id, JobDeclined.event_type), count=2)
    assert {d.event().vendor_id for d in declines} == {first, second}  # type: ignore[attr-defined]

    # A vendor added later takes it at once.
    third = await desk.vendor("third", capabilities=["forensics"])
    job = await desk.job(job["id"])
    assert (job["status"], job["vendor_id"], job["attempt"]) == ("dispatched", third, 3)


async def test_expiry_goes_to_the_next_vendor(make_triage: Callable[..., FastAPI],
                                              clock: ManualClock, tokens: Tokens, broker: str,
                                              region: str) -> None:
    # A timer that only runs at start-up, so this test runs the passes itself.
    app = make_triage(clock, timer_poll_seconds=3600)
    async with running(app) as client:
        desk = Desk(app, client, tokens, broker, clock, region)
        first = await desk.vendor("first", capabilities=["forensics"], rating=5.0)
        second = await desk.vendor("second", capabilities=["forensics"], rating=4.0)
        incident_id = await desk.report(await desk.policy())
        job = (await desk.triaged(incident_id))["jobs"][0]
        accept_by = datetime.fromisoformat(job["accept_by"])
        assert accept_by == clock.now() + timedelta(hours=24)  # P4

        clock.set(accept_by)  # the deadline itself is still in time
        await run_timer_pass(desk.runtime.uow, desk.context)
        assert (await desk.job(job["id"]))["vendor_id"] == first
        clock.advance(timedelta(seconds=1))
        late = await desk.act(job["id"], "accept", first)
        assert late.status_code == 409
        assert late.json()["state"] == "expired"

        assert (await run_timer_pass(desk.runtime.uow, desk.context)).expired >= 1
        job = await desk.job(job["id"])
        assert (job["vendor_id"], job["status"], job["attempt"]) == (second, "dispatched", 2)
        assert datetime.fromisoformat(job["accept_by"]) == clock.now() + timedelta(hours=24)
        assert [h["status"] for h in job["history"]] == ["dispatched", "expired", "dispatched"]
        expired = await wait_for_events(broker, RESPONSE.name,
                                        about(incident_id, JobExpired.event_type))
        event = expired[0].event()
        assert isinstance(event, JobExpired)
        assert (event.vendor_id, event.accept_by) == (first, accept_by)
        mine = await desk.act(job["id"], "accept", first)
        assert (mine.status_code, mine.json()["state"]) == (409, "expired")
        assert (await desk.accept(job["id"], second))["status"] == "accepted"


async def test_a_vendor_given_back_a_job_it_passed_on_may_pass_on_it_again(
        make_triage: Callable[..., FastAPI], clock: ManualClock, tokens: Tokens, broker: str,
        region: str) -> None:
    """An operator may hand a job back to a vendor that declined it or let it expire; that
    vendor's next decline or expiry is its latest word, not a clash with the first (a 500 for
    the vendor, and a timer pass failing on it for every tenant's deadlines)."""
    app = make_triage(clock, timer_poll_seconds=3600)
    async with running(app) as client:
        desk = Desk(app, client, tokens, broker, clock, region)
        first = await desk.vendor("first", capabilities=["forensics"], rating=5.0)
        second = await desk.vendor("second", capabilities=["forensics"], rating=4.0)
        job_id = (await desk.triaged(await desk.report(await desk.policy())))["jobs"][0]["id"]
        operator = desk.tokens.operator()

        async def give_back() -> None:
            given = await client.post(f"/v1/jobs/{job_id}/assign", headers=operator,
                                      json={"vendor_id": first})
            assert given.status_code == 200, given.text

        assert (await desk.act(job_id, "decline", first, {"reason": "busy"})).status_code == 200
        await give_back()
        clock.advance(timedelta(hours=25))  # past the P4 deadline
        other = (await desk.triaged(await desk.report(await desk.policy())))["jobs"][0]
        clock.advance(timedelta(hours=25))
        passed = await run_timer_pass(desk.runtime.uow, desk.context)
        assert passed.expired >= 2  # the job given back, and another tenant's behind it
        assert (await desk.job(other["id"]))["attempt"] == 2
        job = await desk.job(job_id)
        assert (job["vendor_id"], job["status"]) == (second, "dispatched")
        await give_back()
        again = await desk.act(job_id, "decline", first, {"reason": "still busy"})
        assert again.status_code == 200, again.text
        job = await desk.job(job_id)
        assert (job["vendor_id"], job["status"]) == (second, "dispatched")


async def test_jobs_no_vendor_can_take_never_hide_the_waiting_jobs_behind_them(
        make_triage: Callable[..., FastAPI], clock: ManualClock, tokens: Tokens, broker: str,
        region: str) -> None:
    """The timer offers waiting jobs again a page at a time: a page of jobs every vendor has
    passed on must not stop it from reaching a job a vendor now has room for."""
    app = make_triage(clock, timer_poll_seconds=3600)
    async with running(app) as client:
        desk = Desk(app, client, tokens, broker, clock, region)
        only = await desk.vendor("only", capabilities=["forensics"], capacity=1)
        policy = await desk.policy()
        passed_on = (await desk.triaged(await desk.report(policy)))["jobs"][0]
        assert (await desk.act(passed_on["id"], "decline", only, {"reason": "no"})).status_code == 200
        clock.advance(timedelta(seconds=1))
        held = (await desk.triaged(await desk.report(policy)))["jobs"][0]
        clock.advance(timedelta(seconds=1))
        behind = (await desk.triaged(await desk.report(policy)))["jobs"][0]
        assert (held["vendor_id"], behind["status"]) == (only, "unassigned")
        async with desk.runtime.uow() as uow:  # room a vendor gained while its row was locked
            await uow.session.execute(update(Vendor).where(Vendor.vendor_id == only)
                                      .values(capacity=2))
            await uow.commit()
        assert await _assign_waiting(desk.runtime.uow, desk.context, clock.now(), batch=1) == 1
        assert (await desk.job(behind["id"]))["vendor_id"] == only
        assert (await desk.job(passed_on["id"]))["status"] == "unassigned"


async def test_a_waiting_job_is_assigned_as_soon_as_capacity_frees(desk: Desk) -> None:
    only = await desk.vendor("only", capabilities=["forensics"], capacity=1)
    policy = await desk.policy()
    jobs = []
    for _ in range(4):
        triage = await desk.triaged(await desk.report(policy))
        jobs.append(triage["jobs"][0])
    assert [j["status"] for j in jobs] == ["dispatched", "unassigned", "unassigned", "unassigned"]

    # A job completes: the oldest waiting job goes to the freed vendor.
    await desk.accept(jobs[0]["id"], only)
    await desk.complete(jobs[0]["id"], only)
    assert (await desk.job(jobs[1]["id"]))["vendor_id"] == only
    assert (await desk.job(jobs[2]["id"]))["status"] == "unassigned"

    # The vendor gets more capacity.
    response = await desk.client.put(f"/v1/vendors/{only}", headers=desk.tokens.operator(), json={
        "name": "Vendor only", "capabilities": ["forensics"], "regions": [desk.region],
        "capacity": 2, "rating": 4.0})
    assert response.status_code == 200, response.text
    assert response.json()["open_jobs"] == 2
    assert (await desk.job(jobs[2]["id"]))["vendor_id"] == only

    # An operator cancels a job.
    cancelled = await desk.client.post(f"/v1/jobs/{jobs[1]['id']}/cancel",
                                       headers=desk.tokens.operator())
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    job = await desk.job(jobs[3]["id"])
    assert (job["vendor_id"], job["status"]) == (only, "dispatched")
    assert [h["status"] for h in job["history"]] == ["unassigned", "dispatched"]


async def test_operator_assigns_a_waiting_job_within_capacity(desk: Desk) -> None:
    busy = await desk.vendor("busy", capabilities=["forensics"], capacity=1)
    elsewhere = await desk.vendor("elsewhere", capabilities=["forensics"], regions=["*"],
                                  active=False)
    policy = await desk.policy()
    first = (await desk.triaged(await desk.report(policy)))["jobs"][0]
    waiting = (await desk.triaged(await desk.report(policy)))["jobs"][0]
    assert (first["vendor_id"], waiting["status"]) == (busy, "unassigned")

    operator = desk.tokens.operator()
    full = await desk.client.post(f"/v1/jobs/{waiting['id']}/assign", headers=operator,
                                  json={"vendor_id": busy})
    assert full.status_code == 409
    inactive = await desk.client.post(f"/v1/jobs/{waiting['id']}/assign", headers=operator,
                                      json={"vendor_id": elsewhere})
    assert inactive.status_code == 422
    unknown = await desk.client.post(f"/v1/jobs/{waiting['id']}/assign", headers=operator,
                                     json={"vendor_id": "nobody"})
    assert (unknown.status_code, unknown.json()["errors"][0]["field"]) == (422, "vendor_id")
    helper = await desk.vendor("helper", capabilities=["legal_counsel"], capacity=1,
                               regions=["CN-ZZ"])
    incapable = await desk.client.post(f"/v1/jobs/{waiting['id']}/assign", headers=operator,
                                       json={"vendor_id": helper})
    assert incapable.status_code == 422
    # Outside its regions is the operator's call.
    remote = await desk.vendor("remote", capabilities=["forensics"], capacity=1, regions=["CN-ZZ"])
    assigned = await desk.client.post(f"/v1/jobs/{waiting['id']}/assign", headers=operator,
                                      json={"vendor_id": remote})
    assert assigned.status_code == 200, assigned.text
    assert (assigned.json()["vendor_id"], assigned.json()["status"]) == (remote, "dispatched")


async def test_policy_copies_keep_the_newest_version_and_late_policies_still_triage(
        desk: Desk) -> None:
    await desk.vendor("any")
    terms = await desk.policy(critical_infrastructure=True)
    newer = terms.model_copy(update={"critical_infrastructure": True})
    older = terms.model_copy(update={"critical_infrastructure": False})
    await desk.publish_policy(terms, PolicyUpdated(policy=newer, version=3))
    await desk.publish_policy(terms, PolicyUpdated(policy=older, version=2))

    async def newest() -> bool:
        return await desk.policy_version(terms.policy_number) == 3

    await eventually(newest, what="policy version 3")
    incident_id = await desk.report(terms, category=Category.ddos, systems_down=True)
    assert (await desk.triaged(incident_id))["regulatory_grade"] == "relatively_serious"

    # An incident whose policy triage has not seen yet waits for it, then is triaged.
    unseen = terms.model_copy(update={"policy_number": f"POL-{uuid.uuid4().hex[:10]}"})
    late = await desk.report(unseen)
    stored = await eventually(lambda: desk.triage_of(late), what="incident stored")
    assert (stored["status"], stored["priority"], stored["jobs"]) == ("awaiting_policy", None, [])
    await desk.publish_policy(unseen)
    triage = await desk.triaged(late)
    assert (triage["priority"], triage["jobs"][0]["status"]) == ("P4", "dispatched")


async def test_an_incident_delivered_again_under_another_event_id_is_stored_once(
        desk: Desk) -> None:
    """With its policy known (triaged once) and without (stored once, waiting for it)."""
    await desk.vendor("any")
    known = await desk.policy()
    unseen = known.model_copy(update={"policy_number": f"POL-{uuid.uuid4().hex[:10]}"})
    reports = [incident_report(terms, desk.clock.now(), category=Category.ransomware)
               for terms in (known, unseen)]
    for report in reports:
        for _ in range(2):
            async with desk.runtime.uow() as uow:
                await receive_incident(uow.session, desk.context, report,
                                       envelope(report, desk.clock.now()))
                await uow.commit()
    async with desk.runtime.uow() as uow:
        statuses = {incident_id: status for incident_id, status in await uow.session.execute(
            select(Incident.id, Incident.status)
            .where(Incident.id.in_([r.incident_id for r in reports])))}
        jobs = await uow.session.scalar(
            select(func.count()).where(Job.incident_id == reports[0].incident_id))
        triaged = await uow.session.scalar(select(func.count()).where(
            Outbox.event_type == IncidentTriaged.event_type,
            Outbox.partition_key == str(reports[0].incident_id)))
    assert statuses == {reports[0].incident_id: "triaged",
                        reports[1].incident_id: "awaiting_policy"}
    assert (jobs, triaged) == (3, 1)


async def test_an_unassigned_job_says_whether_no_vendor_serves_it_or_all_are_full(
        desk: Desk, broker: str) -> None:
    policy = await desk.policy()
    nobody = (await desk.triaged(await desk.report(policy)))["jobs"][0]
    assert nobody["status"] == "unassigned"
    serves_none = f"no active vendor serves forensics in {desk.region}"
    assert [h["note"] for h in nobody["history"]] == [serves_none]
    [unassigned] = await wait_for_events(
        broker, RESPONSE.name, lambda e: e.type == JobUnassigned.event_type
        and e.data["job_id"] == nobody["id"])
    assert unassigned.data["reason"] == serves_none

    await desk.vendor("inactive", capabilities=["forensics"], active=False)
    full = await desk.vendor("full", capabilities=["forensics"], capacity=1)
    assert (await desk.job(nobody["id"]))["vendor_id"] == full  # took the waiting job
    waiting = (await desk.triaged(await desk.report(policy)))["jobs"][0]
    assert waiting["status"] == "unassigned"
    assert [h["note"] for h in waiting["history"]] == ["no eligible vendor has free capacity"]

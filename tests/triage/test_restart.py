"""Deadlines are durable: a job that expires while triage is down goes to the next vendor
when triage comes back (the timer reads the database, nothing waits in memory)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fastapi import FastAPI

from shared.clock import ManualClock
from shared.events import JobDispatched, JobExpired
from shared.topics import RESPONSE
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens, running
from tests.triage.conftest import Desk


async def test_expiry_goes_to_the_next_vendor_across_a_restart(
        make_triage: Callable[..., FastAPI], tokens: Tokens, broker: str, region: str) -> None:
    clock = ManualClock()
    app = make_triage(clock)
    async with running(app) as client:
        desk = Desk(app, client, tokens, broker, clock, region)
        first = await desk.vendor("first", capabilities=["forensics"], rating=5.0)
        second = await desk.vendor("second", capabilities=["forensics"], rating=4.0)
        incident_id = await desk.report(await desk.policy(), category="unauthorized_access",
                                        systems_down=True)
        job = (await desk.triaged(incident_id))["jobs"][0]
        assert (job["vendor_id"], job["priority"]) == (first, "P2")
        await wait_for_events(broker, RESPONSE.name,
                              lambda e: e.subject == str(incident_id)
                              and e.type == JobDispatched.event_type)

    clock.advance(timedelta(minutes=61))  # past the P2 deadline while triage is down

    restarted = make_triage(clock)
    async with running(restarted) as client:
        desk = Desk(restarted, client, tokens, broker, clock, region)
        job = await desk.job_when(job["id"], lambda j: j["vendor_id"] == second,
                                  what="re-dispatch to the next vendor")
        assert (job["status"], job["attempt"]) == ("dispatched", 2)
        assert [h["status"] for h in job["history"]] == ["dispatched", "expired", "dispatched"]
        expired = await wait_for_events(broker, RESPONSE.name,
                                        lambda e: e.subject == str(incident_id)
                                        and e.type == JobExpired.event_type)
        assert expired[0].event().vendor_id == first  # type: ignore[attr-defined]
        await wait_for_events(broker, RESPONSE.name,
                              lambda e: e.subject == str(incident_id)
                              and e.type == JobDispatched.event_type and e.data["attempt"] == 2)
        dispatched = await wait_for_events(broker, RESPONSE.name,
                                           lambda e: e.subject == str(incident_id)
                                           and e.type == JobDispatched.event_type, count=2)
        # Publishing is at least once (a relay stopped mid-pass sends its rows again, and
        # consumers skip them by event id): one event per attempt, however often it was sent.
        attempts = {e.id: e.event().attempt for e in dispatched}  # type: ignore[attr-defined]
        assert sorted(attempts.values()) == [1, 2]

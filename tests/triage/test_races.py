"""Check-then-act across two inputs, both really at once: a vendor completing a job while an
operator cancels it. Each path locks the incident, then the job, and decides on what it reads
under the locks: exactly one wins, the other gets 409, and the slot is freed once."""

from __future__ import annotations

import asyncio

from shared.events import IncidentResponseCompleted
from shared.topics import RESPONSE
from tests.support.kafka import wait_for_events
from tests.triage.conftest import Desk, completion_report

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
            found = await wait_for_events(broker, RESPONSE.name, lambda e, s=subject: (
                e.subject == s and e.type == IncidentResponseCompleted.event_type), settle=0.3)
            assert len(found) == 1
    vendors = (await desk.client.get("/v1/vendors", headers=desk.tokens.operator())).json()
    [mine] = [v for v in vendors if v["vendor_id"] == vendor]
    assert mine["open_jobs"] == 0

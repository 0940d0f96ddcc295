"""Job life cycle to the end: illegal transitions, completion reports, and the incident's
response completed with what payout needs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from shared.events import (
    Attribution,
    Category,
    IncidentResponseCompleted,
    JobCancelled,
    JobCompleted,
    JobType,
    Section,
)
from shared.topics import RESPONSE
from tests.support.kafka import relayed_events, wait_for_events
from tests.triage.conftest import Desk, completion_report


async def test_response_completed_carries_findings_outage_and_verified_losses(
        desk: Desk, broker: str) -> None:
    forensic = await desk.vendor("forensic", capabilities=["forensics"])
    counsel = await desk.vendor("counsel", capabilities=["legal_counsel"])
    notifier = await desk.vendor("notifier", capabilities=["notification_services"])
    incident_id = await desk.report(await desk.policy(), category=Category.data_breach,
                                    records_exposed=5_000)
    jobs = (await desk.triaged(incident_id))["jobs"]
    assert [(j["job_type"], j["vendor_id"]) for j in jobs] == [
        ("forensics", forensic), ("legal_counsel", counsel), ("notification_services", notifier)]
    forensics_job, legal_job, notify_job = (j["id"] for j in jobs)
    now = desk.clock.now()

    # Illegal transitions name the current state.
    early = await desk.act(forensics_job, "complete", forensic, completion_report(now))
    assert (early.status_code, early.json()["state"]) == (409, "dispatched")
    assert "dispatched" in early.json()["detail"]
    await desk.accept(forensics_job, forensic)
    twice = await desk.act(forensics_job, "accept", forensic)
    assert (twice.status_code, twice.json()["state"]) == (409, "accepted")
    declined_late = await desk.act(forensics_job, "decline", forensic, {"reason": "x"})
    assert (declined_late.status_code, declined_late.json()["state"]) == (409, "accepted")

    # The completion report is checked field by field.
    cases: list[tuple[dict[str, Any], str]] = [
        ({"contained_at": (now + timedelta(minutes=6)).isoformat()}, "contained_at"),
        ({"outage_started_at": now.isoformat(),
          "outage_ended_at": (now - timedelta(minutes=1)).isoformat()}, "outage_ended_at"),
        ({"outage_started_at": now.isoformat()}, "outage_ended_at"),
        ({"verified_losses": [{"section": "incident_response", "amount": "-1",
                               "description": "x"}]}, "verified_losses.0.amount"),
        ({"verified_losses": [{"section": "pizza", "amount": "1", "description": "x"}]},
         "verified_losses.0.section"),
        # A forensics job verifies incident response only (docs/approvals.md).
        ({"verified_losses": [{"section": "incident_response", "amount": "1", "description": "x"},
                              {"section": "business_interruption", "amount": "1",
                               "description": "lost income"}]}, "verified_losses.1.section"),
        ({"attribution": "aliens"}, "attribution"),
        ({"records_confirmed": -1}, "records_confirmed"),
    ]
    for overrides, field in cases:
        bad = await desk.act(forensics_job, "complete", forensic, completion_report(now, **overrides))
        assert bad.status_code == 422, (overrides, bad.text)
        assert bad.json()["errors"][0]["field"] == field
    assert (await desk.job(forensics_job))["status"] == "accepted"  # nothing half-written

    started, ended = now - timedelta(hours=10), now - timedelta(hours=2)
    done = await desk.complete(
        forensics_job, forensic, attribution="criminal",
        outage_started_at=started.isoformat(), outage_ended_at=(ended - timedelta(hours=1)).isoformat(),
        verified_losses=[{"section": "incident_response", "amount": "30000",
                          "description": "forensics invoice"},
                         {"section": "incident_response", "amount": "120000.50",
                          "description": "containment"}])
    assert done["status"] == "completed"
    assert done["report"]["verified_losses"][1]["amount"] == "120000.50"
    assert (await desk.act(forensics_job, "complete", forensic,
                           completion_report(now))).status_code == 409

    await desk.accept(legal_job, counsel)
    await desk.complete(legal_job, counsel, attribution="unknown",
                        outage_started_at=(started + timedelta(hours=1)).isoformat(),
                        outage_ended_at=ended.isoformat(),
                        verified_losses=[{"section": "legal_and_notification",
                                          "amount": "12000.5", "description": "breach counsel"}])
    triage = await desk.triage_of(incident_id)
    assert triage is not None and triage["status"] == "triaged"  # one job still open

    cancelled = await desk.client.post(f"/v1/jobs/{notify_job}/cancel",
                                       headers=desk.tokens.operator())
    assert cancelled.status_code == 200, cancelled.text
    again = await desk.client.post(f"/v1/jobs/{notify_job}/cancel", headers=desk.tokens.operator())
    assert (again.status_code, again.json()["state"]) == (409, "cancelled")
    completed_job = await desk.client.post(f"/v1/jobs/{forensics_job}/cancel",
                                           headers=desk.tokens.operator())
    assert (completed_job.status_code, completed_job.json()["state"]) == (409, "completed")

    events = await relayed_events(
        broker, RESPONSE.name, desk.runtime.engine, str(incident_id),
        lambda e: e.subject == str(incident_id) and e.type == IncidentResponseCompleted.event_type)
    assert len(events) == 1
    event = events[0].event()
    assert isinstance(event, IncidentResponseCompleted)
    assert event.policy_number == triage["policy_number"]
    assert [(f.job_type, f.vendor_id, f.attribution) for f in event.findings] == [
        (JobType.forensics, forensic, Attribution.criminal),
        (JobType.legal_counsel, counsel, Attribution.unknown)]
    assert event.attribution is Attribution.criminal
    assert event.verified_outage is not None
    assert (event.verified_outage.started_at, event.verified_outage.ended_at) == (started, ended)
    assert [(str(loss.job_id), loss.vendor_id, loss.section, loss.amount)
            for loss in event.verified_losses] == [
        (forensics_job, forensic, Section.incident_response, Decimal("30000.00")),
        (forensics_job, forensic, Section.incident_response, Decimal("120000.50")),
        (legal_job, counsel, Section.legal_and_notification, Decimal("12000.50")),
    ]
    assert events[0].correlationid == (await wait_for_events(
        broker, RESPONSE.name,
        lambda e: e.subject == str(incident_id) and e.type == JobCompleted.event_type,
        count=2))[0].correlationid
    cancel_events = await wait_for_events(
        broker, RESPONSE.name,
        lambda e: e.subject == str(incident_id) and e.type == JobCancelled.event_type)
    assert cancel_events[0].event().vendor_id == notifier  # type: ignore[attr-defined]

    triage = await desk.triage_of(incident_id)
    assert triage is not None and triage["status"] == "response_completed"
    assert [j["status"] for j in triage["jobs"]] == ["completed", "completed", "cancelled"]
    assert [h["status"] for h in triage["jobs"][0]["history"]] == [
        "dispatched", "accepted", "completed"]
    vendors = {v["vendor_id"]: v["open_jobs"]
               for v in (await desk.client.get("/v1/vendors", headers=desk.tokens.operator())).json()}
    assert (vendors[forensic], vendors[counsel], vendors[notifier]) == (0, 0, 0)


async def test_a_state_actor_finding_decides_the_attribution(desk: Desk, broker: str) -> None:
    await desk.vendor("all")
    incident_id = await desk.report(await desk.policy(), category=Category.insider_misuse)
    jobs = (await desk.triaged(incident_id))["jobs"]
    for job, attribution in zip(jobs, ["insider", "state_actor"], strict=True):
        await desk.accept(job["id"], job["vendor_id"])
        await desk.complete(job["id"], job["vendor_id"], attribution=attribution)
    events = await wait_for_events(
        broker, RESPONSE.name,
        lambda e: e.subject == str(incident_id) and e.type == IncidentResponseCompleted.event_type)
    event = events[0].event()
    assert isinstance(event, IncidentResponseCompleted)
    assert (event.attribution, event.verified_outage, event.verified_losses) == (
        Attribution.state_actor, None, [])

"""Assessment jobs through triage's dispatch, both services running on PostgreSQL and Tansu:
policy registered -> risk asks -> triage dispatches to a `risk_assessment` vendor -> the vendor
accepts on triage and submits on risk -> risk.assessed -> triage completes the job; and an
assessment job not accepted in 72 h goes to the next vendor."""

from __future__ import annotations

import itertools
import string
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.triage.app import create_app as create_triage
from services.triage.context import TriageContext
from services.triage.settings import TriageSettings
from services.triage.timers import run_timer_pass
from services.triage.views import CONTEXT as TRIAGE_CONTEXT
from shared.clock import ManualClock
from shared.controls import Control
from shared.events import JobDispatched, JobExpired
from shared.settings import PlatformSettings
from shared.topics import RESPONSE
from tests.risk.conftest import HIGH, Desk, eventually
from tests.support.kafka import wait_for_events
from tests.support.service import running


@pytest.fixture(scope="session")
def regions() -> Iterator[str]:
    """Region codes of these tests alone (triage's tests take other first letters), so each
    test has its own vendors."""
    return (f"CN-{a}{b}" for a, b in itertools.product("QXYZ", string.ascii_uppercase))


@pytest.fixture
def region(regions: Iterator[str]) -> str:
    return next(regions)


@pytest.fixture
def triage_db(service_database: Callable[[str], str]) -> str:
    return service_database("triage")


@pytest.fixture
async def triage(triage_db: str, platform: PlatformSettings,
                 clock: ManualClock) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # the timer runs when a test asks (run_timer_pass), at the clock's time
    settings = TriageSettings(database_url=triage_db, timer_poll_seconds=3600)
    app = create_triage(settings, platform, clock)
    async with running(app) as client:
        yield app, client


async def vendor(client: httpx.AsyncClient, desk: Desk, region: str, name: str,
                 rating: float) -> str:
    vendor_id = f"{name}-{uuid.uuid4().hex[:6]}"
    response = await client.post("/v1/vendors", headers=desk.tokens.operator(), json={
        "vendor_id": vendor_id, "name": name, "capabilities": ["risk_assessment"],
        "regions": [region], "capacity": 2, "rating": rating, "active": True})
    assert response.status_code == 201, response.text
    return vendor_id


async def dispatched(desk: Desk, assessment_id: uuid.UUID, vendor_id: str) -> dict[str, Any]:
    [event] = await wait_for_events(
        desk.broker, RESPONSE.name,
        lambda e: e.type == JobDispatched.event_type
        and e.data.get("assessment_id") == str(assessment_id) and e.data["vendor_id"] == vendor_id)
    return event.data


async def triage_job(jobs: httpx.AsyncClient, desk: Desk, job_id: str) -> dict[str, Any]:
    """The job as triage holds it, read by an operator."""
    job: dict[str, Any] = (await jobs.get(f"/v1/jobs/{job_id}",
                                          headers=desk.tokens.operator())).json()
    return job


async def test_policy_to_assessed_through_triage(
        desk: Desk, triage: tuple[FastAPI, httpx.AsyncClient], region: str) -> None:
    _, jobs = triage
    best = await vendor(jobs, desk, region, "assessor", 4.9)
    await vendor(jobs, desk, region, "second", 3.0)
    terms, assessment_id = await desk.policy(region=region)
    job = await dispatched(desk, assessment_id, best)
    assert job["job_type"] == "risk_assessment"
    assert job["policy_number"] == terms.policy_number
    assert job["priority"] == "P4"
    accepted = await jobs.post(f"/v1/jobs/{job['job_id']}/accept",
                               headers=desk.tokens.vendor(best))
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["kind"], accepted.json()["assessment_id"]) == (
        "assessment", str(assessment_id))
    await eventually(lambda: desk._is(assessment_id, "accepted"), what="risk sees the vendor")
    refused = await jobs.post(f"/v1/jobs/{job['job_id']}/complete",
                              headers=desk.tokens.vendor(best), json={
                                  "root_cause": "n/a", "attack_vector": "other",
                                  "attribution": "unknown",
                                  "contained_at": desk.clock.now().isoformat()})
    assert refused.status_code == 409
    response = await desk.submit(assessment_id, best, in_place=list(Control), findings=[
        {"title": "VPN appliance unpatched", "control": "critical_patches_within_14_days",
         "cvss_vector": HIGH}])
    assert response.status_code == 200, response.text
    assert (response.json()["score"], response.json()["tier"]) == (95, "A")

    async def completed() -> bool:
        return (await triage_job(jobs, desk, job["job_id"]))["status"] == "completed"

    await eventually(completed, what="triage completes the assessment job")
    vendors = (await jobs.get("/v1/vendors", headers=desk.tokens.operator())).json()
    assert next(v for v in vendors if v["vendor_id"] == best)["open_jobs"] == 0


async def test_an_assessment_job_expires_after_72_hours_and_goes_to_the_next_vendor(
        desk: Desk, triage: tuple[FastAPI, httpx.AsyncClient], region: str) -> None:
    app, jobs = triage
    first = await vendor(jobs, desk, region, "first", 4.9)
    second = await vendor(jobs, desk, region, "second", 3.0)
    _, assessment_id = await desk.policy(region=region)
    job = await dispatched(desk, assessment_id, first)
    context: TriageContext = app.state.runtime.resources[TRIAGE_CONTEXT]

    desk.clock.advance(timedelta(hours=72))
    # a pass expires every test's jobs due by the clock: this one is judged by its own state
    await run_timer_pass(app.state.runtime.uow, context)
    held = await triage_job(jobs, desk, job["job_id"])
    assert (held["status"], held["vendor_id"], held["attempt"]) == ("dispatched", first, 1)
    desk.clock.advance(timedelta(seconds=1))
    assert (await run_timer_pass(app.state.runtime.uow, context)).expired >= 1
    await wait_for_events(desk.broker, RESPONSE.name,
                          lambda e: e.type == JobExpired.event_type
                          and e.data["job_id"] == job["job_id"])
    again = await dispatched(desk, assessment_id, second)
    assert again["attempt"] == 2

    async def offered_to_second() -> bool:
        found = await desk.assessment_of_id(assessment_id)
        return found is not None and (found.status, found.vendor_id) == ("dispatched", second)

    await eventually(offered_to_second, what="risk follows the re-dispatch")
    late = await jobs.post(f"/v1/jobs/{job['job_id']}/accept", headers=desk.tokens.vendor(first))
    assert late.status_code == 409
    early = await desk.submit(assessment_id, second, in_place=list(Control))
    assert early.status_code == 404  # offered, not yet accepted

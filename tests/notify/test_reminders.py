"""Regulatory deadline reminders: once, one hour before the deadline (a manual clock), and never
after the policyholder confirmed its report to the regulator (intake's endpoint)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from services.intake.app import create_app as create_intake
from services.intake.settings import IntakeSettings
from services.notify.models import Reminder
from services.notify.reminders import fire_due_reminders
from shared.clock import ManualClock
from shared.events import (
    IncidentTriaged,
    JobType,
    OpenedJob,
    Priority,
    RegulatorReportFiled,
    RegulatoryGrade,
)
from shared.settings import PlatformSettings
from shared.topics import INCIDENTS
from tests.intake.conftest import policy_body, report_body
from tests.notify.conftest import Mailbox, emit, unique, wait_until
from tests.support.kafka import wait_for_events
from tests.support.service import Tokens, running

REMINDER = "regulatory_reminder"


@pytest.fixture
def intake_db(service_database: Callable[[str], str]) -> str:
    return service_database("intake")


def triaged(incident_id: str, org_id: str, deadline: datetime) -> IncidentTriaged:
    return IncidentTriaged(
        incident_id=uuid.UUID(incident_id), org_id=org_id, policy_number="POL-x",
        priority=Priority.P1, regulatory_grade=RegulatoryGrade.relatively_serious,
        regulatory_deadline=deadline,
        jobs=[OpenedJob(job_id=uuid.uuid4(), job_type=JobType.forensics)],
        triaged_at=datetime.now(UTC),
    )


async def report(intake: httpx.AsyncClient, tokens: Tokens, org: str, email: str) -> str:
    body = policy_body(org, critical_infrastructure=True)
    assert (await intake.post("/v1/policies", json=body,
                              headers=tokens.operator())).status_code == 201
    contact = {"name": "Li Wei", "email": email, "phone": "+86 755 1234 5678"}
    response = await intake.post(
        "/v1/incidents", json=report_body(body["policy_number"], contact=contact),
        headers={**tokens.policyholder(org), "Idempotency-Key": unique("key")})
    assert response.status_code == 201, response.text
    incident_id: str = response.json()["id"]
    return incident_id


async def kinds(notify: httpx.AsyncClient, tokens: Tokens, org: str) -> list[str]:
    response = await notify.get("/v1/notifications", params={"limit": 100},
                                headers=tokens.policyholder(org))
    return [item["kind"] for item in response.json()["items"]]


async def reminder_state(app: FastAPI, incident_id: str) -> str | None:
    async with app.state.runtime.uow() as uow:
        reminder = await uow.session.get(Reminder, uuid.UUID(incident_id))
        return reminder.state if reminder else None


async def test_the_reminder_fires_once_an_hour_before_the_deadline_unless_confirmed(
    make_notify: Callable[..., FastAPI], intake_db: str, platform: PlatformSettings,
    mailbox: Mailbox, broker: str, tokens: Tokens,
) -> None:
    clock = ManualClock(datetime.now(UTC))
    app = make_notify(clock)
    intake_app = create_intake(IntakeSettings(database_url=intake_db), platform)
    reminded, confirmed = unique("org"), unique("org")
    mail = f"{reminded}@example.com"
    async with running(intake_app) as intake, running(app) as notify:
        first = await report(intake, tokens, reminded, mail)
        second = await report(intake, tokens, confirmed, f"{confirmed}@example.com")
        deadline = clock.now() + timedelta(hours=3)
        await emit(broker, triaged(first, reminded, deadline))
        await emit(broker, triaged(second, confirmed, deadline + timedelta(minutes=30)))
        await wait_until(lambda: _is(app, first, "pending"))
        await wait_until(lambda: _is(app, second, "pending"))

        # the policyholder of the second incident confirms its report, through intake
        confirmation = await intake.post(
            f"/v1/incidents/{second}/regulator-report",
            json={"reported_at": datetime.now(UTC).isoformat(), "reference": "CAC-2025-0042"},
            headers=tokens.policyholder(confirmed))
        assert confirmation.status_code == 200, confirmation.text
        filed = await wait_for_events(broker, INCIDENTS.name, lambda e: e.subject == second
                                      and e.type == RegulatorReportFiled.event_type)
        assert filed[0].data["reference"] == "CAC-2025-0042"
        await wait_until(lambda: _is(app, second, "cancelled"))

        notifier = app.state.runtime.resources["notifier"]
        uows = app.state.runtime.uow
        due = deadline - timedelta(hours=1)
        clock.set(due - timedelta(seconds=1))
        # (a pass fires every due reminder in the database, other tests' too: look at ours)
        await fire_due_reminders(uows, notifier, due - timedelta(seconds=1))
        assert await reminder_state(app, first) == "pending"
        assert REMINDER not in await kinds(notify, tokens, reminded)

        clock.set(due)  # the worker fires it
        await wait_until(lambda: _has(notify, tokens, reminded, REMINDER))
        reminder_mail = await wait_until(
            lambda: [m for m in mailbox.to(mail) if "regulator" in str(m["Subject"])])
        clock.set(deadline + timedelta(minutes=45))  # past the second incident's due time too
        await fire_due_reminders(uows, notifier)
        assert await reminder_state(app, first) == "sent"
        assert await reminder_state(app, second) == "cancelled"
        first_kinds = await kinds(notify, tokens, reminded)
        second_kinds = await kinds(notify, tokens, confirmed)

    assert first_kinds.count(REMINDER) == 1
    assert len(reminder_mail) == 1 and "in 60 minute(s)" in reminder_mail[0].get_body(
        ("plain",)).get_content()
    assert REMINDER not in second_kinds and "incident_triaged" in second_kinds


async def test_a_confirmation_that_arrives_before_the_triage_prevents_the_reminder(
    make_notify: Callable[..., FastAPI], broker: str, tokens: Tokens,
) -> None:
    clock = ManualClock(datetime.now(UTC))
    app = make_notify(clock)
    org, incident_id = unique("org"), str(uuid.uuid4())
    deadline = clock.now() + timedelta(hours=2)
    async with running(app) as notify:
        await emit(broker, RegulatorReportFiled(
            incident_id=uuid.UUID(incident_id), org_id=org, reported_at=clock.now(),
            reference="CAC-1"), source="/cyberclaims/intake")
        await emit(broker, triaged(incident_id, org, deadline))
        await wait_until(lambda: _is(app, incident_id, "cancelled"))
        uows, notifier = app.state.runtime.uow, app.state.runtime.resources["notifier"]
        clock.set(deadline - timedelta(minutes=30))
        await fire_due_reminders(uows, notifier)
        assert await reminder_state(app, incident_id) == "cancelled"
        assert REMINDER not in await kinds(notify, tokens, org)

        # an unconfirmed one, fired by two racing passes (the clock stays before it is due, so
        # the service's own worker leaves it to them): exactly one fires it
        other, other_id = unique("org"), str(uuid.uuid4())
        other_deadline = deadline + timedelta(hours=2)
        await emit(broker, triaged(other_id, other, other_deadline))
        await wait_until(lambda: _is(app, other_id, "pending"))
        due = other_deadline - timedelta(hours=1)
        await asyncio.gather(fire_due_reminders(uows, notifier, due),
                             fire_due_reminders(uows, notifier, due))
        assert await reminder_state(app, other_id) == "sent"
        assert (await kinds(notify, tokens, other)).count(REMINDER) == 1


async def _is(app: FastAPI, incident_id: str, state: str) -> bool:
    return await reminder_state(app, incident_id) == state


async def _has(notify: httpx.AsyncClient, tokens: Tokens, org: str, kind: str) -> bool:
    return kind in await kinds(notify, tokens, org)



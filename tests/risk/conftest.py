from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from services.risk.app import create_app
from services.risk.context import RiskContext
from services.risk.models import Assessment, Inbox, RemediationItemRow
from services.risk.settings import RiskSettings
from services.risk.timers import run_reminder_pass
from services.risk.views import CONTEXT
from shared.clock import ManualClock
from shared.controls import Control
from shared.events import (
    Envelope,
    Event,
    Industry,
    JobAccepted,
    JobCancelled,
    JobDispatched,
    JobType,
    PolicyRegistered,
    PolicyTerms,
    Priority,
    Section,
    SectionTerms,
)
from shared.service import Runtime
from shared.settings import PlatformSettings
from shared.topics import POLICIES, RESPONSE
from tests.support.kafka import publish
from tests.support.service import Tokens, running

T = TypeVar("T")

CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:H/A:H"  # 9.0
HIGH = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:L/A:L"  # 7.0


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0,
                     what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.05)


def policy_terms(now: datetime, **overrides: Any) -> PolicyTerms:
    start = now - timedelta(days=30)
    values: dict[str, Any] = {
        "policy_number": f"POL-{uuid.uuid4().hex[:10]}", "org_id": f"org-{uuid.uuid4().hex[:8]}",
        "holder_name": "Shenzhen Widget Co.", "industry": Industry.manufacturing,
        "region": "CN-GD", "critical_infrastructure": False, "currency": "CNY",
        "period_start": start, "period_end": start + timedelta(days=365),
        "retroactive_date": None, "aggregate_limit": Decimal("5000000"),
        "retention": Decimal("50000"), "bi_waiting_period_hours": 8, "notice_period_hours": 72,
        "war_exclusion": True,
        "sections": {Section.incident_response: SectionTerms(sublimit=Decimal("200000"))},
    }
    values.update(overrides)
    return PolicyTerms(**values)


@pytest.fixture
def risk_db(service_database: Callable[[str], str]) -> str:
    return service_database("risk")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_risk(risk_db: str, platform: PlatformSettings) -> Callable[..., FastAPI]:
    def make(clock: ManualClock, **options: bool) -> FastAPI:
        # the timer runs only when a test asks (run_reminder_pass), at the clock's time
        settings = RiskSettings(database_url=risk_db, timer_poll_seconds=3600)
        return create_app(settings, platform, clock, **options)

    return make


@dataclass
class Desk:
    """Drives one running risk app as intake, triage, vendors and operators would."""

    app: FastAPI
    client: httpx.AsyncClient
    tokens: Tokens
    broker: str
    clock: ManualClock

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def context(self) -> RiskContext:
        context: RiskContext = self.runtime.resources[CONTEXT]
        return context

    async def publish(self, event: Event, topic: str, key: str) -> Envelope:
        envelope = Envelope.wrap(event, source="/cyberclaims/test", time=self.clock.now())
        await publish(self.broker, topic, envelope, key=key.encode())
        return envelope

    async def applied(self, envelope: Envelope) -> bool:
        """Whether risk's consumer has taken the event (its inbox holds it), changes or not."""
        async with self.runtime.uow() as uow:
            return await uow.session.scalar(
                select(Inbox.event_id).where(Inbox.event_id == envelope.id)) is not None

    async def policy(self, **overrides: Any) -> tuple[PolicyTerms, uuid.UUID]:
        """A registered policy and the assessment its registration asked for."""
        terms = policy_terms(self.clock.now(), **overrides)
        await self.publish(PolicyRegistered(policy=terms), POLICIES.name, terms.policy_number)
        assessment = await eventually(lambda: self.assessment_of(terms.policy_number),
                                      what="assessment requested")
        return terms, assessment.id

    async def assessment_of(self, policy_number: str) -> Assessment | None:
        async with self.runtime.uow() as uow:
            found: Assessment | None = await uow.session.scalar(
                select(Assessment).where(Assessment.policy_number == policy_number)
                .order_by(Assessment.requested_at.desc()).limit(1))
            return found

    async def assessment_of_id(self, assessment_id: uuid.UUID) -> Assessment | None:
        async with self.runtime.uow() as uow:
            return await uow.session.get(Assessment, assessment_id)

    async def status(self, assessment_id: uuid.UUID) -> str | None:
        async with self.runtime.uow() as uow:
            assessment = await uow.session.get(Assessment, assessment_id)
            return assessment.status if assessment else None

    def job_fields(self, terms: PolicyTerms, assessment_id: uuid.UUID, job_id: uuid.UUID,
                   vendor_id: str) -> dict[str, Any]:
        """What every triage event of the assessment's job carries."""
        return {"incident_id": assessment_id, "org_id": terms.org_id, "job_id": job_id,
                "job_type": JobType.risk_assessment, "at": self.clock.now(),
                "assessment_id": assessment_id, "policy_number": terms.policy_number,
                "vendor_id": vendor_id}

    async def assign(self, terms: PolicyTerms, assessment_id: uuid.UUID,
                     vendor_id: str) -> uuid.UUID:
        """What triage publishes when a vendor takes the assessment job: its job id."""
        job_id = uuid.uuid4()
        common = self.job_fields(terms, assessment_id, job_id, vendor_id)
        await self.publish(JobDispatched(**common, priority=Priority.P4,
                                         accept_by=self.clock.now() + timedelta(hours=72),
                                         attempt=1),
                           RESPONSE.name, str(assessment_id))
        await self.publish(JobAccepted(**common), RESPONSE.name, str(assessment_id))
        await eventually(lambda: self._is(assessment_id, "accepted"), what="accepted")
        return job_id

    async def cancel(self, terms: PolicyTerms, assessment_id: uuid.UUID, job_id: uuid.UUID,
                     vendor_id: str) -> None:
        """What triage publishes when an operator cancels the accepted assessment job."""
        await self.publish(JobCancelled(**self.job_fields(terms, assessment_id, job_id,
                                                          vendor_id),
                                        cancelled_by="operator-1"),
                           RESPONSE.name, str(assessment_id))
        await eventually(lambda: self._is(assessment_id, "cancelled"), what="cancelled")

    async def _is(self, assessment_id: uuid.UUID, status: str) -> bool:
        return await self.status(assessment_id) == status

    async def submit(self, assessment_id: uuid.UUID, vendor_id: str, *,
                     in_place: Sequence[Control], findings: list[dict[str, Any]] | None = None
                     ) -> httpx.Response:
        return await self.client.post(
            f"/v1/assessments/{assessment_id}/report", headers=self.tokens.vendor(vendor_id),
            json={"controls_in_place": [c.value for c in in_place],
                  "findings": findings or []})

    async def assessed(self, *, in_place: Sequence[Control], findings: list[dict[str, Any]] | None
                       = None, **policy: Any) -> tuple[PolicyTerms, str]:
        """A policy assessed by a fresh vendor: (terms, vendor id)."""
        terms, assessment_id = await self.policy(**policy)
        vendor_id = f"vendor-{uuid.uuid4().hex[:6]}"
        await self.assign(terms, assessment_id, vendor_id)
        response = await self.submit(assessment_id, vendor_id, in_place=in_place,
                                     findings=findings)
        assert response.status_code == 200, response.text
        return terms, vendor_id

    async def risk(self, policy_number: str, headers: dict[str, str] | None = None
                   ) -> httpx.Response:
        return await self.client.get(f"/v1/risk/{policy_number}",
                                     headers=headers or self.tokens.operator())

    async def remind(self) -> int:
        """A timer pass at the clock's time (over every test's items: count only your own)."""
        return await run_reminder_pass(self.runtime.uow, self.context)

    async def reminded(self, item_id: str) -> tuple[datetime | None, datetime | None]:
        """When the item's 'due soon' and 'overdue' reminders were staged."""
        async with self.runtime.uow() as uow:
            item = await uow.session.get(RemediationItemRow, uuid.UUID(item_id))
            assert item is not None
            return item.due_soon_sent_at, item.overdue_sent_at


@pytest.fixture
async def desk(make_risk: Callable[..., FastAPI], clock: ManualClock, tokens: Tokens,
               broker: str) -> AsyncIterator[Desk]:
    app = make_risk(clock)
    async with running(app) as client:
        yield Desk(app, client, tokens, broker, clock)

from __future__ import annotations

import asyncio
import itertools
import string
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from services.triage.app import create_app
from services.triage.context import TriageContext
from services.triage.models import Policy
from services.triage.settings import TriageSettings
from services.triage.views import CONTEXT
from shared.clock import Clock, ManualClock
from shared.events import (
    Category,
    Contact,
    Envelope,
    Event,
    IncidentReported,
    Industry,
    PolicyRegistered,
    PolicyTerms,
    Section,
    SectionTerms,
)
from shared.service import Runtime
from shared.settings import PlatformSettings
from shared.topics import INCIDENTS, POLICIES
from tests.support.kafka import publish
from tests.support.service import Tokens, running

T = TypeVar("T")
ALL_JOB_TYPES = ["forensics", "ransomware_negotiation", "data_recovery", "legal_counsel",
                 "notification_services", "funds_recovery", "ddos_mitigation",
                 "crisis_communications"]


@pytest.fixture(scope="session")
def regions() -> Iterator[str]:
    """Region codes no other test of the session uses, so each test has its own vendors (and
    none is a real ISO 3166-2:CN code, which the tests through intake use)."""
    return (f"CN-{a}{b}" for a, b in itertools.product("DEIKOPRUVW", string.ascii_uppercase))


@pytest.fixture
def region(regions: Iterator[str]) -> str:
    return next(regions)


@pytest.fixture
def triage_db(service_database: Callable[[str], str]) -> str:
    return service_database("triage")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_triage(triage_db: str, platform: PlatformSettings) -> Callable[..., FastAPI]:
    def make(clock: Clock | None = None, *, timer_poll_seconds: float = 0.1,
             **options: bool) -> FastAPI:
        settings = TriageSettings(database_url=triage_db, timer_poll_seconds=timer_poll_seconds)
        return create_app(settings, platform, clock, **options)

    return make


@pytest.fixture
async def triage_app(make_triage: Callable[..., FastAPI], clock: ManualClock
                     ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = make_triage(clock)
    async with running(app) as client:
        yield app, client


@pytest.fixture
def desk(triage_app: tuple[FastAPI, httpx.AsyncClient], tokens: Tokens, broker: str,
         clock: ManualClock, region: str) -> Desk:
    app, client = triage_app
    return Desk(app, client, tokens, broker, clock, region)


async def eventually(check: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0,
                     what: str = "condition") -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        await asyncio.sleep(0.05)


def policy_terms(region: str, *, critical_infrastructure: bool = False,
                 now: datetime | None = None, **overrides: Any) -> PolicyTerms:
    start = (now or datetime.now(UTC)) - timedelta(days=200)
    values: dict[str, Any] = {
        "policy_number": f"POL-{uuid.uuid4().hex[:10]}", "org_id": f"org-{uuid.uuid4().hex[:8]}",
        "holder_name": "Shenzhen Widget Co.", "industry": Industry.manufacturing, "region": region,
        "critical_infrastructure": critical_infrastructure, "currency": "CNY",
        "period_start": start, "period_end": start + timedelta(days=365),
        "retroactive_date": None, "aggregate_limit": Decimal("5000000"),
        "retention": Decimal("50000"), "bi_waiting_period_hours": 8, "notice_period_hours": 72,
        "war_exclusion": True,
        "sections": {Section.incident_response: SectionTerms(sublimit=Decimal("200000"))},
    }
    values.update(overrides)
    return PolicyTerms(**values)


def incident_report(policy: PolicyTerms, now: datetime, **overrides: Any) -> IncidentReported:
    values: dict[str, Any] = {
        "incident_id": uuid.uuid4(), "org_id": policy.org_id,
        "policy_number": policy.policy_number, "category": Category.malware,
        "title": "Malware on a workstation", "description": "EDR alert.",
        "occurred_at": now - timedelta(hours=3), "discovered_at": now - timedelta(hours=2),
        "reported_at": now,
        "contact": Contact(name="Li Wei", email="li.wei@example.com", phone="+86 755 1234"),
        "systems_down": False, "outage_started_at": None, "affected_hosts": None,
        "records_exposed": None, "data_types": [], "ransom_demanded": None,
        "funds_transferred": None,
    }
    values.update(overrides)
    return IncidentReported(**values)


def envelope(event: Event, now: datetime) -> Envelope:
    return Envelope.wrap(event, source="/cyberclaims/intake", time=now)


@dataclass
class Desk:
    """Drives one running triage app the way intake, operators and vendors would."""

    app: FastAPI
    client: httpx.AsyncClient
    tokens: Tokens
    broker: str
    clock: ManualClock
    region: str

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    @property
    def context(self) -> TriageContext:
        context: TriageContext = self.runtime.resources[CONTEXT]
        return context

    async def vendor(self, name: str, *, capabilities: list[str] | None = None,
                     capacity: int = 5, rating: float = 4.0, regions: list[str] | None = None,
                     active: bool = True) -> str:
        vendor_id = f"{name}-{uuid.uuid4().hex[:6]}"
        response = await self.client.post("/v1/vendors", headers=self.tokens.operator(), json={
            "vendor_id": vendor_id, "name": f"Vendor {name}",
            "capabilities": capabilities or ALL_JOB_TYPES, "regions": regions or [self.region],
            "capacity": capacity, "rating": rating, "active": active,
        })
        assert response.status_code == 201, response.text
        return vendor_id

    async def policy(self, **overrides: Any) -> PolicyTerms:
        """A new policy in this test's region, once triage has its copy."""
        terms = policy_terms(self.region, now=self.clock.now(), **overrides)
        await self.publish_policy(terms)
        await eventually(lambda: self.policy_version(terms.policy_number), what="policy copy")
        return terms

    async def policy_version(self, policy_number: str) -> int | None:
        async with self.runtime.uow() as uow:
            policy = await uow.session.get(Policy, policy_number)
            return policy.version if policy else None

    async def publish_policy(self, terms: PolicyTerms, event: Event | None = None) -> None:
        event = event or PolicyRegistered(policy=terms)
        await publish(self.broker, POLICIES.name, envelope(event, self.clock.now()),
                      key=terms.policy_number.encode())

    async def report(self, policy: PolicyTerms, **overrides: Any) -> uuid.UUID:
        event = incident_report(policy, self.clock.now(), **overrides)
        await publish(self.broker, INCIDENTS.name, envelope(event, self.clock.now()),
                      key=str(event.incident_id).encode())
        return event.incident_id

    async def triage_of(self, incident_id: uuid.UUID) -> dict[str, Any] | None:
        response = await self.client.get(f"/v1/incidents/{incident_id}/triage",
                                         headers=self.tokens.operator())
        return response.json() if response.status_code == 200 else None

    async def triaged(self, incident_id: uuid.UUID) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            found = await self.triage_of(incident_id)
            return found if found and found["status"] != "awaiting_policy" else None

        return await eventually(check, what=f"triage of {incident_id}")

    async def job(self, job_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.client.get(f"/v1/jobs/{job_id}",
                                         headers=headers or self.tokens.operator())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def job_when(self, job_id: str, check: Callable[[dict[str, Any]], bool],
                       what: str = "job state") -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            job = await self.job(job_id)
            return job if check(job) else None

        return await eventually(probe, what=what)

    async def act(self, job_id: str, action: str, vendor_id: str,
                  body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(f"/v1/jobs/{job_id}/{action}", json=body,
                                      headers=self.tokens.vendor(vendor_id))

    async def accept(self, job_id: str, vendor_id: str) -> dict[str, Any]:
        response = await self.act(job_id, "accept", vendor_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def complete(self, job_id: str, vendor_id: str, **report: Any) -> dict[str, Any]:
        response = await self.act(job_id, "complete", vendor_id, completion_report(
            self.clock.now(), **report))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


def completion_report(now: datetime, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "root_cause": "Unpatched VPN appliance", "attack_vector": "vulnerability_exploit",
        "attribution": "criminal", "contained_at": (now - timedelta(hours=1)).isoformat(),
        "records_confirmed": 0, "verified_losses": [],
    }
    body.update(overrides)
    return body

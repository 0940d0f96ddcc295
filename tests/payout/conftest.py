from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest
import uvicorn
from aiokafka.structs import RecordMetadata
from fastapi import FastAPI

from cyberclaims.sandbox.payments import create_app as create_sandbox
from services.payout.app import create_app
from services.payout.handlers import handlers as payout_handlers
from services.payout.settings import PayoutSettings
from shared.events import (
    Attribution,
    Category,
    Contact,
    Envelope,
    Event,
    IncidentReported,
    IncidentResponseCompleted,
    LossSubmitted,
    PolicyRegistered,
    PolicyTerms,
    Section,
    SectionTerms,
    VendorVerifiedLoss,
    VerifiedOutage,
)
from shared.service import Runtime
from shared.settings import PlatformSettings
from shared.topics import INCIDENTS, POLICIES, RESPONSE
from tests.support.infra import free_port
from tests.support.kafka import publish


@asynccontextmanager
async def serving(app: FastAPI, *, lifespan: Literal["auto", "on", "off"] = "off"
                  ) -> AsyncIterator[str]:
    """Serve `app` over real HTTP on a free port in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan=lifespan,
                                           log_level="warning", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Sandbox:
    url: str
    client: httpx.AsyncClient

    async def fault(self, mode: str, count: int = 1, delay_seconds: float | None = None) -> None:
        body: dict[str, Any] = {"mode": mode, "count": count}
        if delay_seconds is not None:
            body["delay_seconds"] = delay_seconds
        response = await self.client.post("/control/faults", json=body)
        assert response.status_code == 202, response.text

    async def payments(self, reference: str | None = None) -> list[dict[str, Any]]:
        items = (await self.client.get("/v1/payments")).json()["items"]
        return [p for p in items if reference is None or p["reference"] == reference]

    async def requests(self, reference: str | None = None) -> list[dict[str, Any]]:
        items = (await self.client.get("/control/requests")).json()["items"]
        return [r for r in items if reference is None or r["reference"] == reference]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with serving(create_sandbox()) as url, httpx.AsyncClient(base_url=url) as client:
        yield Sandbox(url, client)


@pytest.fixture
def payout_db(service_database: Callable[[str], str]) -> str:
    return service_database("payout")


VENDOR_LIMIT = Decimal("100000000")
"""Most tests drive claims with vendor-verified items; the default limit has its own test."""


@pytest.fixture
def quiet_payout(payout_db: str, platform: PlatformSettings, sandbox: Sandbox) -> FastAPI:
    """Payout serving its API with no worker and no consumer: a test applies events itself
    (`apply`) and runs the workers' passes when it wants them."""
    return create_app(PayoutSettings(database_url=payout_db, payment_provider_url=sandbox.url,
                                     vendor_verification_limit=VENDOR_LIMIT),
                      platform, run_workers=False)


async def apply(app: FastAPI, event: Event) -> None:
    """Apply one event with payout's own handler in a transaction of its own, as its consumer
    does (the inbox aside)."""
    runtime: Runtime = app.state.runtime
    handler = payout_handlers(runtime.resources["context"])[type(event)]
    async with runtime.uow() as uow:
        await handler(uow, event, wrap(event, "/cyberclaims/test"))
        await uow.commit()


async def reported_incident(app: FastAPI, category: Category = Category.ransomware,
                            **policy: Any) -> Incident:
    """A policy (`policy_terms(**policy)`) and an incident reported on it, applied to `app`."""
    terms = policy_terms(**policy)
    await apply(app, PolicyRegistered(policy=terms))
    incident = Incident("unused", terms, category=category)
    await apply(app, incident.reported())
    return incident


@pytest.fixture
def make_payout(payout_db: str, platform: PlatformSettings, sandbox: Sandbox) -> Callable[..., FastAPI]:
    def make(**overrides: Any) -> FastAPI:
        settings: dict[str, Any] = {
            "database_url": payout_db, "payment_provider_url": sandbox.url,
            "payment_timeout_seconds": 1.0, "payment_lease_seconds": 2.0,
            "payment_retry_base_seconds": 0.05, "payment_poll_seconds": 0.1,
            "vendor_verification_limit": VENDOR_LIMIT,
        }
        settings.update(overrides)
        return create_app(PayoutSettings(**settings), platform)

    return make


# --- driving payout with events, as intake and triage would -----------------------------------


def now() -> datetime:
    return datetime.now(UTC)


def policy_terms(**overrides: Any) -> PolicyTerms:
    terms: dict[str, Any] = {
        "policy_number": f"POL-{uuid.uuid4().hex[:10]}", "org_id": f"org-{uuid.uuid4().hex[:8]}",
        "holder_name": "Shenzhen Widget Co.", "industry": "manufacturing", "region": "CN-GD",
        "critical_infrastructure": False, "currency": "CNY",
        "period_start": now() - timedelta(days=200), "period_end": now() + timedelta(days=165),
        "retroactive_date": None, "aggregate_limit": Decimal("5000000"),
        "retention": Decimal("50000"), "bi_waiting_period_hours": 8, "notice_period_hours": 72,
        "war_exclusion": True,
        "sections": {Section.incident_response: SectionTerms(sublimit=Decimal("200000")),
                     Section.business_interruption: SectionTerms(sublimit=Decimal("300000"))},
    }
    terms.update(overrides)
    return PolicyTerms(**terms)


def wrap(event: Event, source: str) -> Envelope:
    return Envelope.wrap(event, source=source, time=now())


@dataclass
class Incident:
    """One incident on one policy, published step by step."""

    broker: str
    policy: PolicyTerms
    incident_id: uuid.UUID = field(default_factory=uuid.uuid4)
    category: Category = Category.ransomware
    occurred_at: datetime = field(default_factory=lambda: now() - timedelta(hours=3))
    envelopes: dict[str, Envelope] = field(default_factory=dict)

    def reported(self, *, discovered_after: timedelta = timedelta(hours=1),
                 reported_after: timedelta = timedelta(hours=2)) -> IncidentReported:
        return IncidentReported(
            incident_id=self.incident_id, org_id=self.policy.org_id,
            policy_number=self.policy.policy_number, category=self.category,
            title="Files encrypted", description="Ransom note on 12 hosts.",
            occurred_at=self.occurred_at, discovered_at=self.occurred_at + discovered_after,
            reported_at=self.occurred_at + reported_after,
            contact=Contact(name="Li Wei", email="li.wei@example.com", phone="+86 755 1234"),
            systems_down=True, outage_started_at=None, affected_hosts=12, records_exposed=None,
            data_types=[], ransom_demanded=None, funds_transferred=None,
        )

    def completed(self, losses: dict[Section, str], *,
                  attribution: Attribution = Attribution.criminal,
                  outage: tuple[datetime, datetime] | None = None) -> IncidentResponseCompleted:
        job_id = uuid.uuid4()
        return IncidentResponseCompleted(
            incident_id=self.incident_id, org_id=self.policy.org_id,
            policy_number=self.policy.policy_number, completed_at=now(), findings=[],
            attribution=attribution,
            verified_outage=VerifiedOutage(started_at=outage[0], ended_at=outage[1]) if outage else None,
            verified_losses=[VendorVerifiedLoss(section=section, amount=Decimal(amount),
                                                description=f"{section.value} invoice",
                                                vendor_id="vendor-a", job_id=job_id)
                             for section, amount in losses.items()],
        )

    def submitted(self, section: Section, *, amount: str | None = None,
                  hourly_loss: str | None = None) -> LossSubmitted:
        """A policyholder's loss item on this incident."""
        return LossSubmitted(
            incident_id=self.incident_id, org_id=self.policy.org_id, loss_id=uuid.uuid4(),
            policy_number=self.policy.policy_number, section=section,
            amount=Decimal(amount) if amount is not None else None,
            hourly_loss=Decimal(hourly_loss) if hourly_loss is not None else None,
            description="claimed by the policyholder", submitted_at=now(),
        )

    async def report(self, *, discovered_after: timedelta = timedelta(hours=1),
                     reported_after: timedelta = timedelta(hours=2)) -> Envelope:
        envelope = wrap(self.reported(discovered_after=discovered_after,
                                      reported_after=reported_after), "/cyberclaims/intake")
        self.envelopes["reported"] = envelope
        await self.send(INCIDENTS.name, envelope)
        return envelope

    async def complete(self, losses: dict[Section, str], *,
                       attribution: Attribution = Attribution.criminal,
                       outage: tuple[datetime, datetime] | None = None) -> Envelope:
        envelope = wrap(self.completed(losses, attribution=attribution, outage=outage),
                        "/cyberclaims/triage")
        self.envelopes["completed"] = envelope
        await self.send(RESPONSE.name, envelope)
        return envelope

    async def send(self, topic: str, envelope: Envelope) -> RecordMetadata:
        return await publish(self.broker, topic, envelope, key=str(self.incident_id).encode())


async def register(broker: str, **overrides: Any) -> PolicyTerms:
    terms = policy_terms(**overrides)
    await publish(broker, POLICIES.name, wrap(PolicyRegistered(policy=terms), "/cyberclaims/intake"),
                  key=terms.policy_number.encode())
    return terms


async def eventually(probe: Callable[[], Awaitable[Any]], *, timeout: float = 20.0) -> Any:
    """Poll `probe` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached after {timeout}s")
        await asyncio.sleep(0.1)


async def claim_when(client: httpx.AsyncClient, headers: dict[str, str], incident_id: uuid.UUID,
                     status: str | tuple[str, ...], *, timeout: float = 20.0) -> dict[str, Any]:
    wanted = (status,) if isinstance(status, str) else status

    async def probe() -> dict[str, Any] | None:
        response = await client.get(f"/v1/incidents/{incident_id}/claim", headers=headers)
        if response.status_code == 200 and response.json()["status"] in wanted:
            return dict(response.json())
        return None

    result: dict[str, Any] = await eventually(probe, timeout=timeout)
    return result


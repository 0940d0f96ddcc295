"""Insights under test: a broker and a database of its own per test (the statistics are
compared with an independent computation over every event on the topics, so no other test's
events may be there), and a simulated book published as the producing services would."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from cyberclaims.simulate import Book, SimClaim, SimPolicy
from services.insights.app import create_app
from services.insights.settings import InsightsSettings
from shared.auth import Role
from shared.clock import Clock
from shared.events import (
    Attribution,
    ClaimApproved,
    ClaimAssessed,
    ClaimDenied,
    ClaimOpened,
    Contact,
    Decision,
    Envelope,
    Event,
    Finding,
    IncidentReported,
    IncidentResponseCompleted,
    JobDispatched,
    JobType,
    PaymentSucceeded,
    PolicyRegistered,
    PolicyTerms,
    Priority,
    SectionTerms,
    VerifiedOutage,
)
from shared.migrations import migrate
from shared.settings import PlatformSettings
from tests.support.infra import tansu_broker
from tests.support.service import provider_signer, test_platform

SOURCES = {"cyberclaims.policies": "/cyberclaims/intake", "cyberclaims.incidents": "/cyberclaims/intake",
           "cyberclaims.response": "/cyberclaims/triage", "cyberclaims.claims": "/cyberclaims/payout"}


@dataclass(frozen=True)
class World:
    broker: str
    database_url: str
    platform: PlatformSettings

    def app(self, clock: Clock | None = None, *, run_workers: bool = True,
            **overrides: Any) -> FastAPI:
        settings = InsightsSettings(database_url=self.database_url, **overrides)
        return create_app(settings, self.platform, clock, run_workers=run_workers)

    def bearer(self, role: Role) -> dict[str, str]:
        token = provider_signer().issue(
            role=role, sub=f"{role.value}-1", org_id="org-x" if role is Role.policyholder else None,
            vendor_id="vendor-x" if role is Role.vendor else None)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(scratch_database: Callable[[str], str]) -> Iterator[World]:
    url = scratch_database(f"cyberclaims_test_insights_{os.getpid()}_{uuid.uuid4().hex[:8]}")
    migrate("insights", url)
    with tansu_broker() as bootstrap:
        yield World(bootstrap, url, test_platform(bootstrap))


def policy_event(policy: SimPolicy) -> PolicyRegistered:
    return PolicyRegistered(policy=PolicyTerms(
        policy_number=policy.policy_number, org_id=policy.org_id, holder_name=policy.holder_name,
        industry=policy.industry, region=policy.region,  # type: ignore[arg-type]
        critical_infrastructure=False, currency="CNY", period_start=policy.period_start,
        period_end=policy.period_end, retroactive_date=None,
        aggregate_limit=Decimal(5_000_000), retention=Decimal(0), bi_waiting_period_hours=8,
        notice_period_hours=72, war_exclusion=True,
        sections={claim_section: SectionTerms(sublimit=Decimal(5_000_000))
                  for claim_section in ("incident_response", "cyber_extortion")},  # type: ignore[misc]
        annual_premium=policy.annual_premium, employees=policy.employees,
        annual_revenue=policy.annual_revenue))


def claim_events(claim: SimClaim) -> list[tuple[datetime, Event]]:
    """A claim's life as its services publish it, each event with the time it happens."""
    policy = claim.policy
    incident_id, claim_id, job_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids: dict[str, Any] = {"incident_id": incident_id, "org_id": policy.org_id}
    outage = None
    if claim.outage_hours is not None:
        outage = VerifiedOutage(started_at=claim.occurred_at,
                                ended_at=claim.occurred_at + timedelta(hours=claim.outage_hours))
    events: list[tuple[datetime, Event]] = [
        (claim.reported_at, IncidentReported(
            **ids, policy_number=policy.policy_number, category=claim.category, title="simulated",
            description="simulated incident", occurred_at=claim.occurred_at,
            discovered_at=claim.occurred_at, reported_at=claim.reported_at,
            contact=Contact(name="IT", email="it@example.com", phone="+86 10 0000"),
            systems_down=outage is not None, outage_started_at=None, affected_hosts=None,
            records_exposed=None, data_types=[], ransom_demanded=None, funds_transferred=None)),
        (claim.dispatched_at, JobDispatched(
            **ids, job_id=job_id, job_type=JobType.forensics, at=claim.dispatched_at,
            vendor_id="vendor-sim", priority=Priority.P2,
            accept_by=claim.dispatched_at + timedelta(minutes=30), attempt=1)),
        (claim.contained_at, IncidentResponseCompleted(
            **ids, policy_number=policy.policy_number, completed_at=claim.contained_at,
            findings=[Finding(job_id=job_id, job_type=JobType.forensics, vendor_id="vendor-sim",
                              root_cause="simulated", attack_vector=claim.attack_vector,
                              attribution=Attribution.criminal, contained_at=claim.contained_at,
                              records_confirmed=None)],
            attribution=Attribution.criminal, verified_outage=outage, verified_losses=[])),
        (claim.contained_at, ClaimOpened(**ids, claim_id=claim_id, at=claim.contained_at,
                                         policy_number=policy.policy_number)),
        (claim.assessed_at, ClaimAssessed(
            **ids, claim_id=claim_id, at=claim.assessed_at, assessment_id=uuid.uuid4(),
            payable=claim.payable, sections=[], coverage_questions=[],
            decision=Decision.pending_approval)),
    ]
    decided = claim.assessed_at + timedelta(days=2)
    if claim.denied:
        events.append((decided, ClaimDenied(**ids, claim_id=claim_id, at=decided,
                                            adjuster="adjuster:sim", reason="exclusion")))
    else:
        events.append((decided, ClaimApproved(**ids, claim_id=claim_id, at=decided,
                                              amount=claim.payable, approvers=["adjuster:sim"],
                                              automatic=False, reason=None)))
        events += [(payment.at, PaymentSucceeded(
            **ids, claim_id=claim_id, at=payment.at, payment_id=uuid.uuid4(),
            amount=payment.amount, currency="CNY", provider_reference=f"sim-{uuid.uuid4().hex}"))
            for payment in claim.payments]
    return events


def book_events(book: Book, until: datetime) -> list[Event]:
    """Every event of the book that happened before `until`, in time order."""
    timed: list[tuple[datetime, Event]] = [(policy.period_start - timedelta(days=1),
                                            policy_event(policy)) for policy in book.policies]
    for claim in book.claims:
        timed += claim_events(claim)
    timed.sort(key=lambda pair: pair[0])
    return [event for at, event in timed if at < until]


async def publish_all(bootstrap: str, events: list[Event]) -> list[Envelope]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    envelopes = []
    try:
        for event in events:
            envelope = Envelope.wrap(event, source=SOURCES[event.topic.name],
                                     time=datetime.now().astimezone())
            await producer.send(event.topic.name, envelope.to_kafka_value(),
                                key=event.partition_key().encode(),
                                headers=envelope.to_kafka_headers())
            envelopes.append(envelope)
        await producer.flush()
    finally:
        await producer.stop()
    return envelopes

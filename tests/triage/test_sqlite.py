"""The use cases also run on SQLite (the `make run` default): dispatch, decline, expiry, a
waiting job taken by a new vendor, completion. No broker: the events stay in the outbox."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from services.triage import service
from services.triage.models import Job, Outbox
from services.triage.schemas import CompletionReportIn, VendorIn
from services.triage.service import TriageContext
from services.triage.settings import TriageSettings
from shared.auth import Principal, Role
from shared.clock import ManualClock
from shared.db import UnitOfWorkFactory, create_engine
from shared.events import IncidentResponseCompleted, JobExpired, JobType, JobUnassigned
from shared.migrations import migrate
from shared.outbox import Outbox as OutboxWriter
from tests.triage.conftest import envelope, incident_report, policy_terms


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'triage.db'}"
    migrate("triage", url)
    return url


async def test_the_job_life_cycle_on_sqlite(sqlite_url: str) -> None:
    url = sqlite_url
    engine = create_engine(url)
    uows = UnitOfWorkFactory(engine)
    clock = ManualClock()
    ctx = TriageContext(OutboxWriter(Outbox, source="/cyberclaims/triage", clock=clock), clock,
                        TriageSettings(database_url=url).response_times())
    try:
        for vendor_id, rating in [("first", 5.0), ("second", 4.0)]:
            async with uows() as uow:
                await service.register_vendor(uow, ctx, VendorIn(
                    vendor_id=vendor_id, name=vendor_id, capabilities=[JobType.forensics],
                    regions=["CN-GD"], capacity=1, rating=rating))
        terms = policy_terms("CN-GD", now=clock.now())
        report = incident_report(terms, clock.now())
        async with uows() as uow:
            await service.record_policy(uow.session, ctx, terms, version=1)
            await service.receive_incident(uow.session, ctx, report, envelope(report, clock.now()))
            await uow.commit()
        async with uows() as uow:
            job = await uow.session.scalar(select(Job).where(Job.incident_id == report.incident_id))
        assert job is not None and job.vendor_id == "first"

        first = Principal(role=Role.vendor, sub="staff", vendor_id="first")
        second = Principal(role=Role.vendor, sub="staff", vendor_id="second")
        async with uows() as uow:
            view = await service.decline_job(uow, ctx, first, job.id, "busy")
        assert view.outcome_for_vendor == "declined"
        clock.advance(timedelta(hours=25))
        passed = await service.run_timer_pass(uows, ctx)
        assert passed.expired == 1
        async with uows() as uow:
            await service.register_vendor(uow, ctx, VendorIn(
                vendor_id="third", name="third", capabilities=[JobType.forensics],
                regions=["*"], capacity=1, rating=1.0))
        third = Principal(role=Role.vendor, sub="staff", vendor_id="third")
        async with uows() as uow:
            assert (await service.read_job(uow, third, job.id)).job.status == "dispatched"
            assert (await service.read_job(uow, second, job.id)).outcome_for_vendor == "expired"
        async with uows() as uow:
            await service.accept_job(uow, ctx, third, job.id)
        async with uows() as uow:
            await service.complete_job(uow, ctx, third, job.id, CompletionReportIn.model_validate({
                "root_cause": "x", "attack_vector": "y", "attribution": "insider",
                "contained_at": clock.now().isoformat(),
                "verified_losses": [{"section": "incident_response", "amount": "10.5",
                                     "description": "invoice"}]}))
        async with uows() as uow:
            types = list(await uow.session.scalars(select(Outbox.event_type).order_by(Outbox.id)))
        assert JobExpired.event_type in types
        assert JobUnassigned.event_type in types
        assert types[-1] == IncidentResponseCompleted.event_type
    finally:
        await engine.dispose()

"""The use cases also run on SQLite (the `make run` default): dispatch, decline, expiry, a
waiting job taken by a new vendor, completion, and a vendor filled by another transaction while
an incident is triaged. No broker: the events stay in the outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from services.triage import incidents, jobs, timers, vendors
from services.triage.context import TriageContext
from services.triage.models import Job, Outbox, Vendor
from services.triage.schemas import CompletionReportIn, VendorIn
from services.triage.settings import TriageSettings
from shared.auth import Principal, Role
from shared.clock import ManualClock
from shared.db import UnitOfWorkFactory, create_engine
from shared.events import (
    Category,
    IncidentResponseCompleted,
    JobDispatched,
    JobExpired,
    JobType,
    JobUnassigned,
)
from shared.migrations import migrate
from shared.outbox import Outbox as OutboxWriter
from tests.triage.conftest import envelope, incident_report, policy_terms


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    path = tmp_path / "triage.db"
    migrate("triage", f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def uows(sqlite_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{sqlite_path}")
    try:
        yield UnitOfWorkFactory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ctx(clock: ManualClock) -> TriageContext:
    return TriageContext(OutboxWriter(Outbox, source="/cyberclaims/triage", clock=clock), clock,
                         TriageSettings().response_times())


async def test_the_job_life_cycle_on_sqlite(uows: UnitOfWorkFactory, ctx: TriageContext,
                                            clock: ManualClock) -> None:
    for vendor_id, rating in [("first", 5.0), ("second", 4.0)]:
        async with uows() as uow:
            await vendors.register_vendor(uow, ctx, VendorIn(
                vendor_id=vendor_id, name=vendor_id, capabilities=[JobType.forensics],
                regions=["CN-GD"], capacity=1, rating=rating))
    terms = policy_terms("CN-GD", now=clock.now())
    report = incident_report(terms, clock.now())
    async with uows() as uow:
        await incidents.record_policy(uow.session, ctx, terms, version=1)
        await incidents.receive_incident(uow.session, ctx, report, envelope(report, clock.now()))
        await uow.commit()
    async with uows() as uow:
        job = await uow.session.scalar(select(Job).where(Job.incident_id == report.incident_id))
    assert job is not None and job.vendor_id == "first"

    first = Principal(role=Role.vendor, sub="staff", vendor_id="first")
    second = Principal(role=Role.vendor, sub="staff", vendor_id="second")
    async with uows() as uow:
        view = await jobs.decline_job(uow, ctx, first, job.id, "busy")
    assert view.outcome_for_vendor == "declined"
    clock.advance(timedelta(hours=25))
    passed = await timers.run_timer_pass(uows, ctx)
    assert passed.expired == 1
    async with uows() as uow:
        await vendors.register_vendor(uow, ctx, VendorIn(
            vendor_id="third", name="third", capabilities=[JobType.forensics],
            regions=["*"], capacity=1, rating=1.0))
    third = Principal(role=Role.vendor, sub="staff", vendor_id="third")
    async with uows() as uow:
        assert (await jobs.read_job(uow, third, job.id)).job.status == "dispatched"
        assert (await jobs.read_job(uow, second, job.id)).outcome_for_vendor == "expired"
    async with uows() as uow:
        await jobs.accept_job(uow, ctx, third, job.id)
    async with uows() as uow:
        await jobs.complete_job(uow, ctx, third, job.id, CompletionReportIn.model_validate({
            "root_cause": "x", "attack_vector": "other", "attack_vector_detail": "y",
            "attribution": "insider",
            "contained_at": clock.now().isoformat(),
            "verified_losses": [{"section": "incident_response", "amount": "10.5",
                                 "description": "invoice"}]}))
    async with uows() as uow:
        types = list(await uow.session.scalars(select(Outbox.event_type).order_by(Outbox.id)))
    assert JobExpired.event_type in types
    assert JobUnassigned.event_type in types
    assert types[-1] == IncidentResponseCompleted.event_type


async def test_a_vendor_filled_while_an_incident_is_triaged_is_passed_over_on_sqlite(
        uows: UnitOfWorkFactory, ctx: TriageContext, clock: ManualClock,
        sqlite_path: Path) -> None:
    """SQLite takes no row locks, so another transaction may fill a vendor after triage read
    it: the jobs then go to the next vendors as they would job by job, and no slot is lost or
    taken twice (the slots triage took at once for the incident are given back first)."""
    for vendor_id, rating, capabilities, capacity in [
            ("first", 5.0, [JobType.forensics], 1),
            ("second", 4.0, [JobType.forensics, JobType.legal_counsel], 5)]:
        async with uows() as uow:
            await vendors.register_vendor(uow, ctx, VendorIn(
                vendor_id=vendor_id, name=vendor_id, capabilities=capabilities,
                regions=["CN-GD"], capacity=capacity, rating=rating))
    terms = policy_terms("CN-GD", now=clock.now())
    report = incident_report(terms, clock.now(), category=Category.data_breach, records_exposed=0)

    filled = False

    def fill_first_once_read(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal filled
        if not filled and statement.startswith("SELECT vendors.vendor_id, vendors.capabilities"):
            filled = True  # just after triage read the vendors' loads
            with sqlite3.connect(sqlite_path) as other:
                other.execute("UPDATE vendors SET open_jobs = capacity WHERE vendor_id = 'first'")

    async with uows() as uow:
        await incidents.record_policy(uow.session, ctx, terms, version=1)
        await uow.commit()
    event.listen(uows.engine.sync_engine, "after_cursor_execute", fill_first_once_read)
    async with uows() as uow:
        await incidents.receive_incident(uow.session, ctx, report, envelope(report, clock.now()))
        await uow.commit()

    async with uows() as uow:
        jobs = list(await uow.session.scalars(
            select(Job).where(Job.incident_id == report.incident_id).order_by(Job.position)))
        open_jobs = {vendor_id: count for vendor_id, count in await uow.session.execute(
            select(Vendor.vendor_id, Vendor.open_jobs))}
        dispatched = list(await uow.session.scalars(
            select(Outbox.event_type).where(Outbox.event_type == JobDispatched.event_type)))
    assert [(job.job_type, job.status, job.vendor_id) for job in jobs] == [
        ("forensics", "dispatched", "second"), ("legal_counsel", "dispatched", "second")]
    assert open_jobs == {"first": 1, "second": 2}
    assert filled and len(dispatched) == 2

"""Triage's timers: acceptance deadlines expire, unassigned jobs are offered again, and
incidents that waited for their policy are triaged."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, tuple_

from services.triage import rules
from services.triage.context import SYSTEM, TriageContext, add_history, incident_of
from services.triage.dispatch import lock_vendors, offer, pass_on, vendor_load
from services.triage.incidents import triage_incident
from services.triage.models import (
    Incident,
    IncidentStatus,
    Job,
    JobRefusal,
    JobStatus,
    Policy,
    Vendor,
)
from shared.db import UnitOfWorkFactory, any_of
from shared.events import JobType, Priority
from shared.repairs import record_repair


@dataclass
class TimerPass:
    repaired: int = 0
    expired: int = 0
    assigned: int = 0
    triaged: int = 0


async def run_timer_pass(uows: UnitOfWorkFactory, ctx: TriageContext,
                         now: datetime | None = None) -> TimerPass:
    """One pass of the durable timer: expire jobs past their acceptance deadline (each goes to
    the next vendor), assign waiting jobs a vendor now has room for, and triage incidents that
    arrived before their policy. Everything it needs is in the database, so a restart loses
    nothing; SKIP LOCKED lets replicas share the work."""
    now = now or ctx.clock.now()
    done = TimerPass()
    done.repaired = await _repair_deadlineless(uows, ctx, now)
    while await _expire_next(uows, ctx, now):
        done.expired += 1
    done.assigned = await _assign_waiting(uows, ctx, now)
    done.triaged = await _triage_waiting(uows, ctx, now)
    return done


async def _repair_deadlineless(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime) -> int:
    """Safety net: a dispatched job without an acceptance deadline would wait for its vendor
    forever (nothing expires it). It gets the deadline its priority gives from now, and is
    counted and logged: such a job means a bug elsewhere."""
    async with uows() as uow:
        jobs = list(await uow.session.scalars(
            select(Job).where(Job.status == JobStatus.dispatched, Job.accept_by.is_(None))
            .with_for_update(skip_locked=True)))
        for job in jobs:
            job.accept_by = rules.acceptance_deadline(now, Priority(job.priority), ctx.times)
            job.updated_at = now
            add_history(uow.session, job, JobStatus.dispatched, now, SYSTEM, job.vendor_id,
                     f"had no acceptance deadline; accept by {job.accept_by.isoformat()}")
            record_repair("triage", "job_without_deadline",
                          f"job {job.id} was dispatched to {job.vendor_id} without an acceptance "
                          f"deadline; it now expires at {job.accept_by.isoformat()}")
        if jobs:
            await uow.commit()
        return len(jobs)


async def _expire_next(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime) -> bool:
    async with uows() as uow:
        job = await uow.session.scalar(
            select(Job).where(Job.status == JobStatus.dispatched, Job.accept_by < now)
            .order_by(Job.accept_by).limit(1).with_for_update(skip_locked=True)
        )
        if job is None:
            return False
        await pass_on(uow.session, ctx, job, now, outcome=JobStatus.expired, actor=SYSTEM,
                       note=f"not accepted by {job.accept_by.isoformat() if job.accept_by else '?'}")
        await uow.commit()
        return True


async def _assign_waiting(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime,
                          batch: int = 500) -> int:
    """Waiting jobs that some vendor has room for (e.g. one skipped while it was locked), read
    a page at a time in the order they are owed a vendor, through every page: jobs no vendor
    can take (every capable vendor passed on them, none serves the region) may head the list
    for good, and must never hide the ones behind them."""
    assigned = 0
    order = (Job.priority, Job.created_at, Job.position, Job.id)
    after: tuple[Any, ...] | None = None
    while True:
        async with uows() as uow:
            page = select(Job.job_type, Job.region, *order).where(
                Job.status == JobStatus.unassigned)
            if after is not None:
                page = page.where(tuple_(*order) > tuple_(*after))
            waiting = (await uow.session.execute(page.order_by(*order).limit(batch))).all()
            if not waiting:
                return assigned
            with_room = [vendor_load(v) for v in await uow.session.scalars(
                select(Vendor).where(Vendor.active.is_(True), Vendor.open_jobs < Vendor.capacity)
            )]
            if not with_room:
                return assigned
            refusals = (await uow.session.execute(
                select(JobRefusal.job_id, JobRefusal.vendor_id)
                .where(any_of(JobRefusal.job_id, [row.id for row in waiting]))
            )).all()
        last = waiting[-1]
        after = (last.priority, last.created_at, last.position, last.id)
        refused: dict[uuid.UUID, set[str]] = {}
        for job_id, vendor_id in refusals:
            refused.setdefault(job_id, set()).add(vendor_id)
        for row in waiting:
            if rules.rank_vendors(with_room, JobType(row.job_type), row.region,
                                  refused.get(row.id, ())):
                assigned += await _assign(uows, ctx, row.id, now)
        if len(waiting) < batch:
            return assigned


async def _assign(uows: UnitOfWorkFactory, ctx: TriageContext, job_id: uuid.UUID,
                  now: datetime) -> int:
    """Offer one waiting job again, if it still waits; 1 if a vendor took it."""
    async with uows() as uow:
        job = await uow.session.scalar(
            select(Job).where(Job.id == job_id, Job.status == JobStatus.unassigned)
            .with_for_update(skip_locked=True)
        )
        if job is None:
            return 0
        incident = await incident_of(uow.session, job)
        pool = await lock_vendors(uow.session, [job.job_type], job.region)
        if await offer(uow.session, ctx, job, incident, pool, now, announce=False):
            await uow.commit()
            return 1
    return 0


async def _triage_waiting(uows: UnitOfWorkFactory, ctx: TriageContext, now: datetime) -> int:
    """Incidents that arrived before their policy, once it is here (one per transaction)."""
    async with uows() as uow:
        ids = list(await uow.session.scalars(
            select(Incident.id).where(
                Incident.status == IncidentStatus.awaiting_policy,
                exists().where(Policy.policy_number == Incident.policy_number),
            )
        ))
    triaged = 0
    for incident_id in ids:
        async with uows() as uow:
            incident = await uow.session.scalar(
                select(Incident).where(Incident.id == incident_id,
                                       Incident.status == IncidentStatus.awaiting_policy)
                .with_for_update(skip_locked=True)
            )
            policy = await uow.session.get(Policy, incident.policy_number) if incident else None
            if incident is None or policy is None:
                continue
            await triage_incident(uow.session, ctx, incident, policy, None, now)
            await uow.commit()
            triaged += 1
    return triaged

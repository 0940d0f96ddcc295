"""Dispatch and vendor selection: which vendors may take a job, their slots, and offering
jobs to them.

Capacity: vendors' slots are taken with a conditional UPDATE (`open_jobs + taken <= capacity`)
whose returned rows say where it worked, so no vendor ever exceeds its capacity, whatever runs
at once. Deadlocks: a transaction locks, in this order, the incident, then the job, then every
vendor it may touch in one `SELECT ... ORDER BY vendor_id FOR UPDATE` (or, when it touches one
vendor only, by `release_slot`'s UPDATE of it); holding a vendor, it only takes job rows with
SKIP LOCKED. So no two transactions wait on each other in a cycle.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    Update,
    and_,
    any_,
    bindparam,
    cast,
    column,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from services.triage import rules
from services.triage.context import (
    NO_VENDOR,
    SYSTEM,
    JobSubject,
    TriageContext,
    add_history,
    emit,
    incident_of,
)
from services.triage.models import Incident, Job, JobKind, JobRefusal, JobStatus, Vendor
from services.triage.rules import VendorLoad
from services.triage.transaction_cache import TransactionCache
from shared.events import (
    Envelope,
    JobDeclined,
    JobDispatched,
    JobExpired,
    JobType,
    JobUnassigned,
    Priority,
)


def vendor_load(vendor: Vendor | Row[Any]) -> VendorLoad:
    return VendorLoad(
        vendor_id=vendor.vendor_id, capabilities=frozenset(JobType(c) for c in vendor.capabilities),
        regions=frozenset(vendor.regions), capacity=vendor.capacity, open_jobs=vendor.open_jobs,
        rating=vendor.rating, active=vendor.active,
    )


VENDOR_LOAD_COLUMNS = (Vendor.vendor_id, Vendor.capabilities, Vendor.regions, Vendor.capacity,
                       Vendor.open_jobs, Vendor.rating, Vendor.active)


def _lock_vendors_statement() -> Select[*tuple[Any, ...]]:
    """`lock_vendors`'s statement, built once: who to lock as array parameters, so one
    statement text (prepared once) serves every call; columns, not ORM objects."""
    def lists_any(column: InstrumentedAttribute[list[str]], values: str) -> ColumnElement[bool]:
        return cast(column, JSONB).has_any(bindparam(values, type_=postgresql.ARRAY(String())))

    return (select(*VENDOR_LOAD_COLUMNS)
            .where(or_(Vendor.vendor_id == any_(bindparam("named",
                                                          type_=postgresql.ARRAY(String()))),
                       and_(Vendor.active.is_(True), lists_any(Vendor.capabilities, "wanted"),
                            lists_any(Vendor.regions, "regions"))))
            .order_by(Vendor.vendor_id).with_for_update())


LOCK_VENDORS = _lock_vendors_statement()


async def lock_vendors(session: AsyncSession, job_types: Iterable[str], region: str,
                        also: Iterable[str | None] = ()) -> dict[str, VendorLoad]:
    """Lock, in vendor_id order, every active vendor that could take one of `job_types` in
    `region`, and the vendors in `also`; returns their loads as of the lock. One statement: the
    database itself looks into the vendors' lists of capabilities and regions. Asked the same
    again in this transaction, which still holds those locks, the answer comes from the
    transaction's cache, with the open jobs taken and released since."""
    wanted = tuple(sorted({JobType(t).value for t in job_types}))
    named = tuple(sorted({v for v in also if v is not None}))
    if not wanted and not named:
        return {}
    cache = TransactionCache.of(session)
    asked = (wanted, named, region)
    if asked in cache.pools:
        return {vendor_id: cache.vendors[vendor_id] for vendor_id in cache.pools[asked]}
    locked = await session.execute(LOCK_VENDORS, {
        "named": list(named), "wanted": list(wanted), "regions": [rules.EVERY_REGION, region]})
    pool = {row.vendor_id: vendor_load(row) for row in locked}
    cache.vendors.update(pool)
    cache.pools[asked] = tuple(pool)
    return pool


def _take_slots_statement() -> Update:
    """`take_slots`'s statement, built once: the counts as `unnest` arrays, so one statement
    text (prepared once) serves any number of vendors."""
    slots = func.unnest(bindparam("vendor_ids", type_=postgresql.ARRAY(String())),
                        bindparam("counts", type_=postgresql.ARRAY(Integer()))) \
        .table_valued(column("vendor_id", String()), column("taken", Integer())).render_derived()
    return (update(Vendor)
            .where(Vendor.vendor_id == slots.c.vendor_id, Vendor.active.is_(True),
                   Vendor.open_jobs + slots.c.taken <= Vendor.capacity)
            .values(open_jobs=Vendor.open_jobs + slots.c.taken)
            .returning(Vendor.vendor_id, Vendor.open_jobs)
            .execution_options(synchronize_session=False))


TAKE_SLOTS = _take_slots_statement()


async def take_slots(session: AsyncSession, slots: Mapping[str, int]) -> dict[str, int]:
    """`slots[v]` more open jobs for each vendor `v` that stays active and within its capacity
    (a negative count gives slots back), in one statement; the new open_jobs of those changed."""
    result = await session.execute(TAKE_SLOTS, {
        "vendor_ids": list(slots), "counts": list(slots.values())})
    taken = {vendor_id: open_jobs for vendor_id, open_jobs in result}
    TransactionCache.of(session).slots_changed(taken)
    return taken


def _release_slot_statement() -> Update:
    """`release_slot`'s statement, built once."""
    return (update(Vendor).where(Vendor.vendor_id == bindparam("releasing"))
            .values(open_jobs=func.greatest(Vendor.open_jobs - 1, 0))
            .returning(*VENDOR_LOAD_COLUMNS)
            .execution_options(synchronize_session=False))


RELEASE_SLOT = _release_slot_statement()


async def release_slot(session: AsyncSession, vendor_id: str,
                       pool: dict[str, VendorLoad] | None = None) -> VendorLoad | None:
    """Give back one of the vendor's open jobs (never below none); its load after, or None for
    a vendor that does not exist. The UPDATE locks the vendor, so a caller that touches no other
    vendor needs no `lock_vendors` first. Keeps the transaction's cache and `pool` current."""
    row = (await session.execute(RELEASE_SLOT, {"releasing": vendor_id})).first()
    if row is None:
        return None
    load = vendor_load(row)
    TransactionCache.of(session).vendors[vendor_id] = load
    if pool is not None and vendor_id in pool:
        pool[vendor_id] = load
    return load


def dispatch(session: AsyncSession, ctx: TriageContext, job: Job, incident: JobSubject,
              vendor_id: str, now: datetime, *, cause: Envelope | None, actor: str) -> None:
    priority = Priority(job.priority)
    job.status = JobStatus.dispatched
    job.vendor_id = vendor_id
    job.attempt += 1
    job.accept_by = (now + ctx.times.assessment_acceptance if job.kind == JobKind.assessment
                     else rules.acceptance_deadline(now, priority, ctx.times))
    job.updated_at = now
    add_history(session, job, JobStatus.dispatched, now, actor, vendor_id,
             f"accept by {job.accept_by.isoformat()}")
    emit(session, ctx, JobDispatched(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=vendor_id, priority=priority,
        accept_by=job.accept_by, attempt=job.attempt,
    ), incident, cause)


async def _refusers(session: AsyncSession, job: Job) -> list[str]:
    if job.attempt == 0:
        return []  # never dispatched, so nobody has declined it or let it expire
    return list(await session.scalars(select(JobRefusal.vendor_id).where(JobRefusal.job_id == job.id)))


async def offer(session: AsyncSession, ctx: TriageContext, job: Job, incident: JobSubject,
                 pool: dict[str, VendorLoad], now: datetime, *, cause: Envelope | None = None,
                 announce: bool, reason: str | None = None) -> bool:
    """Dispatch the job to the first eligible vendor that still has room (the rulebook's
    order); otherwise leave it unassigned (and, if `announce`, tell the operators)."""
    candidates = rules.rank_vendors(pool.values(), JobType(job.job_type), job.region,
                                    await _refusers(session, job))
    for candidate in candidates:
        taken = await take_slots(session, {candidate.vendor_id: 1})
        if not taken:
            continue
        pool[candidate.vendor_id] = replace(candidate, open_jobs=taken[candidate.vendor_id])
        dispatch(session, ctx, job, incident, candidate.vendor_id, now, cause=cause, actor=SYSTEM)
        return True
    _leave_unassigned(session, ctx, job, incident, now, cause=cause, announce=announce,
                      reason=reason or _unassigned_reason(pool, job))
    return False


async def offer_new_jobs(session: AsyncSession, ctx: TriageContext, jobs: Sequence[Job],
                          incident: Incident, pool: dict[str, VendorLoad], now: datetime, *,
                          cause: Envelope | None) -> None:
    """`offer` each new job of an incident, in the playbook's order, with one UPDATE for all
    their slots. The vendors are locked, so choosing in memory gives what one conditional UPDATE
    per job would. Should the UPDATE find a vendor otherwise than chosen against, it is undone
    and the jobs are offered one at a time."""
    planned = dict(pool)
    chosen: list[str | None] = []
    for job in jobs:
        ranked = rules.rank_vendors(planned.values(), JobType(job.job_type), job.region)
        if ranked:
            planned[ranked[0].vendor_id] = replace(ranked[0], open_jobs=ranked[0].open_jobs + 1)
        chosen.append(ranked[0].vendor_id if ranked else None)
    slots = Counter(vendor_id for vendor_id in chosen if vendor_id is not None)
    taken = await take_slots(session, slots) if slots else {}
    if taken != {vendor_id: planned[vendor_id].open_jobs for vendor_id in slots}:
        if taken:
            await take_slots(session, {vendor_id: -slots[vendor_id] for vendor_id in taken})
        for job in jobs:
            await offer(session, ctx, job, incident, pool, now, cause=cause, announce=True)
        return
    for job, vendor_id in zip(jobs, chosen, strict=True):
        if vendor_id is None:
            _leave_unassigned(session, ctx, job, incident, now, cause=cause, announce=True,
                              reason=_unassigned_reason(pool, job))
        else:
            dispatch(session, ctx, job, incident, vendor_id, now, cause=cause, actor=SYSTEM)


def _unassigned_reason(pool: Mapping[str, VendorLoad], job: Job) -> str:
    """Why no vendor took the job, as operators must act on it: register a vendor for the job
    type and region when none serves it at all, or wait for (or add) capacity."""
    job_type = JobType(job.job_type)
    if any(vendor.can_do(job_type, job.region) for vendor in pool.values()):
        return NO_VENDOR
    return f"no active vendor serves {job_type.value} in {job.region}"


def _leave_unassigned(session: AsyncSession, ctx: TriageContext, job: Job, incident: JobSubject,
                      now: datetime, *, cause: Envelope | None, announce: bool,
                      reason: str) -> None:
    job.status = JobStatus.unassigned
    job.vendor_id = None
    job.accept_by = None
    job.updated_at = now
    if announce:
        add_history(session, job, JobStatus.unassigned, now, SYSTEM, note=reason)
        emit(session, ctx, JobUnassigned(
            incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
            job_type=JobType(job.job_type), at=now, reason=reason,
        ), incident, cause)


async def fill_vendor(session: AsyncSession, ctx: TriageContext, vendor: VendorLoad,
                       now: datetime, *, actor: str = SYSTEM) -> int:
    """Give a vendor (locked by the caller) waiting jobs it may take, most urgent first."""
    room = vendor.capacity - vendor.open_jobs
    if not vendor.active or room <= 0:
        return 0
    query = select(Job).where(
        Job.status == JobStatus.unassigned,
        Job.job_type.in_([c.value for c in vendor.capabilities]),
        ~exists().where(JobRefusal.job_id == Job.id, JobRefusal.vendor_id == vendor.vendor_id),
    )
    if rules.EVERY_REGION not in vendor.regions:
        query = query.where(Job.region.in_(sorted(vendor.regions)))
    waiting = await session.scalars(
        query.order_by(Job.priority, Job.created_at, Job.position).limit(room)
        .with_for_update(skip_locked=True)
    )
    assigned = 0
    for job in list(waiting):
        if not await take_slots(session, {vendor.vendor_id: 1}):
            break
        incident = await incident_of(session, job)
        dispatch(session, ctx, job, incident, vendor.vendor_id, now, cause=None, actor=actor)
        assigned += 1
    return assigned


async def pass_on(session: AsyncSession, ctx: TriageContext, job: Job, now: datetime, *,
                   outcome: str, actor: str, note: str | None) -> None:
    """A dispatched job was declined or expired: free the slot, remember the vendor, and offer
    the job to the next one; the freed slot may take a waiting job."""
    incident = await incident_of(session, job)
    vendor_id = job.vendor_id
    assert vendor_id is not None
    pool = await lock_vendors(session, [job.job_type], job.region, also=[vendor_id])
    await release_slot(session, vendor_id, pool)
    refusal = await session.get(JobRefusal, (job.id, vendor_id))
    if refusal is None:
        session.add(JobRefusal(job_id=job.id, vendor_id=vendor_id, outcome=outcome, at=now))
    else:  # an operator gave the job back to a vendor that had passed on it: its latest word
        refusal.outcome, refusal.at = outcome, now
    job.status = outcome
    add_history(session, job, outcome, now, actor, vendor_id, note)
    job_type = JobType(job.job_type)
    if outcome == JobStatus.declined:
        emit(session, ctx, JobDeclined(
            incident_id=incident.id, org_id=incident.org_id, job_id=job.id, job_type=job_type,
            at=now, vendor_id=vendor_id, reason=note or "",
        ), incident, None)
    else:
        assert job.accept_by is not None
        emit(session, ctx, JobExpired(
            incident_id=incident.id, org_id=incident.org_id, job_id=job.id, job_type=job_type,
            at=now, vendor_id=vendor_id, accept_by=job.accept_by,
        ), incident, None)
    await session.flush()
    await offer(session, ctx, job, incident, pool, now, announce=True,
                 reason=f"{NO_VENDOR} after {vendor_id} {outcome}")
    if vendor_id in pool:
        await fill_vendor(session, ctx, pool[vendor_id], now)

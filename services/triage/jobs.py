"""The job life cycle as vendors and operators drive it (read, accept, decline, complete,
cancel, assign), and an incident's jobs."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.triage.context import (
    FUTURE_TOLERANCE,
    JobSubject,
    TriageContext,
    add_history,
    emit,
    incident_of,
)
from services.triage.dispatch import dispatch, fill_vendor, lock_vendors, pass_on, release_slot, take_slots
from services.triage.incidents import complete_incident_if_done
from services.triage.models import (
    HOLDS_A_SLOT,
    OPEN_STATES,
    AssessmentRequest,
    DeadLetter,
    Incident,
    Job,
    JobHistory,
    JobKind,
    JobRefusal,
    JobStatus,
)
from services.triage.schemas import CompletionReportIn
from shared.auth import Principal, Role
from shared.db import UnitOfWork, any_of, write_appended
from shared.events import JobAccepted, JobCancelled, JobCompleted, JobType
from shared.problems import Conflict, NotFound, Unprocessable


@dataclass(frozen=True)
class JobView:
    """A job as one caller may see it. A vendor that declined a job or let it expire still
    sees it, as `declined` or `expired`, without what happened after."""

    job: Job
    history: Sequence[JobHistory]
    outcome_for_vendor: str | None = None
    dead_letters: Sequence[DeadLetter] = ()


async def _visible_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID
                       ) -> tuple[Job, str | None]:
    """The job and, for a vendor that no longer holds it, its own outcome; 404 otherwise."""
    job = await session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if principal.role is Role.vendor and job.vendor_id != principal.vendor_id:
        return job, await _outcome_for_former_holder(session, principal, job_id)
    return job, None


async def _outcome_for_former_holder(session: AsyncSession, principal: Principal,
                                     job_id: uuid.UUID) -> str:
    """How a job ended for the vendor that no longer holds it (declined, expired); 404 for a
    vendor that never held it."""
    refusal = await session.get(JobRefusal, (job_id, principal.vendor_id))
    if refusal is None:
        raise NotFound(f"job {job_id} not found")
    return refusal.outcome


async def _histories(session: AsyncSession, job_ids: Sequence[uuid.UUID]
                     ) -> dict[uuid.UUID, list[JobHistory]]:
    found: dict[uuid.UUID, list[JobHistory]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        rows = await session.scalars(
            select(JobHistory).where(any_of(JobHistory.job_id, job_ids))
            .order_by(JobHistory.at, JobHistory.id)
        )
        for row in rows:
            found[row.job_id].append(row)
    return found


async def _dead_letters(session: AsyncSession, incident_ids: Collection[uuid.UUID]
                        ) -> dict[uuid.UUID, list[DeadLetter]]:
    """The events about these incidents that were dead-lettered and not replayed yet."""
    found: dict[uuid.UUID, list[DeadLetter]] = defaultdict(list)
    if incident_ids:
        for row in await session.scalars(select(DeadLetter).where(
                any_of(DeadLetter.incident_id, set(incident_ids))).order_by(DeadLetter.at)):
            found[row.incident_id].append(row)
    return found


def _marks_of(marks: dict[uuid.UUID, list[DeadLetter]], job: Job) -> Sequence[DeadLetter]:
    """An assessment job has no incident, so no incident's dead letters."""
    return marks.get(job.incident_id, ()) if job.incident_id is not None else ()


async def _views(session: AsyncSession, jobs: Sequence[Job]) -> list[JobView]:
    histories = await _histories(session, [job.id for job in jobs])
    marks = await _dead_letters(session, {job.incident_id for job in jobs
                                          if job.incident_id is not None})
    return [JobView(job, histories[job.id], dead_letters=_marks_of(marks, job)) for job in jobs]


async def read_job(uow: UnitOfWork, principal: Principal, job_id: uuid.UUID) -> JobView:
    job, outcome = await _visible_job(uow.session, principal, job_id)
    history = (await _histories(uow.session, [job.id]))[job.id]
    marks = await _dead_letters(uow.session, [job.incident_id] if job.incident_id else [])
    return JobView(job, history, outcome, _marks_of(marks, job))


async def list_jobs(uow: UnitOfWork, principal: Principal, *, status: str | None,
                    incident_id: uuid.UUID | None, limit: int, offset: int
                    ) -> tuple[list[JobView], int]:
    """A vendor lists the jobs it holds; an operator every job."""
    query = select(Job)
    if principal.role is Role.vendor:
        query = query.where(Job.vendor_id == principal.vendor_id)
    if status is not None:
        query = query.where(Job.status == status)
    if incident_id is not None:
        query = query.where(Job.incident_id == incident_id)
    total = await uow.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    jobs = list(await uow.session.scalars(
        query.order_by(Job.created_at.desc(), Job.incident_id, Job.position).limit(limit).offset(offset)
    ))
    return await _views(uow.session, jobs), total


async def _locked_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID
                      ) -> tuple[Job, JobSubject]:
    """The vendor's own job, locked, and what it is for, read in the same statement; 404 for a
    job it cannot see, 409 naming its outcome for one it declined or let expire. While the
    caller holds the subject, `incident_of` finds it in the session (whose identity map holds
    its objects only as long as someone does)."""
    found = (await session.execute(
        select(Job, Incident, AssessmentRequest)
        .outerjoin(Incident, Incident.id == Job.incident_id)
        .outerjoin(AssessmentRequest, AssessmentRequest.id == Job.assessment_id)
        .where(Job.id == job_id).with_for_update(of=Job)
        .execution_options(populate_existing=True))).first()
    if found is None:
        raise NotFound(f"job {job_id} not found")
    job: Job = found[0]
    subject: JobSubject = found[1] or found[2]
    if job.vendor_id != principal.vendor_id:
        outcome = await _outcome_for_former_holder(session, principal, job_id)
        raise Conflict(f"job {job_id} is {outcome} for vendor {principal.vendor_id}",
                       state=outcome)
    return job, subject


def _require_status(job: Job, expected: str) -> None:
    if job.status != expected:
        raise Conflict(f"job {job.id} is {job.status}; only a {expected} job can be "
                       "changed this way", state=job.status)


async def _held_job(uow: UnitOfWork, principal: Principal, job_id: uuid.UUID,
                    expected: str) -> tuple[Job, JobSubject]:
    """The vendor's own job, locked, in state `expected`, and what it is for; 404 or 409
    (naming the state)."""
    job, subject = await _locked_job(uow.session, principal, job_id)
    _require_status(job, expected)
    return job, subject


async def _lock_incident_of_job(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Lock the incident of a response job before the job itself (the order every triage
    transaction keeps), in one statement that finds it by the job; nothing for an unknown job
    or an assessment job, which the job's own look-up then refuses."""
    await session.execute(
        select(Incident).where(Incident.id == select(Job.incident_id).where(Job.id == job_id)
                               .scalar_subquery())
        .with_for_update().execution_options(populate_existing=True))


async def _answer(uow: UnitOfWork, principal: Principal, job_id: uuid.UUID) -> JobView:
    """The job as the caller now sees it, read in the transaction that changed it, which then
    commits: a command is one transaction, not a second one to read its result."""
    await write_appended(uow.session)  # so the answer shows the history entry just added
    view = await read_job(uow, principal, job_id)
    await uow.commit()
    return view


async def accept_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                     job_id: uuid.UUID) -> JobView:
    now = ctx.clock.now()
    job, incident = await _held_job(uow, principal, job_id, JobStatus.dispatched)
    if job.accept_by is not None and now > job.accept_by:
        raise Conflict(f"job {job_id} is expired: it had to be accepted by "
                       f"{job.accept_by.isoformat()}", state=JobStatus.expired)
    job.status = JobStatus.accepted
    job.updated_at = now
    add_history(uow.session, job, JobStatus.accepted, now, principal.recipient, job.vendor_id)
    emit(uow.session, ctx, JobAccepted(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=principal.vendor_id or "",
    ), incident, None)
    return await _answer(uow, principal, job_id)


async def decline_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                      job_id: uuid.UUID, reason: str) -> JobView:
    """The vendor passes: the job goes to the next vendor (never back to this one)."""
    now = ctx.clock.now()
    job, _subject = await _held_job(uow, principal, job_id, JobStatus.dispatched)
    await pass_on(uow.session, ctx, job, now, outcome=JobStatus.declined, actor=principal.recipient,
                   note=reason)
    return await _answer(uow, principal, job_id)


async def complete_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                       job_id: uuid.UUID, body: CompletionReportIn) -> JobView:
    now = ctx.clock.now()
    for name in ("contained_at", "outage_started_at", "outage_ended_at"):
        value = getattr(body, name)
        if value is not None and value > now + FUTURE_TOLERANCE:
            raise Unprocessable(f"{name} is more than 5 minutes in the future", field=name)
    await _lock_incident_of_job(uow.session, job_id)
    job, incident = await _locked_job(uow.session, principal, job_id)
    if job.kind == JobKind.assessment:
        raise Conflict(f"job {job_id} is a risk assessment: submit it to risk "
                       "(POST /v1/assessments/{assessment_id}/report)", state=job.status)
    _require_status(job, JobStatus.accepted)
    body.check_sections(JobType(job.job_type))
    report = body.contract()
    vendor = await release_slot(uow.session, job.vendor_id or "")
    job.status = JobStatus.completed
    job.report = report.model_dump(mode="json")
    job.completed_at = now
    job.updated_at = now
    add_history(uow.session, job, JobStatus.completed, now, principal.recipient, job.vendor_id)
    emit(uow.session, ctx, JobCompleted(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=job.vendor_id or "", report=report,
    ), incident, None)
    if vendor is not None:
        await fill_vendor(uow.session, ctx, vendor, now)
    await complete_incident_if_done(uow.session, ctx, incident, now)
    return await _answer(uow, principal, job_id)


async def cancel_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                     job_id: uuid.UUID) -> JobView:
    """An operator closes an open job; its vendor's slot frees."""
    now = ctx.clock.now()
    job, _ = await _visible_job(uow.session, principal, job_id)
    incident = await incident_of(uow.session, job, for_update=True)
    await uow.session.refresh(job, with_for_update=True)
    if job.status not in OPEN_STATES:
        raise Conflict(f"job {job_id} is {job.status}; only an open job can be cancelled",
                       state=job.status)
    holder = job.vendor_id if job.status in HOLDS_A_SLOT else None
    vendor = await release_slot(uow.session, holder) if holder is not None else None
    job.status = JobStatus.cancelled
    job.updated_at = now
    add_history(uow.session, job, JobStatus.cancelled, now, principal.recipient, holder)
    emit(uow.session, ctx, JobCancelled(
        incident_id=incident.id, org_id=incident.org_id, job_id=job.id,
        job_type=JobType(job.job_type), at=now, vendor_id=holder, cancelled_by=principal.sub,
    ), incident, None)
    if vendor is not None:
        await fill_vendor(uow.session, ctx, vendor, now)
    await complete_incident_if_done(uow.session, ctx, incident, now)
    return await _answer(uow, principal, job_id)


async def assign_job(uow: UnitOfWork, ctx: TriageContext, principal: Principal,
                     job_id: uuid.UUID, vendor_id: str) -> JobView:
    """An operator hands an unassigned (or not yet accepted) job to a vendor of its choice,
    even outside the vendor's regions or one that passed on it before, but never beyond the
    vendor's capacity."""
    now = ctx.clock.now()
    job, _ = await _visible_job(uow.session, principal, job_id)
    await uow.session.refresh(job, with_for_update=True)
    if job.status not in (JobStatus.unassigned, JobStatus.dispatched):
        raise Conflict(f"job {job_id} is {job.status}; only an unassigned or dispatched job "
                       "can be assigned", state=job.status)
    if job.vendor_id == vendor_id:
        raise Conflict(f"job {job_id} is already dispatched to {vendor_id}", state=job.status)
    previous = job.vendor_id
    pool = await lock_vendors(uow.session, [], job.region, also=[previous, vendor_id])
    target = pool.get(vendor_id)
    if target is None:
        raise Unprocessable(f"vendor {vendor_id} not found", field="vendor_id")
    if not target.active:
        raise Unprocessable(f"vendor {vendor_id} is not active", field="vendor_id")
    if JobType(job.job_type) not in target.capabilities:
        raise Unprocessable(f"vendor {vendor_id} does not do {job.job_type}", field="vendor_id")
    if not await take_slots(uow.session, {vendor_id: 1}):
        raise Conflict(f"vendor {vendor_id} has no free capacity "
                       f"({target.open_jobs} of {target.capacity} open jobs)", state=job.status)
    incident = await incident_of(uow.session, job)
    released = None
    if previous is not None:
        released = await release_slot(uow.session, previous, pool)
        add_history(uow.session, job, "withdrawn", now, principal.recipient, previous,
                 f"reassigned to {vendor_id}")
    dispatch(uow.session, ctx, job, incident, vendor_id, now, cause=None, actor=principal.recipient)
    if released is not None:
        await fill_vendor(uow.session, ctx, released, now)
    return await _answer(uow, principal, job_id)


async def jobs_of_incident(uow: UnitOfWork, incident_id: uuid.UUID) -> list[str]:
    """What a dead-lettered event about `incident_id` may freeze here: its open jobs (or the
    incident itself when none is open)."""
    jobs = await uow.session.scalars(select(Job.id).where(
        Job.incident_id == incident_id, Job.status.in_(OPEN_STATES)).order_by(Job.position))
    return [f"job {job_id}" for job_id in jobs] or [f"incident {incident_id}"]


async def incident_triage(uow: UnitOfWork, incident_id: uuid.UUID
                          ) -> tuple[Incident, list[JobView]]:
    incident = await uow.session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    jobs = list(await uow.session.scalars(
        select(Job).where(Job.incident_id == incident_id).order_by(Job.position)
    ))
    return incident, await _views(uow.session, jobs)

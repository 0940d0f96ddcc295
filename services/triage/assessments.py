"""Risk assessment jobs: opened when risk asks for an assessment, completed by its report."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.triage.context import TriageContext, add_history
from services.triage.dispatch import fill_vendor, lock_vendors, offer, release_slot
from services.triage.models import AssessmentRequest, Job, JobKind, JobStatus
from shared.events import Envelope, JobType, Priority, RiskAssessed, RiskAssessmentRequested


async def open_assessment_job(session: AsyncSession, ctx: TriageContext,
                              event: RiskAssessmentRequested, envelope: Envelope) -> None:
    """One assessment job per request, dispatched like a response job (capability
    `risk_assessment`, the same selection order and capacity), to be accepted within 72 h."""
    if await session.get(AssessmentRequest, event.assessment_id) is not None:
        return  # the same request again
    now = ctx.clock.now()
    request = AssessmentRequest(id=event.assessment_id, policy_number=event.policy_number,
                                org_id=event.org_id, region=event.region,
                                correlation_id=envelope.correlationid, created_at=now)
    session.add(request)
    await session.flush()
    job = Job(id=uuid.uuid4(), kind=JobKind.assessment, incident_id=None,
              assessment_id=request.id, position=0, job_type=JobType.risk_assessment.value,
              priority=Priority.P4.value, region=event.region, status=JobStatus.unassigned,
              attempt=0, created_at=now, updated_at=now)
    session.add(job)
    pool = await lock_vendors(session, [job.job_type], job.region)
    await offer(session, ctx, job, request, pool, now, cause=envelope, announce=True)


async def complete_assessment_job(session: AsyncSession, ctx: TriageContext,
                                  event: RiskAssessed) -> None:
    """risk scored the assessment its vendor submitted: the job is done, the slot frees."""
    job = await session.scalar(select(Job).where(Job.assessment_id == event.assessment_id)
                               .with_for_update())
    if job is None or job.status != JobStatus.accepted:
        return  # unknown, or completed already (a replay)
    now = ctx.clock.now()
    holder = job.vendor_id or ""
    vendor = await release_slot(session, holder)
    job.status = JobStatus.completed
    job.completed_at = job.updated_at = now
    add_history(session, job, JobStatus.completed, now, f"risk:{event.assessment_id}", holder,
             f"assessed: score {event.score}, tier {event.tier.value}")
    if vendor is not None:
        await fill_vendor(session, ctx, vendor, now)

"""Policies and assessment jobs, from events: risk's copy of each policy (a new policy or a
new policy period asks for an assessment), and who holds each assessment job at triage."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.risk.assessments import open_assessment, stage_request
from services.risk.context import RiskContext, locked_assessment, monitoring_vendor
from services.risk.models import AssessmentStatus, RiskProfile
from shared.events import (
    AssessmentReason,
    Envelope,
    JobAccepted,
    JobCancelled,
    JobDeclined,
    JobDispatched,
    JobEvent,
    JobExpired,
    JobType,
    JobUnassigned,
    PolicyTerms,
)


async def record_policy(session: AsyncSession, ctx: RiskContext, terms: PolicyTerms, *,
                        version: int, cause: Envelope) -> None:
    """Keep the policy's copy; a new policy or a new policy period (renewal) asks for an
    assessment. Older versions arriving late change nothing."""
    now = ctx.clock.now()
    profile = await session.get(RiskProfile, terms.policy_number, with_for_update=True)
    if profile is None:
        profile = RiskProfile(policy_number=terms.policy_number, org_id=terms.org_id,
                              industry=terms.industry.value, region=terms.region,
                              period_start=terms.period_start, period_end=terms.period_end,
                              version=version, referred_to_underwriter=False, updated_at=now)
        session.add(profile)
        await session.flush()
        stage_request(session, ctx, profile, AssessmentReason.registered, cause=cause)
        return
    if version <= profile.version:
        return
    renewed = terms.period_start > profile.period_start
    profile.org_id, profile.industry, profile.region = (terms.org_id, terms.industry.value,
                                                        terms.region)
    profile.period_start, profile.period_end = terms.period_start, terms.period_end
    profile.version, profile.updated_at = version, now
    if renewed and not await open_assessment(session, profile.policy_number):
        stage_request(session, ctx, profile, AssessmentReason.renewed, cause=cause)


JOB_STATUS: dict[type[JobEvent], str] = {
    JobDispatched: AssessmentStatus.dispatched,
    JobAccepted: AssessmentStatus.accepted,
    JobDeclined: AssessmentStatus.requested,
    JobExpired: AssessmentStatus.requested,
    JobUnassigned: AssessmentStatus.unassigned,
    JobCancelled: AssessmentStatus.cancelled,
}


FINAL_ASSESSMENT = (AssessmentStatus.completed, AssessmentStatus.cancelled)
"""Nothing at triage reopens these: a late or replayed event of the job changes nothing."""


async def follow_job(session: AsyncSession, ctx: RiskContext, event: JobEvent) -> None:
    """An assessment job's life cycle at triage: who holds it. The vendor that accepts it is
    the one that may submit the assessment; accepting or cancelling it also decides who
    monitors the policy (exposure alerts, items confirmed done: `monitoring_vendor`)."""
    if event.job_type is not JobType.risk_assessment or event.assessment_id is None:
        return
    locked = await locked_assessment(session, event.assessment_id)
    if locked is None:
        return
    profile, assessment = locked
    if assessment.status in FINAL_ASSESSMENT:
        return
    if assessment.status == AssessmentStatus.accepted and not isinstance(event, JobCancelled):
        return  # triage moves an accepted job only to completed or cancelled: a late copy
    previous_status = assessment.status
    assessment.status = JOB_STATUS[type(event)]
    assessment.job_id = event.job_id
    assessment.vendor_id = getattr(event, "vendor_id", None) if isinstance(
        event, JobDispatched | JobAccepted) else None
    assessment.updated_at = ctx.clock.now()
    if AssessmentStatus.accepted in (previous_status, assessment.status):
        profile.monitoring_vendor_id = await monitoring_vendor(session, profile.policy_number)

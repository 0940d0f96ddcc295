"""Risk's use cases. Each stages its state change and its events in one unit of work.

A policy's profile row is the lock every decision about that policy takes (FOR UPDATE): an
operator's assessment request and a renewal, or an exposure alert and a new assessment's
vendor, never decide on a stale read of each other.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.risk.models import (
    OPEN_ASSESSMENT,
    Assessment,
    AssessmentStatus,
    RemediationItemRow,
    RiskProfile,
)
from services.risk.rules import InvalidVector, RiskRules, ScoredFinding, cvss_base_score
from services.risk.schemas import (
    AssessmentOut,
    AssessmentReportIn,
    ExposureIn,
    PortfolioOut,
    PortfolioSegment,
    RemediationItemOut,
    RiskOut,
)
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.controls import Control
from shared.db import UnitOfWork, UnitOfWorkFactory
from shared.events import (
    AssessmentReason,
    Envelope,
    ExposureAlerted,
    JobAccepted,
    JobCancelled,
    JobDeclined,
    JobDispatched,
    JobEvent,
    JobExpired,
    JobType,
    JobUnassigned,
    PolicyTerms,
    RemediationDone,
    RemediationDueSoon,
    RemediationEscalated,
    RemediationItem,
    RemediationOverdue,
    RemediationSource,
    RemediationSuperseded,
    RiskAssessed,
    RiskAssessmentRequested,
    RiskTier,
)
from shared.outbox import Outbox
from shared.problems import Conflict, NotFound, Unprocessable

RECENT_ASSESSMENTS = 10
TIMER_BATCH = 100


@dataclass(frozen=True)
class RiskContext:
    """What every use case needs: where events go, the time, and the rulebook."""

    outbox: Outbox
    clock: Clock
    rules: RiskRules


class ItemState:
    open = "open"
    done = "done"
    overdue = "overdue"
    superseded = "superseded"


def item_state(item: RemediationItemRow, now: datetime) -> str:
    if item.done_at is not None:
        return ItemState.done
    if item.superseded_at is not None:
        return ItemState.superseded
    return ItemState.overdue if now > item.due_at else ItemState.open


def item_contract(item: RemediationItemRow) -> RemediationItem:
    return RemediationItem(item_id=item.id, control=Control(item.control),
                           source=RemediationSource(item.source), title=item.title,
                           cvss_score=item.cvss_score, due_at=item.due_at, done_at=item.done_at,
                           superseded_at=item.superseded_at)


OPEN_ITEM = (RemediationItemRow.done_at.is_(None), RemediationItemRow.superseded_at.is_(None))
"""Neither confirmed done nor superseded: reminded, counted overdue once past due."""

PlanKey = tuple[str, str, str]


def plan_key(source: RemediationSource | str, control: Control | str, title: str) -> PlanKey:
    """What makes an item of a later assessment the same as an earlier one: a missing control
    is the same control; a finding is the same control and title (case and spacing aside;
    its CVSS score may have changed)."""
    source, control = RemediationSource(source), Control(control)
    same_finding = " ".join(title.casefold().split()) if source is RemediationSource.finding \
        else ""
    return source.value, control.value, same_finding


# --- policies and assessment jobs (from events) --------------------------------------------------


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
        _request(session, ctx, profile, AssessmentReason.registered, cause=cause)
        return
    if version <= profile.version:
        return
    renewed = terms.period_start > profile.period_start
    profile.org_id, profile.industry, profile.region = (terms.org_id, terms.industry.value,
                                                        terms.region)
    profile.period_start, profile.period_end = terms.period_start, terms.period_end
    profile.version, profile.updated_at = version, now
    if renewed and not await _open_assessment(session, profile.policy_number):
        _request(session, ctx, profile, AssessmentReason.renewed, cause=cause)


async def _open_assessment(session: AsyncSession, policy_number: str) -> Assessment | None:
    found: Assessment | None = await session.scalar(
        select(Assessment).where(Assessment.policy_number == policy_number,
                                 Assessment.status.in_(OPEN_ASSESSMENT)).limit(1))
    return found


def _request(session: AsyncSession, ctx: RiskContext, profile: RiskProfile,
             reason: AssessmentReason, *, cause: Envelope | None) -> Assessment:
    now = ctx.clock.now()
    assessment = Assessment(id=uuid.uuid4(), policy_number=profile.policy_number,
                            reason=reason.value, status=AssessmentStatus.requested,
                            requested_at=now, updated_at=now)
    session.add(assessment)
    ctx.outbox.add(session, RiskAssessmentRequested(
        policy_number=profile.policy_number, org_id=profile.org_id, assessment_id=assessment.id,
        region=profile.region, reason=reason, requested_at=now), cause=cause)
    return assessment


JOB_STATUS: dict[type[JobEvent], str] = {
    JobDispatched: AssessmentStatus.dispatched,
    JobAccepted: AssessmentStatus.accepted,
    JobDeclined: AssessmentStatus.requested,
    JobExpired: AssessmentStatus.requested,
    JobUnassigned: AssessmentStatus.unassigned,
    JobCancelled: AssessmentStatus.cancelled,
}


async def follow_job(session: AsyncSession, ctx: RiskContext, event: JobEvent) -> None:
    """An assessment job's life cycle at triage: who holds it. The vendor that accepts it is
    the one that may submit the assessment, and then monitors the policy (exposure alerts)."""
    if event.job_type is not JobType.risk_assessment or event.assessment_id is None:
        return
    assessment = await session.get(Assessment, event.assessment_id, with_for_update=True)
    if assessment is None or assessment.status == AssessmentStatus.completed:
        return
    assessment.status = JOB_STATUS[type(event)]
    assessment.job_id = event.job_id
    assessment.vendor_id = getattr(event, "vendor_id", None) if isinstance(
        event, JobDispatched | JobAccepted) else None
    assessment.updated_at = ctx.clock.now()
    if isinstance(event, JobAccepted):
        profile = await session.get(RiskProfile, assessment.policy_number, with_for_update=True)
        assert profile is not None
        profile.monitoring_vendor_id = event.vendor_id


# --- the API -------------------------------------------------------------------------------------


async def _visible_profile(session: AsyncSession, principal: Principal, policy_number: str, *,
                           for_update: bool = False) -> RiskProfile:
    """The policy if the caller may see it; 404 otherwise (never reveal that it exists).
    Vendors see only the policies they monitor."""
    profile = await session.get(RiskProfile, policy_number, with_for_update=for_update)
    if profile is None or not _may_see(principal, profile):
        raise NotFound(f"policy {policy_number} not found")
    return profile


def _may_see(principal: Principal, profile: RiskProfile) -> bool:
    if principal.role is Role.policyholder:
        return profile.org_id == principal.org_id
    if principal.role is Role.vendor:
        return profile.monitoring_vendor_id is not None and (
            profile.monitoring_vendor_id == principal.vendor_id)
    return principal.role in (Role.operator, Role.underwriter)


async def request_assessment(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                             policy_number: str) -> Assessment:
    session = uow.session
    profile = await _visible_profile(session, principal, policy_number, for_update=True)
    if await _open_assessment(session, policy_number) is not None:
        raise Conflict(f"policy {policy_number} has an assessment in progress")
    assessment = _request(session, ctx, profile, AssessmentReason.requested, cause=None)
    await uow.commit()
    return assessment


def _score_findings(body: AssessmentReportIn) -> list[ScoredFinding]:
    scored = []
    for index, finding in enumerate(body.findings):
        try:
            score = cvss_base_score(finding.cvss_vector)
        except InvalidVector as exc:
            raise Unprocessable(f"invalid CVSS vector: {exc}",
                                field=f"findings.{index}.cvss_vector") from exc
        scored.append(ScoredFinding(finding.title, finding.control, finding.cvss_vector, score,
                                    finding.open))
    return scored


async def submit_assessment(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                            assessment_id: uuid.UUID, body: AssessmentReportIn) -> Assessment:
    """The vendor holding the accepted job completes it: score, tier, modifier and plan. The
    plan supersedes the earlier assessments' open items: one it lists again carries over with
    its original due date (re-assessing never restarts a clock), one it no longer lists is
    closed as superseded."""
    findings = _score_findings(body)
    session = uow.session
    assessment = await session.get(Assessment, assessment_id, with_for_update=True)
    if assessment is None or assessment.vendor_id != principal.vendor_id or (
            assessment.status not in (AssessmentStatus.accepted, AssessmentStatus.completed)):
        raise NotFound(f"assessment {assessment_id} not found")
    if assessment.status == AssessmentStatus.completed:
        raise Conflict(f"assessment {assessment_id} is already completed")
    profile = await session.get(RiskProfile, assessment.policy_number, with_for_update=True)
    assert profile is not None
    now = ctx.clock.now()
    outcome = ctx.rules.assess(body.controls_in_place, findings, now)
    earlier = await _earlier_open_items(session, profile.policy_number)
    items = []
    for planned in outcome.items:
        same = earlier.get(plan_key(planned.source, planned.control, planned.title))
        if same:
            items.append(same.pop(0))  # carried over, with its original due date
            continue
        item = RemediationItemRow(
            id=uuid.uuid4(), policy_number=profile.policy_number, assessment_id=assessment.id,
            control=planned.control.value, source=planned.source.value, title=planned.title,
            cvss_vector=planned.cvss_vector,
            cvss_score=float(planned.cvss_score) if planned.cvss_score is not None else None,
            reported_by=principal.vendor_id, created_at=now, due_at=planned.due_at)
        session.add(item)
        items.append(item)
    superseded = [item for left in earlier.values() for item in left]
    for item in superseded:
        item.superseded_at, item.superseded_by = now, assessment.id
    assessment.status, assessment.completed_at, assessment.updated_at = (
        AssessmentStatus.completed, now, now)
    assessment.score, assessment.tier = outcome.score, outcome.tier.value
    assessment.premium_modifier_percent = outcome.premium_modifier_percent
    assessment.controls_in_place = sorted(c.value for c in body.controls_in_place)
    assessment.findings = [f.model_dump(mode="json") | {"cvss_score": float(s.cvss_score)}
                           for f, s in zip(body.findings, findings, strict=True)]
    profile.score, profile.tier = outcome.score, outcome.tier.value
    profile.premium_modifier_percent = outcome.premium_modifier_percent
    profile.referred_to_underwriter = outcome.referred_to_underwriter
    profile.assessed_at, profile.last_assessment_id = now, assessment.id
    profile.monitoring_vendor_id, profile.updated_at = assessment.vendor_id, now
    ctx.outbox.add(session, RiskAssessed(
        policy_number=profile.policy_number, org_id=profile.org_id, assessment_id=assessment.id,
        job_id=assessment.job_id, vendor_id=assessment.vendor_id or "", score=outcome.score,
        tier=outcome.tier, premium_modifier_percent=outcome.premium_modifier_percent,
        referred_to_underwriter=outcome.referred_to_underwriter,
        items=[item_contract(item) for item in items], assessed_at=now))
    for item in superseded:
        ctx.outbox.add(session, RemediationSuperseded(
            policy_number=profile.policy_number, org_id=profile.org_id,
            item=item_contract(item), at=now, assessment_id=assessment.id))
    await uow.commit()
    return assessment


async def _earlier_open_items(session: AsyncSession, policy_number: str
                              ) -> dict[PlanKey, list[RemediationItemRow]]:
    """The open items of the policy's earlier assessments (exposure alerts aside: an
    assessment does not list them), locked, by what makes a later plan's item the same."""
    rows = (await session.scalars(
        select(RemediationItemRow)
        .where(RemediationItemRow.policy_number == policy_number,
               RemediationItemRow.assessment_id.is_not(None), *OPEN_ITEM)
        .order_by(RemediationItemRow.due_at, RemediationItemRow.id).with_for_update())).all()
    earlier: dict[PlanKey, list[RemediationItemRow]] = {}
    for row in rows:
        earlier.setdefault(plan_key(row.source, row.control, row.title), []).append(row)
    return earlier


async def report_exposure(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                          body: ExposureIn) -> RemediationItemRow:
    """A monitoring vendor's exposure alert: a remediation item due in 72 hours. The alert
    itself tells the policyholder at once, so no separate 'due soon' reminder follows."""
    session = uow.session
    profile = await _visible_profile(session, principal, body.policy_number, for_update=True)
    now = ctx.clock.now()
    item = RemediationItemRow(
        id=uuid.uuid4(), policy_number=profile.policy_number, assessment_id=None,
        control=body.control.value, source=RemediationSource.exposure.value, title=body.title,
        detail=body.description, reported_by=principal.vendor_id, created_at=now,
        due_at=now + ctx.rules.exposure_due, due_soon_sent_at=now)
    session.add(item)
    ctx.outbox.add(session, ExposureAlerted(
        policy_number=profile.policy_number, org_id=profile.org_id,
        vendor_id=principal.vendor_id or "", kind=body.kind, description=body.description,
        item=item_contract(item), at=now))
    await uow.commit()
    return item


async def confirm_done(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                       item_id: uuid.UUID) -> tuple[RemediationItemRow, datetime]:
    """The monitoring vendor or an operator confirms an item fixed (again: no change)."""
    session = uow.session
    item = await session.get(RemediationItemRow, item_id, with_for_update=True)
    profile = None if item is None else await session.get(RiskProfile, item.policy_number)
    if item is None or profile is None or not _may_see(principal, profile):
        raise NotFound(f"remediation item {item_id} not found")
    now = ctx.clock.now()
    if item.done_at is None and item.superseded_at is None:  # closed already: unchanged
        item.done_at, item.done_by = now, principal.sub
        ctx.outbox.add(session, RemediationDone(
            policy_number=profile.policy_number, org_id=profile.org_id,
            item=item_contract(item), at=now, confirmed_by=principal.sub))
        await uow.commit()
    return item, now


def item_out(item: RemediationItemRow, now: datetime) -> RemediationItemOut:
    return RemediationItemOut(id=item.id, control=Control(item.control),
                              source=RemediationSource(item.source), title=item.title,
                              detail=item.detail, cvss_score=item.cvss_score, due_at=item.due_at,
                              done_at=item.done_at, superseded_at=item.superseded_at,
                              state=item_state(item, now))


async def read_risk(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                    policy_number: str) -> RiskOut:
    session = uow.session
    profile = await _visible_profile(session, principal, policy_number)
    assessments = (await session.scalars(
        select(Assessment).where(Assessment.policy_number == policy_number)
        .order_by(Assessment.requested_at.desc()).limit(RECENT_ASSESSMENTS))).all()
    items = (await session.scalars(
        select(RemediationItemRow).where(RemediationItemRow.policy_number == policy_number)
        .order_by(RemediationItemRow.due_at, RemediationItemRow.id))).all()
    now = ctx.clock.now()
    return RiskOut(
        policy_number=profile.policy_number, org_id=profile.org_id, industry=profile.industry,
        region=profile.region, score=profile.score,
        tier=RiskTier(profile.tier) if profile.tier else None,
        premium_modifier_percent=profile.premium_modifier_percent,
        referred_to_underwriter=profile.referred_to_underwriter, assessed_at=profile.assessed_at,
        assessments=[AssessmentOut.model_validate(a, from_attributes=True) for a in assessments],
        items=[item_out(item, now) for item in items])


async def portfolio(uow: UnitOfWork, ctx: RiskContext) -> PortfolioOut:
    """Tier distribution per industry and region, with overdue remediation counts."""
    session = uow.session
    now = ctx.clock.now()
    tiers = (await session.execute(
        select(RiskProfile.industry, RiskProfile.region, RiskProfile.tier, func.count())
        .group_by(RiskProfile.industry, RiskProfile.region, RiskProfile.tier))).all()
    overdue = (await session.execute(
        select(RiskProfile.industry, RiskProfile.region, func.count(),
               func.count(func.distinct(RiskProfile.policy_number)))
        .join(RemediationItemRow, RemediationItemRow.policy_number == RiskProfile.policy_number)
        .where(*OPEN_ITEM, RemediationItemRow.due_at < now)
        .group_by(RiskProfile.industry, RiskProfile.region))).all()
    segments: dict[tuple[str, str], PortfolioSegment] = {}
    for industry, region, tier, count in tiers:
        segment = segments.setdefault((industry, region), PortfolioSegment(
            industry=industry, region=region, policies=0, tiers={}, overdue_items=0,
            policies_with_overdue=0))
        segment.policies += count
        segment.tiers[tier or "unassessed"] = count
    for industry, region, items, policies in overdue:
        segment = segments[(industry, region)]
        segment.overdue_items, segment.policies_with_overdue = items, policies
    ordered = [segments[key] for key in sorted(segments)]
    totals = Counter[str]()
    for segment in ordered:
        totals["policies"] += segment.policies
        totals["overdue"] += segment.overdue_items
    return PortfolioOut(segments=ordered, policies=totals["policies"],
                        overdue_items=totals["overdue"])


# --- reminders (the timer) -----------------------------------------------------------------------


async def run_reminder_pass(uows: UnitOfWorkFactory, ctx: RiskContext,
                            now: datetime | None = None) -> int:
    """Stage each due reminder once: 'due soon' `reminder_lead` before the due date, 'overdue'
    after it (and an operators' escalation when the policy is tier D). The rows are claimed
    FOR UPDATE SKIP LOCKED, so replicas share the work, and marked in the same transaction as
    their events; an item confirmed done or superseded meanwhile is skipped (its row lock is
    awaited)."""
    now = now or ctx.clock.now()
    sent = 0
    while True:
        async with uows() as uow:
            session = uow.session
            due = (await session.scalars(
                select(RemediationItemRow)
                .where(*OPEN_ITEM, RemediationItemRow.overdue_sent_at.is_(None),
                       or_(RemediationItemRow.due_at < now,
                           and_(RemediationItemRow.due_soon_sent_at.is_(None),
                                RemediationItemRow.due_at <= now + ctx.rules.reminder_lead)))
                .order_by(RemediationItemRow.due_at, RemediationItemRow.id)
                .limit(TIMER_BATCH).with_for_update(skip_locked=True))).all()
            for item in due:
                await _remind(session, ctx, item, now)
            await uow.commit()
        sent += len(due)
        if len(due) < TIMER_BATCH:
            return sent


async def _remind(session: AsyncSession, ctx: RiskContext, item: RemediationItemRow,
                  now: datetime) -> None:
    profile = await session.get(RiskProfile, item.policy_number)
    assert profile is not None
    common = {"policy_number": profile.policy_number, "org_id": profile.org_id,
              "item": item_contract(item), "at": now}
    if item.due_at < now:
        item.overdue_sent_at = now
        tier = RiskTier(profile.tier) if profile.tier else None
        ctx.outbox.add(session, RemediationOverdue(**common, tier=tier))
        if tier is RiskTier.D:
            ctx.outbox.add(session, RemediationEscalated(**common, tier=tier))
        return
    item.due_soon_sent_at = now
    ctx.outbox.add(session, RemediationDueSoon(**common))

"""Assessments: asking for one (an operator now, or a policy's registration or renewal), and
the vendor's report, scored into a score, tier, premium modifier and remediation plan."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.risk.context import (
    OPEN_ITEM,
    RiskContext,
    item_contract,
    locked_assessment,
    visible_profile,
)
from services.risk.models import (
    OPEN_ASSESSMENT,
    Assessment,
    AssessmentStatus,
    RemediationItemRow,
    RiskProfile,
)
from services.risk.rules import InvalidVector, ScoredFinding, cvss_base_score
from services.risk.schemas import AssessmentReportIn
from shared.auth import Principal
from shared.controls import Control
from shared.db import UnitOfWork
from shared.events import (
    AssessmentReason,
    Envelope,
    RemediationSource,
    RemediationSuperseded,
    RiskAssessed,
    RiskAssessmentRequested,
)
from shared.problems import Conflict, NotFound, Unprocessable

PlanKey = tuple[str, str, str]


def plan_key(source: RemediationSource | str, control: Control | str, title: str) -> PlanKey:
    """What makes an item of a later assessment the same as an earlier one: a missing control
    is the same control; a finding is the same control and title (case and spacing aside;
    its CVSS score may have changed)."""
    source, control = RemediationSource(source), Control(control)
    same_finding = " ".join(title.casefold().split()) if source is RemediationSource.finding \
        else ""
    return source.value, control.value, same_finding


async def open_assessment(session: AsyncSession, policy_number: str) -> Assessment | None:
    found: Assessment | None = await session.scalar(
        select(Assessment).where(Assessment.policy_number == policy_number,
                                 Assessment.status.in_(OPEN_ASSESSMENT)).limit(1))
    return found


def stage_request(session: AsyncSession, ctx: RiskContext, profile: RiskProfile,
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


async def request_assessment(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                             policy_number: str) -> Assessment:
    session = uow.session
    profile = await visible_profile(session, principal, policy_number, for_update=True)
    if await open_assessment(session, policy_number) is not None:
        raise Conflict(f"policy {policy_number} has an assessment in progress")
    assessment = stage_request(session, ctx, profile, AssessmentReason.requested, cause=None)
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
    locked = await locked_assessment(session, assessment_id)
    if locked is None:
        raise NotFound(f"assessment {assessment_id} not found")
    profile, assessment = locked
    if assessment.vendor_id != principal.vendor_id or (
            assessment.status not in (AssessmentStatus.accepted, AssessmentStatus.completed)):
        raise NotFound(f"assessment {assessment_id} not found")
    if assessment.status == AssessmentStatus.completed:
        raise Conflict(f"assessment {assessment_id} is already completed")
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
    profile.updated_at = now  # its vendor monitors the policy since it accepted the job
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

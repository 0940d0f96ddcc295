"""What underwriters, operators and policyholders read: one policy's risk, and the
portfolio."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from services.risk.context import OPEN_ITEM, RiskContext, visible_profile
from services.risk.models import Assessment, RemediationItemRow, RiskProfile
from services.risk.remediation import item_out
from services.risk.schemas import AssessmentOut, PortfolioOut, PortfolioSegment, RiskOut
from shared.auth import Principal
from shared.db import UnitOfWork
from shared.events import RiskTier

RECENT_ASSESSMENTS = 10


async def read_risk(uow: UnitOfWork, ctx: RiskContext, principal: Principal,
                    policy_number: str) -> RiskOut:
    session = uow.session
    profile = await visible_profile(session, principal, policy_number)
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

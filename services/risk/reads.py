"""What underwriters, operators and policyholders read: one policy's risk, and the
portfolio."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import BigInteger, cast, func, select

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
    """Tier distribution per industry and region, with overdue remediation counts. One
    statement, so one snapshot: a policy update committed meanwhile moves a policy with its
    overdue items, never one without the other."""
    now = ctx.clock.now()
    overdue_per_policy = (
        select(RemediationItemRow.policy_number, func.count().label("overdue_items"))
        .where(*OPEN_ITEM, RemediationItemRow.due_at < now)
        .group_by(RemediationItemRow.policy_number).subquery())
    rows = (await uow.session.execute(
        select(RiskProfile.industry, RiskProfile.region, RiskProfile.tier, func.count(),
               cast(func.coalesce(func.sum(overdue_per_policy.c.overdue_items), 0), BigInteger),
               func.count(overdue_per_policy.c.policy_number))
        .outerjoin(overdue_per_policy,
                   overdue_per_policy.c.policy_number == RiskProfile.policy_number)
        .group_by(RiskProfile.industry, RiskProfile.region, RiskProfile.tier))).all()
    segments: dict[tuple[str, str], PortfolioSegment] = {}
    for industry, region, tier, policies, overdue_items, policies_with_overdue in rows:
        segment = segments.setdefault((industry, region), PortfolioSegment(
            industry=industry, region=region, policies=0, tiers={}, overdue_items=0,
            policies_with_overdue=0))
        segment.policies += policies
        segment.tiers[tier or "unassessed"] = policies
        segment.overdue_items += overdue_items
        segment.policies_with_overdue += policies_with_overdue
    ordered = [segments[key] for key in sorted(segments)]
    totals = Counter[str]()
    for segment in ordered:
        totals["policies"] += segment.policies
        totals["overdue"] += segment.overdue_items
    return PortfolioOut(segments=ordered, policies=totals["policies"],
                        overdue_items=totals["overdue"])
